"""Optional face-parsing network (BiSeNet layout, 19 CelebAMask-HQ classes), loaded by path.

The weights-free segmentation in :mod:`.segment` is the default. A user who has trained
face-parsing weights in the widely used BiSeNet layout (ResNet-18 context path with attention
refinement, feature fusion, 19 classes) can pass the file with ``--parsing_weights``; nothing is
downloaded and the backbone is not pre-initialised from ImageNet (reference section 11.24).
The file may be a plain ``state_dict`` or a facenerf checkpoint; either way it is read with
``torch.load(..., weights_only=True)`` and checked key by key before use.

Classes (reference section 7): 0 background, 1 skin, 2 l_brow, 3 r_brow, 4 l_eye, 5 r_eye,
6 eyeglasses, 7 l_ear, 8 r_ear, 9 earring, 10 nose, 11 mouth, 12 u_lip, 13 l_lip, 14 neck,
15 necklace, 16 cloth, 17 hair, 18 hat. They are mapped to our labels (face, hair, neck,
clothing, background); the neck is cut ``neck_length`` face heights below the chin, like the
weights-free path, instead of the reference's fixed "rows >= 450" cut.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facenerf.errors import FaceNerfError
from facenerf.preprocess.fitting.segment import BACKGROUND, CLOTH, FACE, HAIR, NECK, FaceFrame, Segmentation

N_CLASSES = 19
INPUT_SIZE = 512
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# CelebAMask-HQ class -> our label
CLASS_TO_LABEL = np.array([BACKGROUND] + [FACE] * 13 + [NECK, NECK, CLOTH, HAIR, HAIR], dtype=np.uint8)


class ConvBNReLU(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convolutions, identity or 1x1 projection shortcut)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class ResNet18Features(nn.Module):
    """ResNet-18 trunk returning the stride-8, -16 and -32 feature maps (2b, 4b, 8b channels, b = ``base``)."""

    def __init__(self, base: int = 64):
        super().__init__()
        b = base
        self.conv1 = nn.Conv2d(3, b, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(b)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = ((b, b, 1), (b, 2 * b, 2), (2 * b, 4 * b, 2), (4 * b, 8 * b, 2))
        for i, (cin, cout, stride) in enumerate(widths, start=1):
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout)))

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        feat8 = self.layer2(x)
        feat16 = self.layer3(feat8)
        return feat8, feat16, self.layer4(feat16)


class AttentionRefinement(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, cout, 3)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x):
        feat = self.conv(x)
        attention = torch.sigmoid(self.bn_atten(self.conv_atten(F.adaptive_avg_pool2d(feat, 1))))
        return feat * attention


class ContextPath(nn.Module):
    def __init__(self, base: int = 64):
        super().__init__()
        b = base
        self.resnet = ResNet18Features(b)
        self.arm16 = AttentionRefinement(4 * b, 2 * b)
        self.arm32 = AttentionRefinement(8 * b, 2 * b)
        self.conv_head32 = ConvBNReLU(2 * b, 2 * b, 3)
        self.conv_head16 = ConvBNReLU(2 * b, 2 * b, 3)
        self.conv_avg = ConvBNReLU(8 * b, 2 * b, 1)

    def forward(self, x):
        feat8, feat16, feat32 = self.resnet(x)
        context = self.conv_avg(F.adaptive_avg_pool2d(feat32, 1))
        up32 = F.interpolate(self.arm32(feat32) + context, size=feat16.shape[2:], mode="nearest")
        up32 = self.conv_head32(up32)
        up16 = F.interpolate(self.arm16(feat16) + up32, size=feat8.shape[2:], mode="nearest")
        return feat8, self.conv_head16(up16)


class FeatureFusion(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.convblk = ConvBNReLU(cin, cout, 1)
        self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)

    def forward(self, spatial, context):
        feat = self.convblk(torch.cat([spatial, context], dim=1))
        attention = torch.sigmoid(self.conv2(F.relu(self.conv1(F.adaptive_avg_pool2d(feat, 1)))))
        return feat + feat * attention


class SegmentationHead(nn.Module):
    def __init__(self, cin: int, mid: int, n_classes: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, mid, 3)
        self.conv_out = nn.Conv2d(mid, n_classes, 1, bias=False)

    def forward(self, x):
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """Face-parsing network: ``[B, 3, H, W]`` ImageNet-normalised -> logits ``[B, n_classes, H, W]``.

    ``base`` = 64 is the standard layout (13.3 M parameters); smaller values give the same
    architecture narrower (tests). The two auxiliary heads (``conv_out16``, ``conv_out32``) exist
    only so that weight files trained with deep supervision load without missing keys;
    inference uses ``conv_out``.
    """

    def __init__(self, n_classes: int = N_CLASSES, base: int = 64):
        super().__init__()
        b = base
        self.cp = ContextPath(b)
        self.ffm = FeatureFusion(4 * b, 4 * b)
        self.conv_out = SegmentationHead(4 * b, 4 * b, n_classes)
        self.conv_out16 = SegmentationHead(2 * b, b, n_classes)
        self.conv_out32 = SegmentationHead(2 * b, b, n_classes)

    def forward(self, x):
        feat8, context8 = self.cp(x)
        logits = self.conv_out(self.ffm(feat8, context8))
        return F.interpolate(logits, size=x.shape[2:], mode="bilinear", align_corners=True)


def _state_dict_from(payload, path: Path) -> dict:
    """The network weights inside a loaded file: a plain state dict or a facenerf checkpoint."""
    if isinstance(payload, dict) and "model_state" in payload:
        payload = payload["model_state"]
    if not isinstance(payload, dict) or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise FaceNerfError(f"{path} holds no network weights (expected a state_dict of tensors); "
                            "pass a face-parsing weights file to --parsing_weights")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in payload.items()}


class FaceParser:
    """A loaded :class:`BiSeNet` that turns an aligned photo into our segmentation labels."""

    def __init__(self, network: BiSeNet, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()

    @classmethod
    def from_file(cls, path: str | Path, device: torch.device | str = "cpu") -> "FaceParser":
        """Load weights from ``path``; :class:`FaceNerfError` if missing, unreadable or mismatched."""
        from facenerf.engine.checkpoint import check_compatible
        from facenerf.io import load_weights_file

        file = Path(path).expanduser()
        if not file.is_file():
            raise FaceNerfError(f"face-parsing weights not found: {file} (check --parsing_weights, "
                                "or leave it out to use the weights-free segmentation)")
        state = _state_dict_from(load_weights_file(file, "face-parsing weights", fix="pass a plain state-dict file"), file)
        first = state.get("cp.resnet.conv1.weight")
        base = int(first.shape[0]) if first is not None and first.ndim == 4 else 64
        network = BiSeNet(N_CLASSES, base)
        check_compatible(network, state, f"face-parsing weights {file}")
        network.load_state_dict(state)
        return cls(network, device)

    @torch.no_grad()
    def classes(self, image: np.ndarray) -> np.ndarray:
        """Per-pixel CelebAMask-HQ class ``[H, W]`` uint8 of ``image [H, W, 3]`` float in [0, 1]."""
        h, w = image.shape[:2]
        x = torch.as_tensor(np.ascontiguousarray(image), dtype=torch.float32).permute(2, 0, 1)[None]
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        logits = self.network(((x - mean) / std).to(self.device)).float().cpu()  # [1, 19, 512, 512]
        logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        return logits[0].argmax(dim=0).numpy().astype(np.uint8)

    def segment(self, image: np.ndarray, landmarks: np.ndarray, inside: np.ndarray | None,
                neck_length: float) -> Segmentation:
        """Labels (face / hair / neck / clothing / background) with the neck cut below the chin."""
        labels = CLASS_TO_LABEL[self.classes(image)]
        if inside is not None:
            labels[~np.asarray(inside, dtype=bool)] = BACKGROUND
        frame = FaceFrame.from_landmarks(landmarks)
        yy, xx = np.mgrid[0:labels.shape[0], 0:labels.shape[1]].astype(np.float64)
        below = frame.height_above_chin(xx, yy) < -neck_length
        labels[below & np.isin(labels, (FACE, HAIR, NECK))] = BACKGROUND
        return Segmentation(labels)
