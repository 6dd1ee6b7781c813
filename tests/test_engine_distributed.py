"""Two CPU processes (gloo): gradients are averaged, ranks stay identical, only rank 0 writes."""

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from facenerf.engine import distributed
from facenerf.engine.trainer import Trainer, TrainerConfig

STEPS = 3


class Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(3, 2)

    def param_groups(self):
        return {"main": [{"params": list(self.parameters()), "lr": 0.05}]}

    def training_step(self, batch, step):
        x, y = batch
        return {"main": ((self.layer(x) - y) ** 2).mean()}, {}


def rank_batch(rank, step):
    g = torch.Generator().manual_seed(100 * step + rank)
    x = torch.rand(8, 3, generator=g)
    return x, torch.rand(8, 2, generator=g)


def _worker(rank, world, tmp):
    dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=rank, world_size=world)
    try:
        torch.manual_seed(rank)              # different inits: rank 0's weights must win
        cfg = TrainerConfig(out_dir=f"{tmp}/run", max_steps=STEPS, progress=False, tensorboard=False,
                            save_every=0, log_every=1)
        model = Linear()
        Trainer(model, lambda step: rank_batch(rank, step), cfg, torch.device("cpu"), {}).fit()
        torch.save(model.state_dict(), f"{tmp}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_ranks_average_gradients_and_only_rank0_writes(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key

    # single process on the union of both ranks' batches: same mean gradient, same result
    torch.manual_seed(0)
    model = Linear()
    cfg = TrainerConfig(out_dir=tmp_path / "single", max_steps=STEPS, progress=False, tensorboard=False)

    def union(step):
        (x0, y0), (x1, y1) = rank_batch(0, step), rank_batch(1, step)
        return torch.cat([x0, x1]), torch.cat([y0, y1])

    Trainer(model, union, cfg, torch.device("cpu"), {}).fit()
    for key, value in model.state_dict().items():
        assert torch.allclose(value, rank0[key], atol=1e-6), key

    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert checkpoints == [f"step_{STEPS:08d}.pt"]
    log_lines = (tmp_path / "run" / "train_log.txt").read_text().splitlines()
    assert sum(line.split("] ", 1)[1].startswith("step 1 |") for line in log_lines) == 1


def test_helpers_without_a_process_group():
    model = Linear()
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main_process()
    assert distributed.unwrap_model(nn.DataParallel(model)) is model
    model.layer.weight.grad = torch.ones_like(model.layer.weight)
    distributed.average_gradients(model.parameters())
    assert torch.equal(model.layer.weight.grad, torch.ones_like(model.layer.weight))
