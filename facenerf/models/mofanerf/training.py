"""MoFaNeRF training on FaceScape-format renders: build data, model and Trainer, then fit.

:func:`train` is what ``run_train.py`` calls. It

* streams one frame per step and per process (landmark-guided rays, precrop warm-up);
* holds out the test views of every (identity, expression) and renders a few of them every
  ``i_testset`` steps (PSNR next to a mean-colour baseline, PNG + TensorBoard);
* checkpoints every ``i_weights`` steps and on Ctrl-C, and resumes automatically from the
  newest checkpoint in ``basedir/expname/checkpoints`` (``--no_reload`` starts afresh);
* decays the learning rate as the released code does: ``lr = lrate * 0.1 ** (step /
  (lrate_decay * 1500))`` - the factor 1500 (vanilla NeRF: 1000) is kept deliberately and can be
  changed with ``lrate_decay_factor``;
* runs data-parallel under ``torchrun`` (NCCL on GPUs, gloo on CPUs; gradients averaged by the
  engine, files written by rank 0 only), with bf16 autocast and ``torch.compile`` as options.

Everything it reads is in one :class:`~facenerf.models.mofanerf.config.MoFaNeRFRunConfig`, which
every checkpoint stores.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from facenerf.config import save_config
from facenerf.data.mofanerf_dataset import MoFaNeRFData, StepBatches
from facenerf.engine import distributed
from facenerf.engine.checkpoint import CheckpointManager
from facenerf.engine.trainer import CHECKPOINT_DIR, Trainer, TrainerConfig
from facenerf.errors import FaceNerfError
from facenerf.io import ensure_writable_dir, write_image
from facenerf.models.mofanerf.checkpoints import load_mofanerf
from facenerf.models.mofanerf.config import MoFaNeRFConfig, MoFaNeRFRunConfig, describe_mismatch
from facenerf.models.mofanerf.data import build_data, run_dir
from facenerf.models.mofanerf.evaluation import identity_expression_grid, make_evaluator
from facenerf.models.mofanerf.model import MODEL_NAME, MoFaNeRF
from facenerf.preprocess.fitting.template import TEMPLATE_KEY, template_from_training_data
from facenerf.runtime import seed_everything


def build_model(run: MoFaNeRFRunConfig) -> MoFaNeRF:
    """A freshly initialised model with the run's sizes, learning rate and render settings."""
    return MoFaNeRF(run.model, lrate=run.train.lrate, train_settings=run.render.settings(training=True),
                    eval_settings=run.render.settings())


def person_num_note(run: MoFaNeRFRunConfig, data: MoFaNeRFData) -> str | None:
    """A note when ``person_num`` asks for more identities than the data holds (all are used)."""
    found = len(data.identities)
    if run.data.person_num > found:
        return (f"note: person_num = {run.data.person_num} but {run.data.datadir} holds {found} "
                f"identit{'y' if found == 1 else 'ies'}; training on all {found}")
    return None


def identities_line(data: MoFaNeRFData) -> str:
    """``identities (N): 1, 2, ...`` (the first and last few when there are many)."""
    ids = [p.identity for p in data.identities]
    shown = ", ".join(ids) if len(ids) <= 12 else ", ".join(ids[:8]) + ", ..., " + ", ".join(ids[-3:])
    return f"identities ({len(ids)}): {shown}"


def _console(line: str) -> None:
    from tqdm import tqdm

    tqdm.write(line)


def check_resume_compatible(out_dir: Path, cfg: MoFaNeRFConfig) -> Path | None:
    """Newest checkpoint of the run, after checking its architecture equals ``cfg`` (one line if not)."""
    manager = CheckpointManager(out_dir / CHECKPOINT_DIR)
    if manager.latest() is None:
        return None
    payload = manager.load_latest(map_location="cpu")
    if payload is None:
        return None
    stored = MoFaNeRFRunConfig.from_checkpoint(payload["config"], payload["path"]).model
    message = describe_mismatch(cfg, stored, payload["path"])
    if message:
        raise FaceNerfError(message)
    return Path(payload["path"])


def initialise_from(model: MoFaNeRF, path: str) -> int:
    """Copy weights from ``path`` (facenerf or original ``.tar``) into ``model``; returns its step."""
    source, info = load_mofanerf(path, expect=model.cfg)
    model.load_state_dict(source.state_dict())
    return info["step"]


def trainer_config(run: MoFaNeRFRunConfig, out_dir: Path) -> TrainerConfig:
    train = run.train
    return TrainerConfig(
        out_dir=out_dir, max_steps=train.N_iters, lr_decay_steps=train.lr_decay_steps, lr_decay_rate=0.1,
        amp=run.runtime.amp, grad_clip=train.grad_clip or None, log_every=train.i_print,
        eval_every=train.i_testset, save_every=train.i_weights, keep_last=train.keep_last,
        progress=run.runtime.progress, resume=not train.no_reload)


def write_grid(model: MoFaNeRF, data: MoFaNeRFData, run: MoFaNeRFRunConfig, out_dir: Path) -> tuple[Path, list[float]]:
    """The final identities x expressions grid of held-out views (rank 0)."""
    from facenerf.data.synthetic import EXPRESSIONS

    n_ids = min(run.train.grid_ids, len(data.identities))
    people = [int(round(i)) for i in torch.linspace(0, len(data.identities) - 1, n_ids).tolist()]
    expressions = [e for e in run.train.grid_exps if e < model.cfg.n_expressions]
    model.eval()
    grid, scores = identity_expression_grid(model, data, people, expressions, names=EXPRESSIONS)
    return write_image(out_dir / "grid_ids_x_expressions.png", grid), scores


def train(run: MoFaNeRFRunConfig) -> dict:
    """Train (or resume) ``run``; returns the Trainer's summary plus paths."""
    run.runtime.apply_threads()
    device = distributed.init_distributed(run.runtime.device)
    try:
        return _train_on(device, run)
    finally:
        distributed.finish_distributed()


def _train_on(device: torch.device, run: MoFaNeRFRunConfig) -> dict:
    out_dir = run_dir(run)
    main = distributed.is_main_process()
    seed_everything(run.runtime.seed)
    data = build_data(run, out_dir)  # bad data fails before anything is written
    # the config records the images' pixel convention: fitting renders with it
    run = replace(run, render=replace(run.render, pixel_center=data.stored_pixel_center))
    note = person_num_note(run, data)
    if main:
        print(identities_line(data))
        if note:
            print(note)
        ensure_writable_dir(out_dir)
        save_config(run, out_dir)
    model = build_model(run)
    if run.train.standardise_codes and len(data.identities) > 1:  # resumed/initialised models bring their own
        model.set_shape_statistics(torch.stack([torch.as_tensor(p.shape_code) for p in data.identities]))
    resume_from = None if run.train.no_reload else check_resume_compatible(out_dir, model.cfg)
    if run.train.ft_path and resume_from is None:
        initialise_from(model, run.train.ft_path)
    if run.train.compile:
        model.compile_networks()
    batches = StepBatches(data, run.train.N_iters, rank=distributed.rank(), num_workers=run.data.num_workers,
                          report=_console if main else None)
    evaluate = make_evaluator(data, data.validation_frames(run.train.n_val), out_dir, run.train.val_scale)
    config = run.to_dict()
    template = template_from_training_data(data)  # wild photos are aligned to it (wildData_preprocess --template)
    if template is not None:
        config[TEMPLATE_KEY] = template.to_config()
    trainer = Trainer(model, batches, trainer_config(run, out_dir), device, config, evaluate, MODEL_NAME)
    summary = trainer.fit()
    summary.update(out_dir=str(out_dir), world_size=distributed.world_size(),
                   ranks_in_sync=distributed.ranks_in_sync(model), bad_images=sorted(batches.bad_images))
    if main:
        grid, scores = write_grid(model, data, run, out_dir)
        summary["grid"], summary["grid_psnr"] = str(grid), float(sum(scores) / max(len(scores), 1))
    distributed.barrier()  # the others wait while rank 0 renders the grid
    return summary
