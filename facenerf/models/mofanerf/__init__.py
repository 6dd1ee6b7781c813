"""MoFaNeRF: morphable facial NeRF (Zhuang et al., ECCV 2022) on the shared facenerf core.

Main entry points::

    from facenerf.models.mofanerf import MoFaNeRF, MoFaNeRFConfig, load_mofanerf
    model, info = load_mofanerf("logs/mofanerf/checkpoints/step_00600000.pt")  # or the original .tar
    codes = model.face_codes(shape_code, expression_index=1, uv=uv_map)       # or texture=alpha
    image = model.render_image(rays, codes, height, width)["rgb"]              # [H, W, 3]

Modules: ``config`` (the typed run config: sizes, rendering, data, sampling, schedule),
``layers``/``network``/``ism``/``texture_encoder`` (networks), ``model`` (codes, fields, training
step), ``acceleration`` (empty-space skipping), ``official`` (original checkpoint layout),
``checkpoints`` (load/save/convert, a trained run with overrides), ``data`` (training data from a
run config), ``expressions`` (learned expressions by name), ``training``/``evaluation``
(run_train.py), ``refine_pairs`` (RefineNet pairs), ``options`` (the commands' options).
"""

from facenerf.models.mofanerf.config import MoFaNeRFConfig
from facenerf.models.mofanerf.model import FaceCodes, MoFaNeRF

__all__ = ["FaceCodes", "MoFaNeRF", "MoFaNeRFConfig", "load_mofanerf", "save_mofanerf"]


def __getattr__(name: str):
    # ``checkpoints`` (which pulls in the engine) is imported on first use only.
    if name in ("load_mofanerf", "save_mofanerf"):
        from facenerf.models.mofanerf import checkpoints

        return getattr(checkpoints, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
