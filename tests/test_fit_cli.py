"""run_fit.py end to end on a random tiny MoFaNeRF: every --renderType mode and the bad-input lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import run_fit
from facenerf.core.cameras import Intrinsics
from facenerf.errors import FaceNerfError
from facenerf.fitting.result import FitResult
from facenerf.fitting.stats import CodeStatistics
from facenerf.io import read_image, write_image
from facenerf.models.mofanerf.checkpoints import save_mofanerf
from facenerf.models.mofanerf.config import MoFaNeRFConfig
from facenerf.models.mofanerf.model import MoFaNeRF
from facenerf.preprocess.training.rig import mofanerf_pose

ROOT = Path(__file__).resolve().parents[1]
ARCH = {"netdepth": 3, "netwidth": 16, "netdepth_fine": 3, "netwidth_fine": 16, "skip": 2, "xyz_depth": 1,
        "multires": 3, "multires_views": 1, "input_ch_shapeCodes": 6, "input_ch_textureCodes": 5,
        "input_ch_expCodes": 4, "n_expressions": 3, "ism_width": 8, "ism_depth": 1, "tex_size": 8,
        "tex_channels": "4", "tex_hidden": 8, "tex_decoder_depth": 1, "tex_logstd_head": "false",
        "N_samples": 8, "N_importance": 4, "N_rand": 64, "device": "cpu", "progress": "false"}
SIZE = 16


def _model() -> MoFaNeRF:
    torch.manual_seed(0)
    cfg = MoFaNeRFConfig(netdepth=3, netwidth=16, netdepth_fine=3, netwidth_fine=16, skip=2, xyz_depth=1,
                         multires=3, multires_views=1, shape_dim=6, texture_dim=5, exp_dim=4, n_expressions=3,
                         ism_width=8, ism_depth=1, tex_size=8, tex_channels=(4,), tex_hidden=8,
                         tex_decoder_depth=1, tex_logstd_head=False)
    model = MoFaNeRF(cfg)
    with torch.no_grad():  # a dense blob around the origin so meshes and renders are not empty
        for net in (model.coarse, model.fine):
            net.density_head.bias.fill_(3.0)
    return model


def _render_folder(root: Path, identity: str, colour) -> Path:
    folder = root / "multiViewImages" / identity / "neutral"
    folder.mkdir(parents=True)
    K = Intrinsics(SIZE, SIZE, 1200 * SIZE / 512, 1200 * SIZE / 512, SIZE / 2, SIZE / 2)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    frames = []
    for pitch, yaw in ((0, 0), (0, 30), (15, -30)):
        image = np.zeros((SIZE, SIZE, 3), np.float32)
        image[(xx - 8) ** 2 + (yy - 8) ** 2 < 20] = colour
        name = f"{pitch}_{yaw}"
        write_image(folder / f"{name}.png", image)
        frames.append({"view": name, "expression": 0, "transform_matrix": mofanerf_pose(pitch, yaw).tolist()})
    header = {"w": SIZE, "h": SIZE, "fl_x": K.fx, "fl_y": K.fy, "cx": K.cx, "cy": K.cy, "near": 8.0, "far": 26.0,
              "identity": identity, "frames": frames}
    (folder / "transforms.json").write_text(json.dumps(header))
    return folder / "0_0.png"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("fitcli")
    model = _model()
    ckpt = save_mofanerf(root / "run" / "checkpoints" / "step_00000010.pt", model, step=10)
    stats = CodeStatistics(torch.zeros(6), torch.full((6,), 0.1), torch.zeros(5), torch.ones(5), 4, step=10)
    stats.save(root / "run" / "checkpoints" / "code_stats.pt")
    config = root / "fit.txt"
    config.write_text("".join(f"{k} = {v}\n" for k, v in ARCH.items()) + f"ckpt = {ckpt}\n")
    images = [_render_folder(root, "1", (0.8, 0.5, 0.4)), _render_folder(root, "2", (0.3, 0.6, 0.8))]
    base = ["-c", str(config), "--num_iterations", "6", "--fit_size", "16", "--size", "16", "--save_every", "3",
            "--fit_scales", "0.5,1", "--fit_level_starts", "0,0.5"]
    for image in images:
        assert run_fit.main(base + ["--filePath", str(image)]) == 0
    return root, base, images


def _fit_dir(image: Path) -> Path:
    return image.parent.parent / "fitting" / f"{image.parent.name}_{image.stem}"


def test_fitting_mode_writes_fit_file_images_and_curve(setup, capsys):
    root, base, images = setup
    out = _fit_dir(images[0])
    for name in ("fit.pt", "target.png", "fitted.png", "compare.png", "loss_curve.png", "heldout.png",
                 "fit_config.txt", "progress/iter_000000.png", "progress/iter_000006.png"):
        assert (out / name).is_file(), name
    fit = FitResult.load(out / "fit.pt")
    assert fit.complete and fit.iteration == 6 and fit.checkpoint.endswith("step_00000010.pt")
    assert read_image(out / "fitted.png").shape == (SIZE, SIZE, 3)
    # resuming a finished fit runs no iteration and keeps it; asking for more continues from 6
    assert run_fit.main(base + ["--filePath", str(images[0]), "--is_load_par", "true", "--num_iterations", "9"]) == 0
    assert FitResult.load(out / "fit.pt").iteration == 9
    assert "held-out views of this identity" in capsys.readouterr().out


def test_rendering_expression_swap_morph_and_mesh_modes(setup, capsys):
    root, base, images = setup
    fit_args = base + ["--filePath", str(images[0]), "--frames", "3"]
    assert run_fit.main(fit_args + ["--renderType", "rendering"]) == 0
    render = _fit_dir(images[0]) / "render"
    for name in ("fitRes_-60.png", "fitRes_0.png", "fitRes_60.png", "orbit.mp4"):
        assert (render / name).is_file(), name
    assert run_fit.main(fit_args + ["--renderType", "expression", "--expression", "smile"]) == 0
    assert (render / "expr_smile.png").is_file()
    assert run_fit.main(fit_args + ["--renderType", "expression", "--expressions", "neutral,2,smile"]) == 0
    assert (render / "expr_neutral_mouth_stretch_smile.mp4").stat().st_size > 0
    assert run_fit.main(fit_args + ["--renderType", "swap", "--swap", "both"]) == 0
    assert read_image(render / "swap_both_random0.png").shape == (SIZE, 2 * SIZE + 2, 3)
    other = _fit_dir(images[1]) / "fit.pt"
    assert run_fit.main(fit_args + ["--renderType", "swap", "--swap", "texture", "--swapFile", str(other)]) == 0
    assert run_fit.main(fit_args + ["--renderType", "morph", "--morphFile", str(other)]) == 0
    assert (render / "morph_neutral_0_0_to_neutral_0_0.mp4").is_file()
    assert run_fit.main(fit_args + ["--renderType", "mesh", "--mesh_resolution", "12", "--mesh_level", "3",
                         "--mesh_smooth", "0"]) == 0
    obj = _fit_dir(images[0]) / "mesh" / "neutral_0_0.obj"
    v_lines = [l for l in obj.read_text().splitlines() if l.startswith("v ")]
    assert len(v_lines) > 10 and len(v_lines[0].split()) == 7  # x y z r g b
    assert (obj.with_suffix(".png")).is_file()
    out = capsys.readouterr().out
    assert "wrote" in out and "orbit.mp4" in out


def test_random_generation_needs_no_fit(setup):
    root, base, _ = setup
    out = root / "random"
    assert run_fit.main(base + ["--renderType", "random", "--n_random", "3", "--fit_out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["grid.png", "random_000.png", "random_001.png", "random_002.png"]
    a, b = read_image(out / "random_000.png"), read_image(out / "random_001.png")
    assert np.abs(a - b).max() > 0  # different draws


def test_bad_inputs_give_one_line(setup, tmp_path):
    root, base, images = setup
    wrong = base + ["--filePath", str(images[0]), "--netwidth", "32"]
    with pytest.raises(FaceNerfError, match="netwidth: config 32 vs checkpoint 16"):
        run_fit.main(wrong)
    black = images[0].parent / "15_-30.png"
    write_image(black, np.zeros((SIZE, SIZE, 3), np.float32))
    with pytest.raises(FaceNerfError, match="no face in"):
        run_fit.main(base + ["--filePath", str(black)])
    with pytest.raises(FaceNerfError, match="not among the model's 3 learned expressions"):
        run_fit.main(base + ["--filePath", str(images[0]), "--renderType", "expression", "--expression", "grin"])
    with pytest.raises(FaceNerfError, match="needs --morphFile"):
        run_fit.main(base + ["--filePath", str(images[0]), "--renderType", "morph"])
    with pytest.raises(FaceNerfError, match="fit file not found"):
        run_fit.main(base + ["--fitFile", str(tmp_path / "none.pt"), "--renderType", "rendering"])
    lonely = tmp_path / "x" / "y.png"
    write_image(lonely, np.ones((SIZE, SIZE, 3), np.float32))
    proc = subprocess.run([sys.executable, str(ROOT / "run_fit.py")] + base + ["--filePath", str(lonely)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: no camera for") and proc.stderr.count("\n") == 1


def test_help_documents_every_mode():
    from facenerf.fitting.config import RENDER_TYPES
    from facenerf.fitting.options import build_fit_parser

    text = build_fit_parser().format_help()
    for mode in RENDER_TYPES:
        assert f"\n  {mode}" in text
