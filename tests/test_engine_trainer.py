"""The training loop: learning, exact resume, per-optimiser gradients, schedules, interrupts, logs."""

import os
import signal
import threading

import pytest
import torch
from devices import DEVICES
from torch import nn

from facenerf.engine.checkpoint import load_checkpoint
from facenerf.engine.schedules import ExponentialSchedule
from facenerf.engine.trainer import Trainer, TrainerConfig
from facenerf.errors import FaceNerfError

CPU = torch.device("cpu")


class Regressor(nn.Module):
    """y = MLP(x) fitted with MSE; dropout makes the step depend on torch's global RNG."""

    def __init__(self, width=8, lr=1e-2):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, width), nn.ReLU(), nn.Dropout(0.2), nn.Linear(width, 1))
        self.lr = lr

    def param_groups(self):
        first, last = self.net[0], self.net[3]
        return {"main": [{"params": list(first.parameters()), "lr": self.lr, "name": "first"},
                         {"params": list(last.parameters()), "lr": self.lr * 0.5, "name": "last"}]}

    def training_step(self, batch, step):
        x, y = batch
        loss = ((self.net(x) - y) ** 2).mean()
        return {"main": loss}, {"psnr": float(-10 * torch.log10(loss.detach()))}


def fixed_batch():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 2, generator=g)
    return x, (x[:, :1] * 2 - x[:, 1:])


def step_batches(step):
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.rand(16, 2, generator=g)
    return x, x.sum(dim=1, keepdim=True)


def config(tmp_path, name, steps, **kw):
    base = dict(log_every=2, eval_every=0, save_every=0, progress=False, tensorboard=False)
    base.update(kw)
    return TrainerConfig(out_dir=tmp_path / name, max_steps=steps, **base)


def test_loss_decreases_on_a_repeated_batch(tmp_path):
    torch.manual_seed(0)
    batch = fixed_batch()
    model = Regressor(width=16)
    model.eval()
    with torch.no_grad():
        before = float(((model.net(batch[0]) - batch[1]) ** 2).mean())
    result = Trainer(model, iter(lambda: batch, None), config(tmp_path, "run", 60), CPU, {"seed": 0}).fit()
    model.eval()
    with torch.no_grad():
        after = float(((model.net(batch[0]) - batch[1]) ** 2).mean())
    assert after < 0.3 * before
    assert result["step"] == 60 and "loss/main" in result["losses"]
    log = (tmp_path / "run" / "train_log.txt").read_text()
    assert "step 60 | loss/main" in log and "lr/main" in log
    assert load_checkpoint(result["checkpoint"])["step"] == 60


def _state(trainer):
    model = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    opt = trainer.optimizers["main"].state_dict()
    return model, opt


def test_resume_continues_exactly(tmp_path):
    kw = dict(lr_decay_steps=6, lr_decay_rate=0.5, warmup_steps=3, save_every=4, keep_last=2)
    torch.manual_seed(1)
    straight = Trainer(Regressor(), step_batches, config(tmp_path, "straight", 10, **kw), CPU, {}, model_name="reg")
    straight.fit()

    torch.manual_seed(1)
    first = Trainer(Regressor(), step_batches, config(tmp_path, "split", 5, **kw), CPU, {}, model_name="reg")
    first.fit()
    assert load_checkpoint(first.checkpoints.latest())["step"] == 5
    torch.manual_seed(999)     # a different init and RNG state: everything must come from the checkpoint
    second = Trainer(Regressor(), step_batches, config(tmp_path, "split", 10, **kw), CPU, {}, model_name="reg")
    result = second.fit()
    assert result["resumed_from"].endswith("step_00000005.pt") and second.step == 10

    model_a, opt_a = _state(straight)
    model_b, opt_b = _state(second)
    for key in model_a:
        assert torch.equal(model_a[key], model_b[key]), key
    for index, state in opt_a["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(opt_b["state"][index][name])), name
    assert [g["lr"] for g in opt_a["param_groups"]] == [g["lr"] for g in opt_b["param_groups"]]
    assert [s for s, _ in second.checkpoints.checkpoints()] == [8, 10]


def test_resume_reads_the_checkpoint_to_the_cpu(tmp_path):
    """Whatever the run's device, the checkpoint is read to the CPU and load_state_dict places it, so
    Adam's step counters stay on the CPU (on a GPU, counters there cost a sync per parameter and step).
    A 'meta' device stands in for the GPU: a payload mapped there would hold no values."""
    first = Trainer(Regressor(), step_batches, config(tmp_path, "run", 3), CPU, {}, model_name="reg")
    first.fit()
    second = Trainer(Regressor(), step_batches, config(tmp_path, "run", 6), CPU, {}, model_name="reg")
    second.device = torch.device("meta")
    assert second._resume().endswith("step_00000003.pt")
    for key, value in first.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[key]), key
    steps = [state["step"] for state in second.optimizers["main"].state.values()]
    assert steps and all(s.device.type == "cpu" and float(s) == 3 for s in steps)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("amp", ["none", "bf16", "fp16"])
def test_mixed_precision_learns_and_resumes_on_the_device(tmp_path, device, amp):
    """Autocast (with loss scaling for fp16) on CUDA, fp32 on the CPU whatever is asked; a run split
    by a resume ends where a straight run does."""
    device = torch.device(device)
    kw = dict(amp=amp, lr_decay_steps=20, lr_decay_rate=0.5, save_every=10)
    torch.manual_seed(0)
    batch = fixed_batch()
    model = Regressor(width=16).to(device)
    trainer = Trainer(model, iter(lambda: batch, None), config(tmp_path, "learn", 60, amp=amp), device, {})
    assert trainer.amp == (amp if device.type == "cuda" else "none")
    assert (trainer.scaler is not None) == (trainer.amp == "fp16")
    x, y = (t.to(device) for t in batch)
    with torch.no_grad():
        before = float(((model.eval().net(x) - y) ** 2).mean())
    trainer.fit()
    with torch.no_grad():
        after = float(((model.eval().net(x) - y) ** 2).mean())
    assert after < 0.3 * before

    runs = {}
    for name, stops in (("straight", [20]), ("split", [10, 20])):
        torch.manual_seed(1)
        for steps in stops:
            runs[name] = Trainer(Regressor().to(device), step_batches, config(tmp_path, name, steps, **kw), device,
                                 {}, model_name="reg")
            runs[name].fit()
    for key, value in runs["straight"].model.state_dict().items():
        torch.testing.assert_close(value, runs["split"].model.state_dict()[key], rtol=1e-5, atol=1e-7)


def test_schedule_per_group_decay_and_warmup(tmp_path):
    schedule = ExponentialSchedule(decay_steps=100, rate=0.1, warmup_steps=4)
    assert schedule.factor(0) == pytest.approx(0.25)
    assert schedule.factor(200) == pytest.approx(0.01)
    trainer = Trainer(Regressor(lr=1e-2), step_batches, config(tmp_path, "lr", 50, lr_decay_steps=50), CPU, {})
    trainer.fit()
    groups = trainer.optimizers["main"].param_groups
    factor = 0.1 ** (49 / 50)          # the last step ran at step index 49
    assert groups[0]["lr"] == pytest.approx(1e-2 * factor)
    assert groups[1]["lr"] == pytest.approx(0.5e-2 * factor)


class TwoPlayer(nn.Module):
    """A GAN-shaped toy: both losses come from one forward pass without detaching."""

    def __init__(self):
        super().__init__()
        self.g = nn.Parameter(torch.tensor([1.5, -0.5]))
        self.d = nn.Parameter(torch.tensor([0.7, 0.3]))
        self.d_only_unused = nn.Parameter(torch.tensor([2.0]))

    def param_groups(self):
        return {"G": [{"params": [self.g], "lr": 0.1}],
                "D": [{"params": [self.d, self.d_only_unused], "lr": 0.1}]}

    @staticmethod
    def losses(g, d, unused, z):
        fake = g * z                               # generator output  [2]
        score = (d * fake).sum()                   # discriminator score
        return {"G": -score + (unused * g).sum(), "D": score ** 2}

    def training_step(self, batch, step):
        return self.losses(self.g, self.d, self.d_only_unused, batch), {}


def test_each_optimiser_gets_only_its_own_gradient(tmp_path):
    model = TwoPlayer()
    z = torch.tensor([0.4, 1.2])
    g0, d0, u0 = (p.detach().clone().requires_grad_(True) for p in (model.g, model.d, model.d_only_unused))
    losses = TwoPlayer.losses(g0, d0, u0, z)
    expected_g = torch.autograd.grad(losses["G"], g0, retain_graph=True)[0]
    expected_d = torch.autograd.grad(losses["D"], d0)[0]
    trainer = Trainer(model, iter(lambda: z, None), config(tmp_path, "gan", 1), CPU, {})
    trainer.train_step(z, 0)
    assert torch.allclose(model.g.grad, expected_g) and torch.allclose(model.d.grad, expected_d)
    assert model.d_only_unused.grad is None                      # appears only in G's loss
    assert torch.equal(model.d_only_unused.detach(), u0.detach())
    assert not torch.equal(model.g.detach(), g0.detach()) and not torch.equal(model.d.detach(), d0.detach())


def test_absent_loss_leaves_that_optimiser_alone(tmp_path):
    model = TwoPlayer()
    model.training_step = lambda batch, step: ({"D": TwoPlayer.losses(model.g, model.d, model.d_only_unused,
                                                                      batch)["D"]}, {})
    g0, d0 = model.g.detach().clone(), model.d.detach().clone()
    trainer = Trainer(model, iter(lambda: torch.ones(2), None), config(tmp_path, "alt", 1), CPU, {})
    trainer.train_step(torch.ones(2), 0)
    assert torch.equal(model.g.detach(), g0) and model.g.grad is None
    assert not torch.equal(model.d.detach(), d0)


class Broken(Regressor):
    def __init__(self, mode):
        super().__init__()
        self.mode = mode

    def training_step(self, batch, step):
        losses, scalars = super().training_step(batch, step)
        if self.mode == "nan" and step == 2:
            return {"main": losses["main"] * float("nan")}, scalars
        if self.mode == "unknown":
            return {"other": losses["main"]}, scalars
        return losses, scalars


def test_divergence_and_unknown_loss_are_reported(tmp_path):
    broken = Broken("nan")
    with pytest.raises(FaceNerfError, match="diverged at step 2"):
        Trainer(broken, step_batches, config(tmp_path, "nan", 5), CPU, {}).fit()
    assert all(torch.isfinite(p).all() for p in broken.parameters())  # the bad step changed no weight
    with pytest.raises(KeyError, match="unknown optimiser"):
        Trainer(Broken("unknown"), step_batches, config(tmp_path, "unk", 5), CPU, {}).fit()


class TensorScalars(Regressor):
    """Scalars as one-element tensors; ``on_step_end`` records what it is given."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def training_step(self, batch, step):
        x, y = batch
        loss = ((self.net(x) - y) ** 2).mean()
        return {"main": loss}, {"psnr": -10 * torch.log10(loss.detach()), "count": torch.tensor(7),
                                "plain": 0.5}

    def on_step_end(self, step, scalars):
        self.seen.append((step, scalars))


def test_tensor_scalars_come_back_as_floats_in_one_transfer(tmp_path):
    """No per-value conversion (``aten::item``, a device sync each on a GPU) in a training step:
    the losses and scalars come to the host in one transfer; ``on_step_end`` gets them as floats."""
    from torch.profiler import ProfilerActivity, profile

    model = TensorScalars()
    trainer = Trainer(model, step_batches, config(tmp_path, "ts", 3), CPU, {})
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        losses, scalars = trainer.train_step(step_batches(0), 0)

    def in_optimiser(event):  # Adam reads its step counters, which stay on the CPU
        while event is not None and not event.name.startswith("Optimizer.step"):
            event = event.cpu_parent
        return event is not None

    conversions = [e for e in prof.events() if e.name == "aten::item" and not in_optimiser(e)]
    assert not conversions
    assert list(scalars) == ["psnr", "count", "plain"] and list(losses) == ["loss/main"]
    assert all(type(v) is float for v in (*scalars.values(), *losses.values()))
    assert scalars["count"] == 7.0 and scalars["plain"] == 0.5
    assert scalars["psnr"] == pytest.approx(-10 * torch.log10(torch.tensor(losses["loss/main"])).item(), rel=1e-6)
    assert model.seen == [(0, scalars)]


def test_host_floats_keeps_order_and_mixes_numbers_and_tensors():
    from facenerf.runtime import host_floats

    values = host_floats({"a": 1, "b": torch.tensor([2.5]), "c": torch.tensor(3, dtype=torch.int64),
                          "d": torch.tensor(0.25, dtype=torch.bfloat16), "e": torch.tensor(2 ** 40 + 1)})
    assert values == {"a": 1.0, "b": 2.5, "c": 3.0, "d": 0.25, "e": float(2 ** 40 + 1)}
    assert list(values) == ["a", "b", "c", "d", "e"] and host_floats({}) == {}


@pytest.mark.parametrize("device", [d for d in DEVICES if d != "cpu"])
def test_host_floats_of_device_and_cpu_tensors(device):
    from facenerf.runtime import host_floats

    values = host_floats({"gpu": torch.tensor(1.5, device=device), "cpu": torch.tensor(2.0), "n": 3})
    assert values == {"gpu": 1.5, "cpu": 2.0, "n": 3.0}


def test_old_step_end_hooks_and_scalars_named_like_losses(tmp_path):
    class OldHook(Regressor):
        def __init__(self):
            super().__init__()
            self.steps = []

        def on_step_end(self, step):
            self.steps.append(step)

    model = OldHook()
    Trainer(model, step_batches, config(tmp_path, "old", 2), CPU, {}).fit()
    assert model.steps == [0, 1]

    class Clash(Regressor):
        def training_step(self, batch, step):
            losses, _ = super().training_step(batch, step)
            return losses, {"loss/main": torch.tensor(0.0)}

    with pytest.raises(KeyError, match="scalars named like losses"):
        Trainer(Clash(), step_batches, config(tmp_path, "clash", 1), CPU, {}).train_step(step_batches(0), 0)


class Interrupting(Regressor):
    def __init__(self, at, how):
        super().__init__()
        self.at, self.how = at, how

    def training_step(self, batch, step):
        if step == self.at and self.how == "signal":
            os.kill(os.getpid(), signal.SIGINT)     # handled: the step finishes, then the loop stops
        if step == self.at and self.how == "raise":
            raise KeyboardInterrupt
        return super().training_step(batch, step)


@pytest.mark.parametrize("how, saved_step", [("signal", 4), ("raise", 3)])
def test_interrupt_saves_a_checkpoint(tmp_path, how, saved_step):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers can only be installed from the main thread")
    previous = signal.getsignal(signal.SIGINT)
    trainer = Trainer(Interrupting(3, how), step_batches, config(tmp_path, how, 20), CPU, {})
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert signal.getsignal(signal.SIGINT) is previous
    latest = trainer.checkpoints.latest()
    assert latest is not None and load_checkpoint(latest)["step"] == saved_step
    resumed = Trainer(Regressor(), step_batches, config(tmp_path, how, 6), CPU, {},
                      model_name=trainer.model_name).fit()
    assert resumed["resumed_from"] == str(latest) and resumed["step"] == 6


def test_evaluation_cadence_and_tensorboard(tmp_path):
    calls = []

    def evaluate(model, step):
        calls.append((step, model.training, torch.is_grad_enabled()))
        return {"scalars": {"psnr": 20.0 + step}, "images": {"view": torch.rand(8, 8, 3)}}

    cfg = config(tmp_path, "eval", 7, eval_every=3, tensorboard=True)
    result = Trainer(Regressor(), step_batches, cfg, CPU, {}, evaluate=evaluate).fit()
    assert [c[0] for c in calls] == [3, 6, 7]
    assert all(not training and not grad for _, training, grad in calls)
    assert result["eval"] == {"psnr": 27.0}
    assert list((tmp_path / "eval" / "tensorboard").glob("events.out.tfevents.*"))
    assert "eval step 6 | psnr 26" in (tmp_path / "eval" / "train_log.txt").read_text()


def test_resume_refuses_another_model_or_shape(tmp_path):
    Trainer(Regressor(width=8), step_batches, config(tmp_path, "r", 2), CPU, {}, model_name="reg").fit()
    with pytest.raises(FaceNerfError, match="'reg' model, not 'other'"):
        Trainer(Regressor(width=8), step_batches, config(tmp_path, "r", 4), CPU, {}, model_name="other").fit()
    with pytest.raises(FaceNerfError, match="sizes in the config"):
        Trainer(Regressor(width=16), step_batches, config(tmp_path, "r", 4), CPU, {}, model_name="reg").fit()
    with pytest.raises(FaceNerfError, match="already holds checkpoints"):
        Trainer(Regressor(width=16), step_batches, config(tmp_path, "r", 1, resume=False), CPU, {}).fit()
    fresh = Trainer(Regressor(width=16), step_batches, config(tmp_path, "new", 1, resume=False), CPU, {})
    assert fresh.fit()["resumed_from"] is None


def test_unreadable_checkpoints_stop_the_run(tmp_path):
    trainer = Trainer(Regressor(), step_batches, config(tmp_path, "bad", 2), CPU, {})
    trainer.fit()
    trainer.checkpoints.latest().write_bytes(b"garbage")
    with pytest.raises(FaceNerfError, match="no checkpoint .* can be read"):
        Trainer(Regressor(), step_batches, config(tmp_path, "bad", 4), CPU, {}).fit()
