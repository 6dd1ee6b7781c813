"""RefineModel with the shared Trainer: learning, exact resume, evaluation, checkpoint -> refined folder."""

import numpy as np
import pytest
import torch

from facenerf.data.pair_batches import PairBatches, PairDataset
from facenerf.data.pairs import scan_pairs
from facenerf.data.synthetic.degraded_pairs import DegradedPairs, make_degraded_pairs
from facenerf.engine.trainer import Trainer, TrainerConfig
from facenerf.errors import FaceNerfError
from facenerf.io import read_image, write_image
from facenerf.models.refine.inference import (find_checkpoint, load_refine_generator, refine_folder,
                                              refined_folder_for)
from facenerf.models.refine.losses import lsgan_loss
from facenerf.models.refine.model import MODEL_NAME, RefineConfig, RefineModel, generator_state
from facenerf.models.refine.training import PairEvaluator

TINY = dict(ngf=4, n_downsample_global=2, n_blocks_global=1, ndf=4, n_layers_D=2, lr=2e-3)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    make_degraded_pairs(DegradedPairs(out=str(root), procedural=4, size=32, crops=2), report=lambda s: None)
    return scan_pairs(root / "train_A", root / "train_B").pairs


def _trainer(model, pairs, out_dir, max_steps, **cfg):
    batches = PairBatches(PairDataset(pairs, (32, 32), cache=True), batch_size=2, seed=0)
    config = TrainerConfig(out_dir=out_dir, max_steps=max_steps, progress=False, tensorboard=False,
                           log_every=0, eval_every=0, adam_betas=(0.5, 0.999), **cfg)
    return Trainer(model, batches, config, torch.device("cpu"), config={"load_size": 32, **TINY},
                   model_name=MODEL_NAME)


def test_param_groups_split_generator_and_discriminator():
    model = RefineModel(RefineConfig(**TINY))
    groups = model.param_groups()
    assert set(groups) == {"G", "D"}
    g_ids = {id(p) for p in groups["G"][0]["params"]}
    assert g_ids == {id(p) for p in model.netG.parameters()}
    assert not g_ids & {id(p) for p in groups["D"][0]["params"]}


def test_single_discriminator_call_matches_pix2pixhd_recipe(pairs):
    """Our one batched D call gives the same gradients as D(real), D(fake.detach()), D(fake)."""
    torch.manual_seed(3)
    model = RefineModel(RefineConfig(**TINY))
    torch.nn.init.normal_(model.netG.model[-2].weight, 0, 0.02)  # leave the identity start
    batch = PairBatches(PairDataset(pairs[:2], (32, 32)), batch_size=2)(0)
    g_params, d_params = list(model.netG.parameters()), list(model.netD.parameters())

    real_a, real_b = batch["A"] * 2 - 1, batch["B"] * 2 - 1
    fake_b = model.netG(real_a)
    pred_real = model.netD(torch.cat([real_a, real_b], 1))
    pred_fake_detached = model.netD(torch.cat([real_a, fake_b.detach()], 1))
    loss_d = 0.5 * (lsgan_loss(pred_fake_detached, False) + lsgan_loss(pred_real, True))
    pred_fake = model.netD(torch.cat([real_a, fake_b], 1))
    loss_g = sum(model.generator_losses(real_b, fake_b, pred_fake, pred_real).values())
    expected_g = torch.autograd.grad(loss_g, g_params, retain_graph=True)
    expected_d = torch.autograd.grad(loss_d, d_params)

    losses, _ = model.training_step(batch, 0)
    assert losses["G"].item() == pytest.approx(loss_g.item(), rel=1e-5)
    assert losses["D"].item() == pytest.approx(loss_d.item(), rel=1e-5)
    got_g = torch.autograd.grad(losses["G"], g_params, retain_graph=True)
    got_d = torch.autograd.grad(losses["D"], d_params)
    for got, expected in zip(got_g + got_d, expected_g + expected_d):
        assert torch.allclose(got, expected, rtol=1e-4, atol=1e-7)


def test_losses_decrease_on_a_repeated_batch(pairs, tmp_path):
    torch.manual_seed(0)
    model = RefineModel(RefineConfig(residual=False, **TINY))
    batch = PairBatches(PairDataset(pairs[:2], (32, 32)), batch_size=2)(0)
    trainer = _trainer(model, pairs, tmp_path, 40)
    first_losses, first = trainer.train_step(batch, 0)
    for step in range(1, 40):
        losses, scalars = trainer.train_step(batch, step)
    assert scalars["g_l1"] < 0.6 * first["g_l1"]
    assert scalars["psnr"] > first["psnr"] + 4.0
    assert losses["loss/G"] < 0.7 * first_losses["loss/G"]
    assert losses["loss/D"] < first_losses["loss/D"]  # the discriminator learns to separate the pair


def test_resume_continues_exactly(pairs, tmp_path):
    torch.manual_seed(1)
    straight = RefineModel(RefineConfig(**TINY))
    initial = {k: v.clone() for k, v in straight.state_dict().items()}
    _trainer(straight, pairs, tmp_path / "a", 6).fit()

    torch.manual_seed(1)
    interrupted = RefineModel(RefineConfig(**TINY))
    _trainer(interrupted, pairs, tmp_path / "b", 3, save_every=3).fit()
    resumed = RefineModel(RefineConfig(**TINY))
    resumed.load_state_dict(initial)  # a fresh process: weights come from the checkpoint
    result = _trainer(resumed, pairs, tmp_path / "b", 6).fit()
    assert result["resumed_from"] is not None and result["step"] == 6
    for key, value in straight.state_dict().items():
        assert torch.allclose(value, resumed.state_dict()[key], atol=1e-6), key


def test_evaluator_reports_input_and_refined_quality(pairs):
    evaluator = PairEvaluator(PairDataset(pairs[:3], (32, 32)), n_show=2)
    model = RefineModel(RefineConfig(**TINY)).eval()  # residual: starts as the identity
    out = evaluator(model, 0)
    s = out["scalars"]
    assert s["psnr_refined"] == pytest.approx(s["psnr_input"], abs=1e-3)
    assert s["ssim_refined"] == pytest.approx(s["ssim_input"], abs=1e-4)
    assert 10 < s["psnr_input"] < 60
    assert out["images"]["input_refined_target"].shape == (64, 96, 3)


def test_refined_folder_ignores_trailing_slash(tmp_path):
    assert refined_folder_for(f"{tmp_path}/renders/") == tmp_path / "renders_refined"
    assert refined_folder_for(tmp_path / "renders") == tmp_path / "renders_refined"


def test_checkpoint_to_refined_folder(pairs, tmp_path):
    torch.manual_seed(2)
    model = RefineModel(RefineConfig(**TINY))
    _trainer(model, pairs, tmp_path / "logs" / "refine" / "demo", 2).fit()
    checkpoint = find_checkpoint(tmp_path / "logs" / "refine", "demo")
    generator, run = load_refine_generator(checkpoint, torch.device("cpu"))
    assert run.train.load_size == 32 and run.net.ngf == 4  # read from a checkpoint storing a flat config
    for key, value in generator_state(model.state_dict()).items():
        assert torch.equal(generator.state_dict()[key], value)

    renders = tmp_path / "renders"
    write_image(renders / "wide.png", np.random.default_rng(0).random((20, 45, 3)))
    write_image(renders / "square.jpg", np.random.default_rng(1).random((32, 32, 3)))
    (renders / "bad.png").write_bytes(b"broken")
    messages = []
    result = refine_folder(generator, f"{renders}/", 32, torch.device("cpu"), progress=False, report=messages.append)
    out = tmp_path / "renders_refined"
    assert result.out_folder == out and sorted(p.name for p in result.written) == ["square.png", "wide.png"]
    assert read_image(out / "wide.png").shape == (20, 45, 3)
    assert len(result.skipped) == 1 and "bad.png" in messages[0]
    with pytest.raises(FaceNerfError, match="is the input folder"):
        refine_folder(generator, renders, 32, torch.device("cpu"), out_folder=renders, progress=False)


def test_missing_or_foreign_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(FaceNerfError, match="no RefineNet checkpoint in .*--name nothing"):
        find_checkpoint(tmp_path, "nothing")
    from facenerf.engine.checkpoint import make_payload, save_checkpoint

    path = save_checkpoint(tmp_path / "other.pt", make_payload("mofanerf", {}, 1, {}))
    with pytest.raises(FaceNerfError, match="not a RefineNet"):
        load_refine_generator(path, torch.device("cpu"))
    bigger = RefineModel(RefineConfig(**{**TINY, "ngf": 8}))
    path = save_checkpoint(tmp_path / "wrong.pt", make_payload(MODEL_NAME, TINY, 1, bigger.state_dict()))
    with pytest.raises(FaceNerfError, match="does not match the model"):
        load_refine_generator(path, torch.device("cpu"))
