"""Every per-stage command of README.md, run in order, from a fresh copy of the repository, in one shell.

The copy holds what a clone holds (tracked files, and untracked files git does not ignore) and
gets its own ``.venv``: the pinned requirements come from the environment running the tests
through a ``.pth`` file (so nothing is downloaded), then README's install block runs as written
(``make install``, which installs facenerf editable, and ``source .venv/bin/activate``). Each
fenced ``bash`` block of the MoFaNeRF stages (``### 1.`` to ``### 5.``) then runs as written, in
the same shell, with tiny overrides appended to each command (later flags win) so that the chain
takes about a minute; the NeRFBlendShape stages (``### 6.`` to ``### 8.``: synthetic talking head,
video to dataset, head/torso training, test and transfer) run likewise in a second fresh copy.
Commands whose comment says they need a GPU are skipped; they use the released-size configs.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("### 1.", "### 2.", "### 3.", "### 4.", "### 5.")
BLENDSHAPE_STAGES = ("### 6.", "### 7.", "### 8.")

# appended to each README command (matched by its script or module) so the chain runs in about a minute
OVERRIDES = {
    "facenerf.data.synthetic": "--texture_size 128 --vertices 2000 --expressions neutral,smile",
    "align_clip.py": "",
    "render.py": "--views 8 --expressions neutral,smile --workers 1",
    "facenerf.tools.contact_sheet": "",
    "run_train.py": "--N_iters 8 --i_testset 8 --i_weights 8 --grid_ids 1 --grid_exps 0 --n_val 1",
    "facenerf.tools.sample_photo": "",
    "wildData_preprocess.py": "--image_size 128",
    "run_fit.py": "--num_iterations 4 --eval_views 1 --size 32 --frames 2",
    "make_pairs.py": "--pair_expressions 1 --pair_views 1",
    "train.py": "--max_steps 2 --load_size 32 --eval_every 2 --save_every 2",
    "test.py": "--load_size 32",
    "run_refine.py": "--load_size 32",
}
BLENDSHAPE_OVERRIDES = {
    "facenerf.tools.talking_head": "--frames 80 --test_num 20 --texture_size 128 --vertices 2000",
    "process.py": "--min_frames 10 --mask_samples 6",
    "facenerf.tools.video_evaluate": "",
    "main_nerf.py": "--iters 12 --orbit_frames 2",
    "facenerf.tools.blendshape_check": "",
}
RELEASED_SIZE = ("configs/exp_mofanerf.txt", "configs/fit.txt", "configs/refine.txt", "torchrun")
INSTALL = ["make install", "source .venv/bin/activate"]


def _blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def _commands(block: str) -> list[tuple[str, str]]:
    """``(command, comment)`` per command line (continuations joined, comment-only lines dropped)."""
    joined = re.sub(r"\\\n\s*", " ", block)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        command, _, comment = line.partition(" #")
        out.append((command.strip(), comment.strip()))
    return out


def readme_stages(stages: tuple[str, ...] = STAGES) -> tuple[list[str], list[str], list[str]]:
    """README's install commands, the commands of ``stages`` (section headings) in order, and the GPU-only ones."""
    text = (ROOT / "README.md").read_text()
    install = [c for block in _blocks(text[:text.index("## The pipeline")]) for c, _ in _commands(block)]
    starts = [text.index(marker) for marker in stages]
    end = re.compile(r"\n#{2,3} ").search(text, starts[-1] + 1).start()
    run, gpu = [], []
    for a, b in zip(starts, starts[1:] + [end]):
        for block in _blocks(text[a:b]):
            for command, comment in _commands(block):
                (gpu if "GPU" in comment else run).append(command)
    return install, run, gpu


def _script(segment: str) -> str | None:
    words = shlex.split(segment)
    if "python" not in words:
        return None
    rest = words[words.index("python") + 1:]
    return rest[1] if rest[0] == "-m" else Path(rest[0]).name


def with_overrides(command: str, overrides: dict[str, str] = OVERRIDES) -> str:
    """``command`` with ``overrides`` appended to its python segment (``a && python x.py ... && b``)."""
    segments = command.split("&&")
    for i, segment in enumerate(segments):
        script = _script(segment)
        if script is not None:
            assert script in overrides, f"README command {command!r}: add tiny overrides for {script}"
            segments[i] = f"{segment.rstrip()} {overrides[script]} ".replace("  ", " ")
    return "&&".join(segments).strip()


def fresh_copy(target: Path) -> Path:
    """What a clone of this working tree holds, at ``target``, with a ``.venv`` that can install offline."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(target / ".venv")], check=True)
    venv_python = target / ".venv" / "bin" / "python"
    site = subprocess.run([str(venv_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "_requirements_from_test_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return target


def test_readme_is_parsed_as_expected():
    install, run, gpu = readme_stages()
    assert install[:2] == INSTALL and set(install[2:]) == {"make demo", "make test"}
    assert gpu and all(any(key in command for key in RELEASED_SIZE) for command in gpu), gpu
    assert "cd fittingDataPreprocess && python wildData_preprocess.py --filePath ./data/fit/ && cd .." in run
    scripts = {_script(segment) for command in run for segment in command.split("&&")} - {None}
    assert scripts == set(OVERRIDES), scripts ^ set(OVERRIDES)


def run_in_fresh_clone(clone: Path, install: list[str], commands: list[str], overrides: dict[str, str]) -> str:
    """Run README's install block and then ``commands`` (with ``overrides``) in one shell in ``clone``; the log."""
    script = "\n".join(["set -euo pipefail", *install[:2],
                        *(f"echo '+ {c}'\n{with_overrides(c, overrides)}" for c in commands)])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    done = subprocess.run(["bash", "-c", script], cwd=clone, env=env, capture_output=True, text=True, timeout=900)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    assert "Traceback" not in log and "\r" not in log   # no progress bars when the output is not a terminal
    return log


NEEDS_CHECKOUT = pytest.mark.skipif(
    shutil.which("git") is None or shutil.which("make") is None or not (ROOT / ".git").exists(),
    reason="needs git, make and a git checkout")


def test_readme_blendshape_stages_are_parsed_as_expected():
    _, run, gpu = readme_stages(BLENDSHAPE_STAGES)
    assert not gpu
    scripts = {_script(segment) for command in run for segment in command.split("&&")} - {None}
    assert scripts == set(BLENDSHAPE_OVERRIDES), scripts ^ set(BLENDSHAPE_OVERRIDES)
    assert any("--torso" in c for c in run) and any("--test_expr" in c for c in run)


@NEEDS_CHECKOUT
def test_every_readme_blendshape_command_runs_from_a_fresh_clone(tmp_path):
    clone = fresh_copy(tmp_path / "clone")
    install, run, _ = readme_stages(BLENDSHAPE_STAGES)
    log = run_in_fresh_clone(clone, install, run, BLENDSHAPE_OVERRIDES)
    for path in ("data/talk/talk.mp4", "data/talk_tracked/transforms_train.json", "data/talk_tracked/expr.npy",
                 "logs/trial_talk/checkpoints/step_00000012.pt", "logs/trial_talk_torso/checkpoints/step_00000012.pt",
                 "logs/trial_talk/results/reenact.mp4", "logs/trial_talk/results/transfer.mp4",
                 "logs/trial_talk/results/metrics.json", "jaw.png"):
        assert (clone / path).is_file(), f"{path} missing\n{log[-3000:]}"


@NEEDS_CHECKOUT
def test_every_readme_stage_command_runs_from_a_fresh_clone(tmp_path):
    clone = fresh_copy(tmp_path / "clone")
    install, run, _ = readme_stages()
    log = run_in_fresh_clone(clone, install, run, OVERRIDES)

    tiny, fit = clone / "data" / "tiny", clone / "data" / "tiny" / "multiViewImages" / "5" / "fitting" / "neutral_0_10"
    for path in (tiny / "contact_sheet_1.png", clone / "logs/mofanerf_tiny/checkpoints/step_00000008.pt",
                 clone / "data/fit/segRelRes/astronaut.png", clone / "data/fit_pre/segRelRes/astronaut.png",
                 fit / "fit.pt", fit / "render" / "fitRes_60.png", fit / "render" / "rigging_dimpler.png",
                 fit / "render" / "chg_tex_2.png", fit / "render_refined" / "fitRes_60.png",
                 fit / "refine" / "fitRes_60.png"):
        assert path.is_file(), f"{path} missing\n{log[-3000:]}"
    assert "using" in log and "data/fit" in log   # the cd form fell back to the repository's data/fit/
    sheet = "docs/facescape_contact_sheet.png"
    assert hashlib.sha1((clone / sheet).read_bytes()).digest() == hashlib.sha1((ROOT / sheet).read_bytes()).digest()
    where = subprocess.run([str(clone / ".venv/bin/python"), "-c", "import facenerf; print(facenerf.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, env=env).stdout.strip()
    assert where == str(clone / "facenerf" / "__init__.py")   # installed editable: imports from any folder
