"""Architecture hyper-parameters of MoFaNeRF, shared by the tiny CPU model and the full-size one.

The defaults are the released model's (reference §1): coarse MLP 8 x 256, fine MLP 10 x 1024,
shape code 50, texture code 256, expression code 30, 20 learned expression codes, ISM 4 x 256,
texture encoder on a 512^2 UV map with 7 stride-2 convolutions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from facenerf.errors import FaceNerfError

# The seed's config keys that fix the architecture (used when comparing against checkpoints).
CODE_SIZE_KEYS = ("shape_dim", "texture_dim", "exp_dim", "n_expressions")


@dataclass(frozen=True)
class MoFaNeRFConfig:
    """Sizes of every part of the morphable face NeRF.

    Attributes:
        multires: frequencies of the position encoding (10 -> 63-d).
        multires_views: frequencies of the view-direction encoding (4 -> 27-d).
        netdepth, netwidth: layers and width of each coarse trunk (density and colour).
        netdepth_fine, netwidth_fine: the same for the fine network (0 width = no fine network).
        xyz_depth: layers of the position encoder that mixes PE(x) with the expression code.
        skip: layers in a trunk before its input is concatenated back (the "skip").
        shape_dim, texture_dim, exp_dim: code sizes (beta, alpha, epsilon).
        n_expressions: number of learned expression codes (FaceScape has 20).
        ism_width, ism_depth: the identity-specific modulation MLP.
        tex_size: side of the square UV texture fed to the texture encoder.
        tex_channels: output channels of the encoder's stride-2 convolutions; their number
            fixes the final spatial size ``tex_size / 2**len(tex_channels)``.
        tex_hidden: width of the encoder's fully connected layer.
        tex_decoder_depth: layers of the small MLP after the encoder's "mu" head.
        tex_logstd_head: keep the released model's unused "logstd" head (frozen, never trained)
            so that official checkpoints import and export unchanged.
    """

    multires: int = 10
    multires_views: int = 4
    netdepth: int = 8
    netwidth: int = 256
    netdepth_fine: int = 10
    netwidth_fine: int = 1024
    xyz_depth: int = 4
    skip: int = 5
    shape_dim: int = 50
    texture_dim: int = 256
    exp_dim: int = 30
    n_expressions: int = 20
    ism_width: int = 256
    ism_depth: int = 4
    tex_size: int = 512
    tex_channels: tuple[int, ...] = (32, 32, 32, 32, 64, 128, 256)
    tex_hidden: int = 512
    tex_decoder_depth: int = 3
    tex_logstd_head: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "tex_channels", tuple(int(c) for c in self.tex_channels))
        self.validate()

    @property
    def has_fine(self) -> bool:
        return self.netwidth_fine > 0 and self.netdepth_fine > 0

    @property
    def tex_grid(self) -> int:
        """Spatial side of the encoder's last feature map."""
        return self.tex_size >> len(self.tex_channels)

    def validate(self) -> None:
        """Raise FaceNerfError for sizes that cannot build a network."""
        positive = ("multires", "multires_views", "netdepth", "netwidth", "xyz_depth", "shape_dim",
                    "texture_dim", "exp_dim", "n_expressions", "ism_width", "ism_depth",
                    "tex_size", "tex_hidden")
        for name in positive:
            if int(getattr(self, name)) <= 0:
                raise FaceNerfError(f"model size {name} = {getattr(self, name)} must be positive; fix the config")
        for depth_name in ("netdepth",) + (("netdepth_fine",) if self.has_fine else ()):
            depth = getattr(self, depth_name)
            if not 0 < self.skip < depth:
                raise FaceNerfError(f"{depth_name} = {depth} must exceed the skip position {self.skip}; "
                                    f"use {depth_name} >= {self.skip + 1}")
        if not self.tex_channels:
            raise FaceNerfError("tex_channels is empty; give at least one channel count, e.g. 16,32")
        if self.tex_size % (1 << len(self.tex_channels)) or self.tex_grid < 1:
            raise FaceNerfError(f"tex_size = {self.tex_size} is not divisible by 2^{len(self.tex_channels)} "
                                f"(one halving per entry of tex_channels); change tex_size or tex_channels")

    def to_dict(self) -> dict:
        """Primitive-only dict (for checkpoints and JSON)."""
        data = asdict(self)
        data["tex_channels"] = list(self.tex_channels)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "MoFaNeRFConfig":
        """Build from a dict, ignoring unknown keys (checkpoints of newer versions)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def from_args(cls, args) -> "MoFaNeRFConfig":
        """Build from the training/fitting CLI namespace (the seed's key names)."""
        channels = args.tex_channels
        if isinstance(channels, str):
            channels = parse_int_list(channels, "tex_channels")
        fine_width = args.netwidth_fine if int(getattr(args, "N_importance", 1)) > 0 else 0
        return cls(
            multires=args.multires, multires_views=args.multires_views,
            netdepth=args.netdepth, netwidth=args.netwidth,
            netdepth_fine=args.netdepth_fine, netwidth_fine=fine_width,
            xyz_depth=args.xyz_depth, skip=args.skip,
            shape_dim=args.input_ch_shapeCodes, texture_dim=args.input_ch_textureCodes,
            exp_dim=args.input_ch_expCodes, n_expressions=args.n_expressions,
            ism_width=args.ism_width, ism_depth=args.ism_depth,
            tex_size=args.tex_size, tex_channels=tuple(channels), tex_hidden=args.tex_hidden,
            tex_decoder_depth=args.tex_decoder_depth, tex_logstd_head=args.tex_logstd_head,
        )


def parse_int_list(text, name: str) -> tuple[int, ...]:
    """``"32,32,64"`` or ``[32, 32, 64]`` -> ``(32, 32, 64)``; FaceNerfError on anything else."""
    if isinstance(text, (list, tuple)):
        return tuple(int(v) for v in text)
    cleaned = str(text).strip().strip("[]()")
    try:
        return tuple(int(part) for part in cleaned.replace(" ", ",").split(",") if part)
    except ValueError as err:
        raise FaceNerfError(f"{name} = {text!r} is not a comma-separated list of integers, e.g. 32,32,64") from err


def describe_mismatch(ours: MoFaNeRFConfig, theirs: MoFaNeRFConfig, where: str) -> str | None:
    """One line naming every architecture size that differs, or None when they agree."""
    diffs = []
    for name in ours.to_dict():
        a, b = getattr(ours, name), getattr(theirs, name)
        if a != b:
            diffs.append(f"{name}: config {a} vs checkpoint {b}")
    if not diffs:
        return None
    return f"model sizes in the config do not match {where} ({'; '.join(diffs)}); " \
           "set them to the checkpoint's values or start a new expname"
