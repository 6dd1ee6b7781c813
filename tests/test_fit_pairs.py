"""RefineNet pairs from a MoFaNeRF: layout, sizes, selection and skipping of unreadable views."""

from __future__ import annotations

import numpy as np
import torch

from facenerf.core.cameras import Intrinsics
from facenerf.core.renderer import RenderSettings
from facenerf.data.mofanerf_dataset import FrameTable, IdentityData, MoFaNeRFData
from facenerf.data.pairs import scan_pairs
from facenerf.data.ray_batches import PixelSamplerConfig
from facenerf.io import read_image, write_image
from facenerf.models.mofanerf.config import MoFaNeRFConfig
from facenerf.models.mofanerf.model import MoFaNeRF
from facenerf.models.mofanerf.refine_pairs import PairPlan, choose_frames, make_refine_pairs, render_training_view
from facenerf.preprocess.training.rig import mofanerf_pose
from tiny_faces import write_multiview_data

SIZE = 16


def _data(tmp_path) -> MoFaNeRFData:
    rng = np.random.default_rng(0)
    K = Intrinsics(SIZE, SIZE, 37.5, 37.5, 8.0, 8.0)
    paths, ids, exps, poses, test = [], [], [], [], []
    people = []
    for i in range(2):
        write_image(tmp_path / "uv" / f"{i}.png", rng.random((8, 8, 3)).astype(np.float32))
        people.append(IdentityData(i + 1, rng.normal(size=6).astype(np.float32), tmp_path / "uv" / f"{i}.png"))
        for e in range(3):
            for v in range(4):
                paths.append(write_image(tmp_path / "img" / f"{i}_{e}_{v}.png",
                                         rng.random((SIZE, SIZE, 3)).astype(np.float32)))
                ids.append(i), exps.append(e), test.append(v == 3)
                poses.append(mofanerf_pose(0.0, -30.0 + 20.0 * v).numpy())
    frames = FrameTable(paths, np.array(ids), np.array(exps), np.stack(poses), np.array(test), K)
    return MoFaNeRFData(frames, people, PixelSamplerConfig(n_rays=8), near=8.0, far=26.0, tex_size=8)


def _model() -> MoFaNeRF:
    torch.manual_seed(0)
    cfg = MoFaNeRFConfig(multires=2, multires_views=1, netdepth=3, netwidth=8, netdepth_fine=0, netwidth_fine=0,
                         xyz_depth=1, skip=1, shape_dim=6, texture_dim=4, exp_dim=3, n_expressions=3, ism_width=8,
                         ism_depth=1, tex_size=8, tex_channels=(4,), tex_hidden=8, tex_decoder_depth=1,
                         tex_logstd_head=False)
    model = MoFaNeRF(cfg, eval_settings=RenderSettings(n_samples=6, n_importance=0))
    with torch.no_grad():
        model.coarse.density_head.bias.fill_(2.0)  # visible density everywhere near the head
    return model


def test_pairs_layout_sizes_and_selection(tmp_path):
    data = _data(tmp_path)
    frames = choose_frames(data.frames, 0, PairPlan(n_expressions=2, n_views=2), np.random.default_rng(0))
    assert len(frames) == 2 and all(len(f) == 2 for _, f in frames)
    for expression, picks in frames:
        assert all(not data.frames.is_test[p] and data.frames.expression[p] == expression for p in picks)
    out = tmp_path / "dataset"
    # one ground-truth image is damaged: that pair is reported and skipped, the rest are written
    (tmp_path / "img" / "1_0_0.png").write_bytes(b"broken")
    lines = []
    summary = make_refine_pairs(_model(), data, out, PairPlan(n_expressions=3, n_views=3, render_scale=0.5),
                                lambda e: f"{e + 1}_expr{e}", report=lines.append, progress=False)
    assert summary.written + len(lines) == 2 * 3 * 3 and summary.written >= 16
    scan = scan_pairs(out / "train_A", out / "train_B")
    assert len(scan.pairs) == summary.written and not scan.problems()
    key = scan.pairs[0].key
    assert key.split("/")[0] in ("1", "2") and key.split("/")[1].endswith(("expr0", "expr1", "expr2"))
    assert read_image(scan.pairs[0].render).shape == (SIZE, SIZE, 3)  # upsampled to the ground truth's size
    assert (out / "pairs_index.txt").read_text().count(".png") >= summary.written


def test_render_of_a_training_view_is_at_the_requested_scale(tmp_path):
    data = _data(tmp_path)
    image = render_training_view(_model(), data, frame=0, scale=0.5)
    assert image.shape == (SIZE // 2, SIZE // 2, 3) and float(image.min()) >= 0 and float(image.max()) <= 1


def _disk_dataset(root, arch: dict) -> list[str]:
    """Two identities in the render.py / FaceScape layout and a checkpoint whose config names them."""
    from facenerf.cli import parse_args
    from facenerf.models.mofanerf.checkpoints import save_mofanerf
    from facenerf.models.mofanerf.options import build_train_parser, run_config_from_args

    write_multiview_data(root, SIZE, seed=1)
    argv = [f"--{k}={v}" for k, v in arch.items()]
    run = run_config_from_args(parse_args(build_train_parser(), argv))
    model = _model()
    assert model.cfg == run.model
    save_mofanerf(root / "logs" / "tiny" / "checkpoints" / "step_00000001.pt", model, step=1, run=run)
    return argv


def test_make_pairs_cli_and_code_statistics_from_the_training_data(tmp_path):
    import importlib.util
    from pathlib import Path

    import run_fit
    from facenerf.fitting.stats import CodeStatistics

    script = Path(__file__).resolve().parents[1] / "trainingDataPreprocess" / "make_pairs.py"
    spec = importlib.util.spec_from_file_location("make_pairs_cli", script)
    make_pairs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_pairs)

    arch = {"datadir": tmp_path / "multiViewImages", "basedir": tmp_path / "logs", "expname": "tiny",
            "person_num": 2, "multires": 2, "multires_views": 1, "netdepth": 3, "netwidth": 8, "netdepth_fine": 0,
            "N_importance": 0, "xyz_depth": 1, "skip": 1, "input_ch_shapeCodes": 6, "input_ch_textureCodes": 4,
            "input_ch_expCodes": 3, "n_expressions": 3, "ism_width": 8, "ism_depth": 1, "tex_size": 8,
            "tex_channels": "4", "tex_hidden": 8, "tex_decoder_depth": 1, "tex_logstd_head": "false",
            "N_samples": 6, "device": "cpu", "progress": "false"}
    argv = _disk_dataset(tmp_path, arch)
    assert make_pairs.main(argv + ["--out", str(tmp_path / "dataset"), "--pair_views", "2"]) == 0
    scan = scan_pairs(tmp_path / "dataset" / "train_A", tmp_path / "dataset" / "train_B")
    assert sorted(p.key for p in scan.pairs) == ["1/neutral/0", "1/neutral/1", "2/neutral/0", "2/neutral/1"]
    fit = argv + ["--filePath", str(tmp_path / "multiViewImages" / "2" / "neutral" / "0_1.png"),
                  "--num_iterations", "2", "--fit_size", "16", "--N_rand", "16"]
    assert run_fit.main(fit) == 0
    stats = CodeStatistics.load(tmp_path / "logs" / "tiny" / "checkpoints" / "code_stats.pt")
    factors = np.load(tmp_path / "factors_id.npy")
    assert stats.n_identities == 2 and stats.step == 1
    torch.testing.assert_close(stats.shape_mean, torch.from_numpy(factors[1:3].mean(0)))
