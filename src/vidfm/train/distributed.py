"""Distributed set-up and collectives, applied from outside model code.

``init_distributed()`` reads the ``torchrun`` environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT``), so the same command runs as 1 process, N processes on one machine or
several machines. ``gather_with_grad`` is the all-gather contrastive losses use to see every rank's
embeddings while gradients still reach the rank that produced them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank``/``world_size`` over all processes, ``local_rank`` on its
    machine, and the ``device`` it computes on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def is_distributed() -> bool:
    """True when a process group is initialised with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init_distributed(backend: str | None = None, device: str = "auto") -> DistInfo:
    """Join the process group described by the ``torchrun`` environment; a no-op for one process.

    Args:
        backend: ``"nccl"`` or ``"gloo"``; None picks NCCL when CUDA is present, else gloo.
        device: ``"auto"`` (CUDA ``LOCAL_RANK`` when present, else CPU) or an explicit device string.

    Idempotent: when a group is already initialised (e.g. by a test harness) it is reused.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    if dist.is_available() and dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
    if not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is not in [0, WORLD_SIZE={world})")
    cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if device not in ("auto", "cuda"):
        dev = torch.device(device)
    elif cuda:
        # One GPU per process: LOCAL_RANK picks it (torchrun sets it per machine).
        dev = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        if not dist.is_available():
            raise RuntimeError("WORLD_SIZE > 1 but torch.distributed is not available in this build")
        for key in ("MASTER_ADDR", "MASTER_PORT"):
            if key not in os.environ:
                raise RuntimeError(f"WORLD_SIZE={world} but {key} is not set; launch with torchrun")
        backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
        # device_id binds NCCL communicators eagerly to this GPU (and silences the barrier warning).
        kwargs = {"device_id": dev} if backend == "nccl" else {}
        dist.init_process_group(backend, rank=rank, world_size=world, **kwargs)
    return DistInfo(rank, world, local_rank, dev)


def destroy_distributed() -> None:
    """Leave the process group if one is initialised (end of a torchrun script or a test)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0; backward sums every rank's gradient of the gathered tensor and returns
    this rank's slice (an all-reduce then a slice: reduce-scatter, written with all_reduce so gloo runs
    it too). Returning only the local rank's own gradient without the sum, as the first SimCLR
    ``GatherLayer`` did, drops the terms other ranks' losses contribute to this rank's embeddings."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001 - autograd's ctx
        world, rank = dist.get_world_size(), dist.get_rank()
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x)
        ctx.rank, ctx.n = rank, x.shape[0]
        return torch.cat(parts, dim=0)  # [world * B, ...], rank-major

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All-gather ``x`` ``[B, ...]`` from every rank into ``[world * B, ...]`` (rank-major order), with
    gradients; identity when not distributed.

    Every rank must pass the same shape. Gradient convention: with each rank's loss computed on its
    own rows against the gathered tensor and DDP averaging gradients over ranks, the update equals
    that of the mean of the per-rank losses computed in one process on the concatenated batch (the
    backward all-reduces the gathered tensor's gradient, so other ranks' loss terms reach ``x``).
    """
    if not is_distributed():
        return x
    return _GatherWithGrad.apply(x)
