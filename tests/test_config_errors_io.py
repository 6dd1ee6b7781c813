"""Config parsing, the CLI error wrapper, runtime helpers and image/video I/O."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from facenerf import cli, config, io, runtime
from facenerf.errors import FaceNerfError


def _parser():
    parser = cli.make_parser("test parser")
    parser.add_argument("--lrate", type=float, default=1e-3)
    parser.add_argument("--N_rand", type=int, default=32)
    parser.add_argument("--use_viewdirs", **cli.bool_flag(False, "use view directions"))
    parser.add_argument("--expname", default="x")
    return parser


def test_config_file_then_cli_override(tmp_path):
    cfg = tmp_path / "exp.txt"
    cfg.write_text("# comment\nlrate = 0.5\nN_rand = 7\nuse_viewdirs = True\n")
    args = cli.parse_args(_parser(), ["-c", str(cfg), "--N_rand", "9"])
    assert args.lrate == 0.5 and args.N_rand == 9 and args.use_viewdirs is True


def test_unknown_key_names_file_line_and_suggestion(tmp_path):
    cfg = tmp_path / "exp.txt"
    cfg.write_text("lrate = 0.5\nN_rnd = 7\n")
    with pytest.raises(FaceNerfError, match=r"unknown key 'N_rnd' in .*exp.txt line 2: did you mean 'N_rand'"):
        cli.parse_args(_parser(), ["-c", str(cfg)])


def test_missing_config_file_and_bad_values(tmp_path):
    with pytest.raises(FaceNerfError, match="config file not found"):
        cli.parse_args(_parser(), ["-c", str(tmp_path / "nope.txt")])
    with pytest.raises(FaceNerfError, match="invalid float value"):
        cli.parse_args(_parser(), ["--lrate", "fast"])
    with pytest.raises(FaceNerfError, match="unknown argument '--lrat'"):
        cli.parse_args(_parser(), ["--lrat", "1"])


def test_saved_config_round_trips(tmp_path):
    args = cli.parse_args(_parser(), ["--lrate", "0.25", "--use_viewdirs"])
    saved = config.save_config(cli.namespace_values(args), tmp_path / "out")
    again = cli.parse_args(_parser(), ["-c", str(saved)])
    assert vars(again) | {"config": None} == vars(args) | {"config": None}
    assert again.use_viewdirs is True and again.lrate == 0.25


def test_unwritable_output_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(FaceNerfError, match="cannot write to output directory"):
        io.ensure_writable_dir(blocker / "sub")


def test_run_cli_prints_one_line_not_a_traceback(tmp_path):
    script = tmp_path / "cli.py"
    script.write_text(textwrap.dedent("""
        from facenerf.errors import FaceNerfError, run_cli
        def main():
            raise FaceNerfError("image not found: x.png (check the path)")
        run_cli(main)
    """))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: image not found: x.png (check the path)"


def test_runtime_helpers():
    assert runtime.select_device("cpu").type == "cpu"
    g1 = runtime.seed_everything(3)
    a = torch.rand(4, generator=g1)
    g2 = runtime.seed_everything(3)
    assert torch.equal(a, torch.rand(4, generator=g2))
    with pytest.raises(FaceNerfError):
        runtime.amp_dtype(torch.device("cpu"), "fp8")
    with runtime.autocast(torch.device("cpu"), "bf16"):
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == torch.bfloat16
    name = runtime.describe_device(torch.device("cpu"))
    assert name.startswith(runtime.cpu_model()) and runtime.cpu_model()
    assert f"{os.cpu_count()} cores, {torch.get_num_threads()} torch threads" in name


def test_bf16_runs_as_fp16_on_a_gpu_without_it(monkeypatch):
    """Fits and renders ask amp_dtype; the training loop asks resolve_amp: both fall back alike."""
    from facenerf.engine.trainer import resolve_amp

    cuda = torch.device("cuda")
    for supported, dtype, mode in ((True, torch.bfloat16, "bf16"), (False, torch.float16, "fp16")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True, s=supported: s)
        assert runtime.amp_dtype(cuda, "bf16") == dtype and resolve_amp("bf16", cuda) == mode
    assert runtime.amp_dtype(torch.device("cpu"), "bf16") == torch.bfloat16  # the CPU has bf16 kernels


def test_read_image_modes(tmp_path):
    from PIL import Image

    grey = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 4)
    Image.fromarray(grey).save(tmp_path / "g.png")
    img = io.read_image(tmp_path / "g.png")
    assert img.shape == (8, 8, 3) and np.allclose(img[..., 0], grey / 255.0)

    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, :3, 3] = 255
    Image.fromarray(rgba).save(tmp_path / "a.png")
    img = io.read_image(tmp_path / "a.png")
    assert img.shape == (4, 6, 3) and img[0, 0, 0] == 1.0 and img[0, 5, 0] == 0.0

    rot = Image.fromarray(np.zeros((4, 10, 3), np.uint8))
    exif = rot.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    rot.save(tmp_path / "r.jpg", exif=exif)
    assert io.read_image(tmp_path / "r.jpg").shape == (10, 4, 3)

    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(FaceNerfError, match="cannot read image"):
        io.read_image(tmp_path / "bad.jpg")
    with pytest.raises(FaceNerfError, match="image not found"):
        io.read_image(tmp_path / "missing.png")
    (tmp_path / "IMG_0001.HEIC").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
    with pytest.raises(FaceNerfError, match="HEIC/HEIF photos are not supported; convert them to JPEG or PNG"):
        io.read_image(tmp_path / "IMG_0001.HEIC")


def test_write_image_and_video(tmp_path):
    frame = np.linspace(0, 1, 16 * 16 * 3, dtype=np.float32).reshape(16, 16, 3)
    path = io.write_image(tmp_path / "x" / "f.png", frame)
    assert np.abs(io.read_image(path) - frame).max() <= 1 / 255
    video = io.write_video(tmp_path / "v.mp4", [frame] * 5, fps=5)
    import imageio.v3 as iio

    frames = iio.imread(video)
    assert frames.shape[0] == 5 and frames.shape[1:3] == (16, 16)
    assert io.list_images(tmp_path / "x") == [path]
