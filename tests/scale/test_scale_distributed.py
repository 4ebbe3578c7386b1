"""Two gloo processes against one: DDP and FSDP2 steps, the all-gather's gradients, and resuming a
2-process checkpoint in 1 process. One spawn of 2 processes runs every 2-process part (their start-up,
importing torch and torch._dynamo, which DDP imports, is most of the time). Spawned, not forked: a
fork after this process has run threaded code (DataLoader workers, OpenMP) can deadlock the child."""

import json
import shutil
import time

import pytest
import torch
import torch.multiprocessing as mp
from scale_toys import Clips, ContrastiveToyTask, collate, free_port, join_gloo

from vidfm.train.checkpoint import LATEST_FILE, checkpoints_dir, step_dir_name
from vidfm.train.distributed import gather_with_grad
from vidfm.train.trainer import TrainConfig, Trainer

STEPS, PER_RANK = 4, 4


def cfg(batch_size: int, **kw) -> TrainConfig:
    base = dict(
        steps=STEPS,
        batch_size=batch_size,
        lr=3e-3,
        min_lr=3e-4,
        warmup_steps=0,
        clip_grad=0.5,
        log_every=1,
        ckpt_every=2,
        workers=0,
        device="cpu",
        precision="fp32",
        progress=False,
        seed=3,
    )
    base.update(kw)
    return TrainConfig(**base)


def train(run_dir, c: TrainConfig) -> Trainer:
    torch.manual_seed(0)  # same initial weights (and teacher) in every process and run
    trainer = Trainer(ContrastiveToyTask(), c, run_dir, Clips(), collate)
    trainer.fit()
    return trainer


def _gather_grads(rank: int, full: torch.Tensor) -> torch.Tensor:
    """d(mean over ranks of each rank's loss)/dx for this rank's rows of ``full``."""
    n = full.shape[0] // 2
    x = full[rank * n : (rank + 1) * n].clone().requires_grad_(True)
    everyone = gather_with_grad(x)
    loss = (x @ everyone.T).logsumexp(1).mean() + everyone.pow(3).sum()
    (loss / 2).backward()  # the 1/world DDP would apply
    return x.grad


def _two_ranks(rank: int, port: int, root: str) -> None:
    join_gloo(rank, 2, port)
    full = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    out = {"gather_grad": _gather_grads(rank, full).tolist()}
    for mode in ("ddp", "fsdp"):
        trainer = train(
            f"{root}/{mode}", cfg(PER_RANK, parallel=mode, activation_checkpointing=mode == "fsdp")
        )
        out[mode] = [r["loss"] for r in trainer.history]
        params = dict(trainer.task.named_parameters())
        if mode == "ddp":
            out["ddp_ignored"] = sorted(trainer.model.parameters_to_ignore)
        else:
            out["fsdp_sharded"] = {n: type(p).__name__ for n, p in params.items()}
    with open(f"{root}/rank{rank}.json", "w") as f:
        json.dump(out, f)
    torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    root = tmp_path_factory.mktemp("two")
    ctx = mp.spawn(_two_ranks, args=(free_port(), str(root)), nprocs=2, join=False)
    deadline = time.monotonic() + 300  # a hung collective must fail the test, not stall the suite
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("the 2-process run did not finish in 300 s")
    return root, [json.loads((root / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    trainer = train(tmp_path_factory.mktemp("one") / "run", cfg(2 * PER_RANK))
    return [r["loss"] for r in trainer.history]


def test_gather_with_grad_matches_one_process(two):
    _, ranks = two
    full = torch.randn(6, 4, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    loss = (full @ full.T).logsumexp(1).mean() + full.pow(3).sum()
    loss.backward()
    got = torch.tensor(ranks[0]["gather_grad"] + ranks[1]["gather_grad"])
    torch.testing.assert_close(got, full.grad, rtol=1e-5, atol=1e-6)
    assert gather_with_grad(full) is full  # one process: identity


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_processes_equal_one_process_on_the_concatenated_batch(two, single, mode):
    _, ranks = two
    assert len(single) == STEPS and ranks[0][mode] == ranks[1][mode]  # metrics are averaged over ranks
    # Step 1 checks the forward; steps 2-4 check that gradients (all-reduce or reduce-scatter, the
    # gather's backward, clipping and AdamW on shards) gave the same updates as one process.
    assert ranks[0][mode] == pytest.approx(single, rel=2e-5, abs=1e-6)
    assert len(set(single)) == STEPS  # the loss did move


def test_frozen_teacher_is_not_wrapped(two):
    _, ranks = two
    assert ranks[0]["ddp_ignored"] == ["teacher.bias", "teacher.weight"]
    sharded = ranks[0]["fsdp_sharded"]
    assert (
        sharded["teacher.weight"] == "Parameter" and sharded["encoder.blocks.0.attn.qkv.weight"] == "DTensor"
    )
    assert sharded["head_a.weight"] == "DTensor"


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_process_checkpoint_resumes_in_one(two, single, tmp_path, mode):
    root, _ = two
    run = tmp_path / mode
    shutil.copytree(root / mode, run)
    # Go back to the step-2 checkpoint, written by 2 processes with batch 4 each.
    shutil.rmtree(checkpoints_dir(run) / step_dir_name(STEPS))
    (checkpoints_dir(run) / LATEST_FILE).write_text(step_dir_name(2) + "\n")
    resumed = train(run, cfg(2 * PER_RANK))
    assert [r["step"] for r in resumed.history] == [3, 4]
    assert [r["loss"] for r in resumed.history] == pytest.approx(single[2:], rel=2e-5, abs=1e-6)
