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
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import torch

from facenerf.config import config_to_dict, ensure_writable_dir, save_config
from facenerf.core.renderer import RenderSettings
from facenerf.data.mofanerf_dataset import MoFaNeRFData, StepBatches, load_mofanerf_sources
from facenerf.data.ray_batches import PixelSamplerConfig
from facenerf.engine import distributed
from facenerf.engine.checkpoint import CheckpointManager
from facenerf.engine.trainer import CHECKPOINT_DIR, Trainer, TrainerConfig
from facenerf.errors import FaceNerfError
from facenerf.io import write_image
from facenerf.models.mofanerf.checkpoints import load_mofanerf, model_config_from_payload
from facenerf.models.mofanerf.config import MoFaNeRFConfig, describe_mismatch, parse_int_list
from facenerf.models.mofanerf.evaluation import identity_expression_grid, make_evaluator
from facenerf.models.mofanerf.model import MODEL_NAME, MoFaNeRF
from facenerf.runtime import select_device, seed_everything


def render_settings(args) -> tuple[RenderSettings, RenderSettings]:
    """(training, evaluation) renderer settings from the seed's keys."""
    background = (1.0, 1.0, 1.0) if args.white_bkgd else (0.0, 0.0, 0.0)
    train = RenderSettings(n_samples=args.N_samples, n_importance=args.N_importance, perturb=args.perturb > 0,
                           lindisp=bool(args.lindisp), background=background, chunk_rays=args.chunk)
    return train, replace(train, perturb=False)


def build_model(args) -> MoFaNeRF:
    train, evaluation = render_settings(args)
    return MoFaNeRF(MoFaNeRFConfig.from_args(args), lrate=args.lrate, train_settings=train, eval_settings=evaluation)


def build_data(args, out_dir: Path) -> MoFaNeRFData:
    """The streamed training data (see :mod:`facenerf.data.mofanerf_dataset`)."""
    frames, identities = load_mofanerf_sources(args)
    sampler = PixelSamplerConfig(n_rays=args.N_rand, landmark_share=args.lm_share, landmark_sigma=args.lm_sigma,
                                 mask_share=args.mask_share, precrop_iters=args.precrop_iters,
                                 precrop_frac=args.precrop_frac)
    scale = args.image_scale * (0.5 if args.half_res else 1.0)
    return MoFaNeRFData(frames, identities, sampler, near=args.near, far=args.far, tex_size=args.tex_size,
                        image_scale=scale, uv_cache_dir=out_dir / "uv_cache", uv_cache=args.uv_cache,
                        seed=args.seed, skip_bad_images=args.skip_bad_images)


def person_num_note(args, data: MoFaNeRFData) -> str | None:
    """A note when ``person_num`` asks for more identities than the data holds (all are used)."""
    found = len(data.identities)
    if args.person_num > found:
        return (f"note: person_num = {args.person_num} but {args.datadir} holds {found} "
                f"identit{'y' if found == 1 else 'ies'}; training on all {found}")
    return None


def _console(line: str) -> None:
    from tqdm import tqdm

    tqdm.write(line)


def check_resume_compatible(out_dir: Path, cfg: MoFaNeRFConfig) -> Path | None:
    """Newest checkpoint of the run, after checking its architecture equals ``cfg`` (one line if not)."""
    manager = CheckpointManager(out_dir / CHECKPOINT_DIR)
    latest = manager.latest()
    if latest is None:
        return None
    payload = manager.load_latest(map_location="cpu")
    if payload is None:
        return None
    stored = model_config_from_payload(payload["config"], payload["path"])
    message = describe_mismatch(cfg, stored, payload["path"])
    if message:
        raise FaceNerfError(message)
    return Path(payload["path"])


def initialise_from(model: MoFaNeRF, path: str) -> int:
    """Copy weights from ``path`` (facenerf or original ``.tar``) into ``model``; returns its step."""
    source, info = load_mofanerf(path, expect=model.cfg)
    model.load_state_dict(source.state_dict())
    return info["step"]


def init_distributed(device_name: str) -> torch.device:
    """Join the process group when started by ``torchrun`` and pick this rank's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return select_device(device_name)
    use_cuda = torch.cuda.is_available() and device_name != "cpu"
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def amp_mode(requested: str, device: torch.device) -> str:
    """``requested``, except bf16 on a GPU without bf16 support becomes fp16 (with loss scaling)."""
    if requested == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        if distributed.is_main_process():
            print("note: this GPU has no bf16 support; training with fp16 autocast and loss scaling instead")
        return "fp16"
    return requested


def trainer_config(args, out_dir: Path, device: torch.device) -> TrainerConfig:
    return TrainerConfig(
        out_dir=out_dir, max_steps=args.N_iters,
        lr_decay_steps=int(args.lrate_decay * args.lrate_decay_factor) or None, lr_decay_rate=0.1,
        amp=amp_mode(args.amp, device), grad_clip=args.grad_clip or None, log_every=args.i_print,
        eval_every=args.i_testset, save_every=args.i_weights, keep_last=args.keep_last,
        progress=args.progress, resume=not args.no_reload)


def write_grid(model: MoFaNeRF, data: MoFaNeRFData, args, out_dir: Path) -> tuple[Path, list[float]]:
    """The final identities x expressions grid of held-out views (rank 0)."""
    from facenerf.data.synthetic import EXPRESSIONS

    n_ids = min(args.grid_ids, len(data.identities))
    people = [int(round(i)) for i in torch.linspace(0, len(data.identities) - 1, n_ids).tolist()]
    expressions = [e for e in parse_int_list(args.grid_exps, "grid_exps") if e < model.cfg.n_expressions]
    model.eval()
    grid, scores = identity_expression_grid(model, data, people, expressions, names=EXPRESSIONS)
    return write_image(out_dir / "grid_ids_x_expressions.png", grid), scores


def ranks_in_sync(model: MoFaNeRF) -> bool:
    """True when every rank holds the same parameters (checked with one all-gather of checksums)."""
    if distributed.world_size() <= 1:
        return True
    with torch.no_grad():
        flat = torch.cat([p.detach().double().flatten() for p in model.parameters()])
        position = torch.arange(flat.numel(), dtype=torch.float64, device=flat.device) % 9973 + 1
        checksum = torch.stack([flat.sum(), (flat * position).sum()])  # [2]
    gathered = [torch.zeros_like(checksum) for _ in range(distributed.world_size())]
    torch.distributed.all_gather(gathered, checksum)
    return all(torch.allclose(g, gathered[0], rtol=1e-12, atol=0.0) for g in gathered)


def train(args) -> dict:
    """Train (or resume) the run described by ``args``; returns the Trainer's summary plus paths."""
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = init_distributed(args.device)
    try:
        return _train_on(device, args)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _train_on(device: torch.device, args) -> dict:
    out_dir = Path(args.basedir) / args.expname
    main = distributed.is_main_process()
    seed_everything(args.seed)
    data = build_data(args, out_dir)  # bad data fails before anything is written
    note = person_num_note(args, data)
    if main:
        if note:
            print(note)
        ensure_writable_dir(out_dir)
        save_config(args, out_dir)
    model = build_model(args)
    resume_from = None if args.no_reload else check_resume_compatible(out_dir, model.cfg)
    if args.ft_path and resume_from is None:
        initialise_from(model, args.ft_path)
    if args.compile:
        model.compile_networks()
    config = {**config_to_dict(args), "model_config": model.cfg.to_dict()}
    batches = StepBatches(data, args.N_iters, rank=distributed.rank(), num_workers=args.num_workers,
                          report=_console if main else None)
    evaluate = make_evaluator(data, data.validation_frames(args.n_val), out_dir, args.val_scale)
    trainer = Trainer(model, batches, trainer_config(args, out_dir, device), device, config, evaluate, MODEL_NAME)
    summary = trainer.fit()
    summary.update(out_dir=str(out_dir), world_size=distributed.world_size(), ranks_in_sync=ranks_in_sync(model),
                   bad_images=sorted(batches.bad_images))
    if main:
        grid, scores = write_grid(model, data, args, out_dir)
        summary["grid"], summary["grid_psnr"] = str(grid), float(sum(scores) / max(len(scores), 1))
    if distributed.world_size() > 1:
        torch.distributed.barrier()  # the others wait while rank 0 renders the grid
    return summary
