"""Every command's parser, for tests that check all of them: ``label -> build the parser``."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# label -> (module name or script path, function building the parser)
PARSERS = {
    "python -m facenerf.data.synthetic": ("facenerf.data.synthetic.__main__", "build_parser"),
    "python -m facenerf.tools.core_demo": ("facenerf.tools.core_demo", "build_parser"),
    "python -m facenerf.tools.talking_head": ("facenerf.tools.talking_head", "build_parser"),
    "python -m facenerf.tools.degraded_pairs": ("facenerf.tools.degraded_pairs", "build_parser"),
    "python -m facenerf.tools.contact_sheet": ("facenerf.tools.contact_sheet", "build_parser"),
    "python -m facenerf.tools.convert_checkpoint": ("facenerf.tools.convert_checkpoint", "build_parser"),
    "python -m facenerf.tools.checkpoint_info": ("facenerf.tools.checkpoint_info", "build_parser"),
    "python -m facenerf.tools.gl_platform": ("facenerf.tools.gl_platform", "build_parser"),
    "python -m facenerf.tools.sample_photo": ("facenerf.tools.sample_photo", "build_parser"),
    "run_train.py": ("facenerf.models.mofanerf.options", "build_train_parser"),
    "run_fit.py": ("facenerf.fitting.options", "build_fit_parser"),
    "align_clip.py": (ROOT / "align_clip.py", "build_parser"),
    "render.py": (ROOT / "render.py", "build_parser"),
    "trainingDataPreprocess/train.py": ("facenerf.models.refine.options", "build_train_parser"),
    "trainingDataPreprocess/test.py": ("facenerf.models.refine.options", "build_test_parser"),
    "run_refine.py": (ROOT / "run_refine.py", "build_parser"),
    "trainingDataPreprocess/make_pairs.py": (ROOT / "trainingDataPreprocess" / "make_pairs.py", "build_parser"),
    "fittingDataPreprocess/wildData_preprocess.py":
        (ROOT / "fittingDataPreprocess" / "wildData_preprocess.py", "build_parser"),
    "data_utils/process.py": (ROOT / "data_utils" / "process.py", "build_parser"),
    "python -m facenerf.tools.video_evaluate": ("facenerf.tools.video_evaluate", "build_parser"),
    "main_nerf.py": ("facenerf.models.blendshape.options", "build_parser"),
    "python -m facenerf.tools.blendshape_check": ("facenerf.tools.blendshape_check", "build_parser"),
}
# the commands that show a progress bar
WITH_PROGRESS = sorted(set(PARSERS) - {"python -m facenerf.tools.contact_sheet",
                                       "python -m facenerf.tools.degraded_pairs",
                                       "python -m facenerf.tools.convert_checkpoint",
                                       "python -m facenerf.tools.checkpoint_info",
                                       "python -m facenerf.tools.gl_platform",
                                       "python -m facenerf.tools.sample_photo",
                                       "python -m facenerf.tools.video_evaluate"})


def load_script(path: Path):
    """Import a script by path under a unique module name."""
    name = "cli_" + "_".join(path.relative_to(ROOT).with_suffix("").parts)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(label: str):
    """The parser of the command ``label``."""
    source, function = PARSERS[label]
    module = load_script(source) if isinstance(source, Path) else importlib.import_module(source)
    return getattr(module, function)()
