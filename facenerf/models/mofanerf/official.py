"""Import and export checkpoints in the layout of the original MoFaNeRF code (reference §2).

The released ``.tar`` (``logs/mofanerf_0to300/<step>.tar``) is a ``torch.save`` dict::

    global_step                      int
    network_fn_state_dict            coarse MLP   (xyzEncode / linear_BiM_xyz / linear_uv_xyzBiM / ...)
    network_fine_state_dict          fine MLP
    network_render_textureEncoder    texture encoder (encoder.down1.0.{0,2,..,12}, down2.0, mu, logstd, decoding)
    network_render_idSpecific        ISM (linears1.Linear{i}, linears_scale, linears_bias)
    optimizer_state_dict             Adam state (not imported: its parameter order is the original code's)
    expression_latent_codes_sigma    list of n_expressions tensors [1, exp_dim]

All architecture sizes are read from the tensor shapes, so a file imports without any
config; :func:`import_official` compares them with a config when one is given and names every
size that differs. Files are read with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from facenerf.errors import FaceNerfError
from facenerf.models.mofanerf.config import MoFaNeRFConfig, describe_mismatch

OFFICIAL_KEYS = ("network_fn_state_dict", "network_fine_state_dict", "network_render_textureEncoder",
                 "network_render_idSpecific", "expression_latent_codes_sigma")

# Key translation rules per sub-module: (regex, template); the template is filled with the
# regex's groups by str.format. One list per direction.
_NETWORK_IN = [
    (r"xyzEncode\.linears1\.Linear(\d+)\.", "xyz_encoder.block1.{0}."),
    (r"linear_BiM_xyz\.linears(\d)\.Linear(\d+)\.", "density_trunk.block{0}.{1}."),
    (r"linear_uv_xyzBiM\.linears(\d)\.Linear(\d+)\.", "colour_trunk.block{0}.{1}."),
    (r"linear_view_xyBMuv\.0\.", "view_layer."),
    (r"alpha_linear\.0\.", "density_head."),
    (r"rgb_linear\.", "rgb_head."),
]
_NETWORK_OUT = [
    (r"xyz_encoder\.block1\.(\d+)\.", "xyzEncode.linears1.Linear{0}."),
    (r"density_trunk\.block(\d)\.(\d+)\.", "linear_BiM_xyz.linears{0}.Linear{1}."),
    (r"colour_trunk\.block(\d)\.(\d+)\.", "linear_uv_xyzBiM.linears{0}.Linear{1}."),
    (r"view_layer\.", "linear_view_xyBMuv.0."),
    (r"density_head\.", "alpha_linear.0."),
    (r"rgb_head\.", "rgb_linear."),
]
_ISM_IN = [
    (r"linears1\.Linear(\d+)\.", "mlp.{0}."),
    (r"linears_scale\.", "scale."),
    (r"linears_bias\.", "shift."),
]
_ISM_OUT = [
    (r"mlp\.(\d+)\.", "linears1.Linear{0}."),
    (r"scale\.", "linears_scale."),
    (r"shift\.", "linears_bias."),
]
# the original encoder interleaves activations in nn.Sequential, so layer k sits at index 2k
_TENC_IN = [
    (r"encoder\.down1\.0\.(\d+)\.", lambda i: f"convs.{int(i) // 2}."),
    (r"encoder\.decoding\.(\d+)\.", lambda i: f"decoder.{int(i) // 2}."),
    (r"encoder\.down2\.0\.", "fc."),
    (r"encoder\.mu\.", "mu."),
    (r"encoder\.logstd\.", "logstd."),
]
_TENC_OUT = [
    (r"convs\.(\d+)\.", lambda i: f"encoder.down1.0.{2 * int(i)}."),
    (r"decoder\.(\d+)\.", lambda i: f"encoder.decoding.{2 * int(i)}."),
    (r"fc\.", "encoder.down2.0."),
    (r"mu\.", "encoder.mu."),
    (r"logstd\.", "encoder.logstd."),
]


def _translate(key: str, rules, where: str) -> str:
    """Rename ``key`` with the first matching rule; FaceNerfError when none matches."""
    for pattern, template in rules:
        match = re.match(pattern, key)
        if match:
            head = template(*match.groups()) if callable(template) else template.format(*match.groups())
            return head + key[match.end():]
    raise FaceNerfError(f"unexpected entry '{key}' in the {where}; "
                        "the file was not written by the released MoFaNeRF code")


_PARTS_IN = [("network_fn_state_dict", "coarse.", _NETWORK_IN),
             ("network_fine_state_dict", "fine.", _NETWORK_IN),
             ("network_render_textureEncoder", "texture_encoder.", _TENC_IN),
             ("network_render_idSpecific", "ism.", _ISM_IN)]
_PARTS_OUT = [("network_fn_state_dict", "coarse.", _NETWORK_OUT),
              ("network_fine_state_dict", "fine.", _NETWORK_OUT),
              ("network_render_textureEncoder", "texture_encoder.", _TENC_OUT),
              ("network_render_idSpecific", "ism.", _ISM_OUT)]


def is_official_layout(data: Any) -> bool:
    """True for a dict with the original code's checkpoint keys."""
    return isinstance(data, dict) and all(k in data for k in ("network_fn_state_dict",
                                                              "network_render_idSpecific"))


def _strip_module(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop a DataParallel ``module.`` prefix if every key has it."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def _count(state: Mapping[str, Tensor], pattern: str) -> int:
    return len({m.group(1) for k in state if (m := re.match(pattern, k))})


def _network_sizes(state: Mapping[str, Tensor], exp_dim: int) -> dict:
    """Widths, depths and input sizes of one official MLP state dict."""
    width = state["xyzEncode.linears1.Linear0.weight"].shape[0]
    pe_dim = state["xyzEncode.linears1.Linear0.weight"].shape[1] - exp_dim
    first = _count(state, r"linear_BiM_xyz\.linears1\.Linear(\d+)\.")
    second = _count(state, r"linear_BiM_xyz\.linears2\.Linear(\d+)\.")
    return {
        "width": width, "depth": first + second, "skip": first,
        "xyz_depth": _count(state, r"xyzEncode\.linears1\.Linear(\d+)\."),
        "multires": (pe_dim - 3) // 6,
        "multires_views": (state["linear_view_xyBMuv.0.weight"].shape[1] - width - 3) // 6,
        "shape_dim": state["linear_BiM_xyz.linears1.Linear0.weight"].shape[1] - width,
        "texture_dim": state["linear_uv_xyzBiM.linears1.Linear0.weight"].shape[1] - width,
    }


def _texture_sizes(state: Mapping[str, Tensor]) -> dict:
    conv_ids = sorted(int(m.group(1)) for k in state if (m := re.match(r"encoder\.down1\.0\.(\d+)\.weight$", k)))
    channels = [state[f"encoder.down1.0.{i}.weight"].shape[0] for i in conv_ids]
    fc = state["encoder.down2.0.weight"]
    grid = int(round((fc.shape[1] / channels[-1]) ** 0.5))
    return {"tex_channels": tuple(channels), "tex_hidden": fc.shape[0], "tex_size": grid << len(channels),
            "tex_decoder_depth": _count(state, r"encoder\.decoding\.(\d+)\.weight"),
            "tex_logstd_head": "encoder.logstd.weight" in state}


def config_from_official(data: Mapping[str, Any]) -> MoFaNeRFConfig:
    """Infer every architecture size from the tensor shapes of an official checkpoint dict."""
    codes = data["expression_latent_codes_sigma"]
    exp_dim = int(codes[0].reshape(-1).shape[0])
    coarse = _network_sizes(_strip_module(data["network_fn_state_dict"]), exp_dim)
    fine_state = _strip_module(data.get("network_fine_state_dict") or {})
    fine = _network_sizes(fine_state, exp_dim) if fine_state else {"width": 0, "depth": 0}
    ism = _strip_module(data["network_render_idSpecific"])
    return MoFaNeRFConfig(
        multires=coarse["multires"], multires_views=coarse["multires_views"],
        netdepth=coarse["depth"], netwidth=coarse["width"],
        netdepth_fine=fine["depth"], netwidth_fine=fine["width"],
        xyz_depth=coarse["xyz_depth"], skip=coarse["skip"],
        shape_dim=coarse["shape_dim"], texture_dim=coarse["texture_dim"], exp_dim=exp_dim,
        n_expressions=len(codes), ism_width=ism["linears1.Linear0.weight"].shape[0],
        ism_depth=_count(ism, r"linears1\.Linear(\d+)\."),
        **_texture_sizes(_strip_module(data["network_render_textureEncoder"])),
    )


def official_to_state_dict(data: Mapping[str, Any]) -> dict[str, Tensor]:
    """Translate an official checkpoint dict into a :class:`MoFaNeRF` ``state_dict`` (parameters only)."""
    state: dict[str, Tensor] = {}
    for key, prefix, rules in _PARTS_IN:
        for name, value in _strip_module(data.get(key) or {}).items():
            state[prefix + _translate(name, rules, f"{key} of the official checkpoint")] = value
    codes = data["expression_latent_codes_sigma"]
    state["expression_codes"] = torch.cat([c.reshape(1, -1) for c in codes], 0)
    return state


def import_official(data: Mapping[str, Any], expect: MoFaNeRFConfig | None = None, where: str = "checkpoint",
                    **model_kwargs):
    """Build a :class:`MoFaNeRF` holding the weights of an official checkpoint dict.

    Args:
        data: the dict read from the ``.tar`` file.
        expect: when given, the config the user asked for; any size that differs raises one
            FaceNerfError naming both values.
        model_kwargs: passed to :class:`MoFaNeRF` (``lrate``, render settings).
    Returns:
        ``(model, step)``.
    """
    from facenerf.models.mofanerf.model import MoFaNeRF

    missing = [k for k in OFFICIAL_KEYS if k not in data]
    if missing:
        raise FaceNerfError(f"{where} lacks {', '.join(missing)}: it is not a complete MoFaNeRF checkpoint")
    cfg = config_from_official(data)
    if expect is not None:
        message = describe_mismatch(expect, cfg, where)
        if message:
            raise FaceNerfError(message)
    model = MoFaNeRF(cfg, **model_kwargs)
    state = model.state_dict()
    imported = official_to_state_dict(data)
    for name, value in imported.items():
        if name not in state or tuple(state[name].shape) != tuple(value.shape):
            raise FaceNerfError(f"{where}: entry for '{name}' has shape {tuple(value.shape)} that the "
                                "inferred architecture cannot hold; the file is damaged or not MoFaNeRF")
        state[name] = value.detach().to(state[name].dtype)
    left = [n for n, p in model.named_parameters() if n not in imported]
    if left:
        raise FaceNerfError(f"{where} has no weights for {', '.join(left[:3])}; the file is incomplete")
    model.load_state_dict(state)
    return model, int(data.get("global_step", 0))


# Layers whose first ``shape_dim`` input columns read the shape code.
_SHAPE_INPUT_LAYERS = ("ism.mlp.0", "coarse.density_trunk.block1.0", "coarse.density_trunk.block2.0",
                       "fine.density_trunk.block1.0", "fine.density_trunk.block2.0")


def fold_shape_standardisation(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Absorb ``(beta - mean) * scale`` into the layers that read beta, so raw codes give the same output.

    A layer ``W [beta', x] + b`` with ``beta' = (beta - m) * k`` equals ``W' [beta, x] + b'`` with
    ``W'[:, :S] = W[:, :S] * k`` and ``b' = b - W[:, :S] @ (m * k)``. The original code has no
    standardisation, so exported checkpoints carry it in their weights. The statistics entries
    are removed.
    """
    mean, scale = sd.pop("shape_code_mean", None), sd.pop("shape_code_scale", None)
    if mean is None or scale is None:
        return sd
    mean, scale = mean.double(), scale.double()
    for layer in _SHAPE_INPUT_LAYERS:
        if f"{layer}.weight" not in sd:
            continue
        weight, bias = sd[f"{layer}.weight"].double(), sd[f"{layer}.bias"].double()
        columns = weight[:, : mean.numel()]
        sd[f"{layer}.bias"] = (bias - columns @ (mean * scale)).to(sd[f"{layer}.bias"].dtype)
        weight = weight.clone()
        weight[:, : mean.numel()] = columns * scale
        sd[f"{layer}.weight"] = weight.to(sd[f"{layer}.weight"].dtype)
    return sd


def export_official(model, step: int = 0) -> dict[str, Any]:
    """The model as a dict in the original code's checkpoint layout (loadable by that code).

    Shape-code standardisation is folded into the weights (:func:`fold_shape_standardisation`).
    The optimiser entry is a fresh Adam state listing the original parameter order
    (coarse, fine, expression codes, texture encoder, ISM), so the original code can resume.
    """
    sd = fold_shape_standardisation({k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
    out: dict[str, Any] = {"global_step": int(step)}
    for key, prefix, rules in _PARTS_OUT:
        out[key] = {_translate(k[len(prefix):], rules, "model"): v for k, v in sd.items() if k.startswith(prefix)}
    codes = sd["expression_codes"]  # [n_expressions, exp_dim]
    out["expression_latent_codes_sigma"] = [codes[i:i + 1].clone() for i in range(codes.shape[0])]
    n_params = sum(len(out[key]) for key, _, _ in _PARTS_OUT) + codes.shape[0]
    out["optimizer_state_dict"] = {"state": {}, "param_groups": [{
        "lr": float(getattr(model, "lrate", 5e-4)), "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0,
        "amsgrad": False, "params": list(range(n_params))}]}
    return out


def read_official_file(path: str | Path) -> dict:
    """Read an official ``.tar`` with ``torch.load(weights_only=True)``; FaceNerfError on failure."""
    from facenerf.io import load_weights_file

    file = Path(path)
    data = load_weights_file(file, "MoFaNeRF checkpoint", fix="check that the download is complete")
    if not is_official_layout(data):
        raise FaceNerfError(f"{file} does not have the original MoFaNeRF checkpoint layout "
                            "(no network_fn_state_dict / network_render_idSpecific)")
    return data
