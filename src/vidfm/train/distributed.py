"""Distributed training and speed paths, applied from outside model code.

- ``init_distributed()`` reads the ``torchrun`` environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
  ``MASTER_ADDR``/``MASTER_PORT``), so the same command runs as 1 process, N processes on one machine or
  several machines.
- ``gather_with_grad`` is the all-gather contrastive losses use to see every rank's embeddings while
  gradients still reach the rank that produced them.
- ``parallelize`` turns a task into what the trainer's step calls: activation checkpointing, regional
  ``torch.compile``, then DDP or FSDP2 (frozen teachers left out of both); ``gradient_sync``,
  ``full_tensors``, ``shard_optimizer_state`` and ``total_grad_norm`` are what the trainer needs around
  them (accumulation, full-tensor checkpoints, clipping).
- ``DevicePrefetcher`` copies the next batch to the GPU on a side stream while the current step runs.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.checkpoint import checkpoint

try:
    from torch.distributed.tensor import DTensor
except ImportError:  # torch < 2.5 keeps it private
    from torch.distributed._tensor import DTensor

from vidfm.utils import log

# auto = DDP when there is more than one process.
ParallelMode = Literal["auto", "ddp", "fsdp"]


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
        backend: ``"nccl"`` or ``"gloo"``; None = ``$VIDFM_DIST_BACKEND`` if set, else NCCL when CUDA is
            present, else gloo.
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
        # VIDFM_DIST_BACKEND (launch environment, like MASTER_ADDR): gloo runs two ranks on ONE GPU, which
        # NCCL refuses ("Duplicate GPU detected"); a one-GPU machine can still exercise DDP/FSDP2 on CUDA.
        backend = (
            backend or os.environ.get("VIDFM_DIST_BACKEND") or ("nccl" if dev.type == "cuda" else "gloo")
        )
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


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over ranks (a new tensor; ``x`` itself when not distributed). Gloo has no AVG op,
    so it is a SUM divided by the world size."""
    if not is_distributed():
        return x
    x = x.detach().clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x / dist.get_world_size()


# ----------------------------------------------------------------------------- blocks
def transformer_blocks(module: nn.Module, skip: tuple[str, ...] = ()) -> list[tuple[str, nn.Module]]:
    """``(name, block)`` for every entry of a ``ModuleList`` attribute called ``blocks`` (the repeated
    layers of VideoEncoder, MaskedDecoder and teacher towers), skipping names that start with ``skip``."""
    found = []
    for name, child in module.named_modules():
        if isinstance(child, nn.ModuleList) and name.rsplit(".", 1)[-1] == "blocks":
            if skip and name.startswith(skip):
                continue
            found += [(f"{name}.{i}", block) for i, block in enumerate(child)]
    return found


def apply_activation_checkpointing(module: nn.Module, skip: tuple[str, ...] = ()) -> int:
    """Recompute each trainable transformer block's activations in backward instead of storing them
    (``torch.utils.checkpoint``, non-reentrant); returns how many blocks were wrapped.

    The block's ``forward`` is replaced on the instance, so parameter names and checkpoints do not
    change. Frozen blocks (``skip``: the teachers, which run under ``no_grad``) store nothing anyway.
    """
    blocks = transformer_blocks(module, skip)
    for _, block in blocks:
        if getattr(block, "_vidfm_checkpointed", False):
            continue
        inner = block.forward

        def forward(*args: Any, _inner: Callable = inner, **kwargs: Any) -> Any:
            return checkpoint(_inner, *args, use_reentrant=False, **kwargs)

        block.forward = forward  # type: ignore[method-assign]
        block._vidfm_checkpointed = True
    return len(blocks)


def compile_blocks(module: nn.Module, **compile_kwargs: Any) -> int:
    """Regional ``torch.compile``: compile each transformer block (student, decoders and teachers) in
    place with ``nn.Module.compile``; returns how many. Identical blocks share one compiled graph, so
    compile time does not grow with depth, and data-dependent glue (masks, crops) stays eager instead
    of breaking one whole-model graph (PyTorch's "regional compilation" recipe; torchtitan compiles
    per block before FSDP the same way)."""
    blocks = transformer_blocks(module)
    for _, block in blocks:
        block.compile(**compile_kwargs)
    return len(blocks)


# ----------------------------------------------------------------------------- wrapping
def _frozen_names(module: nn.Module, frozen: tuple[str, ...]) -> tuple[list[str], list[nn.Parameter]]:
    names = [n for n, _ in module.named_parameters() if n.startswith(frozen)]
    names += [n for n, _ in module.named_buffers() if n.startswith(frozen)]
    params = [p for n, p in module.named_parameters() if n.startswith(frozen)]
    return names, params


def parallelize(
    task: nn.Module,
    mode: ParallelMode,
    device: torch.device,
    frozen: tuple[str, ...],
    activation_checkpointing: bool = False,
    compile: bool = False,
) -> nn.Module:
    """The module a training step calls: ``task`` with activation checkpointing, regional compile and a
    DDP or FSDP2 wrapper applied from outside, in that order (torchtitan's order: AC, compile, shard).

    Args:
        task: the raw task on ``device``; frozen modules (teachers) already have ``requires_grad=False``.
        mode: ``"auto"``/``"ddp"``: DistributedDataParallel; ``"fsdp"``: FSDP2 ``fully_shard`` on each
            trainable block, then on the task. Nothing is wrapped when not distributed.
        device: this rank's device.
        frozen: name prefixes of frozen modules. They are never wrapped: DDP neither broadcasts nor
            all-reduces them (ignored parameters and buffers) and FSDP2 leaves them unsharded
            (``ignored_params``), so every rank keeps its own full, frozen copy.
        activation_checkpointing: see :func:`apply_activation_checkpointing`.
        compile: see :func:`compile_blocks`; a task without blocks is compiled whole, outside the wrapper.

    With FSDP2 the task's parameters become DTensors in place: build the optimizer afterwards.
    """
    if mode not in ("auto", "ddp", "fsdp"):
        raise ValueError(f"parallel mode must be auto, ddp or fsdp, got {mode!r}")
    if activation_checkpointing and apply_activation_checkpointing(task, frozen) == 0:
        log.warning("activation checkpointing asked for, but %s has no trainable blocks", type(task).__name__)
    regional = compile and compile_blocks(task) > 0
    model: nn.Module = task
    if is_distributed():
        names, params = _frozen_names(task, frozen)
        if mode == "fsdp":
            from torch.distributed.fsdp import fully_shard

            for _, block in transformer_blocks(task, frozen):
                fully_shard(block)
            fully_shard(task, ignored_params=set(params) or None)
        else:
            from torch.nn.parallel import DistributedDataParallel as DDP

            DDP._set_params_and_buffers_to_ignore_for_model(task, names)
            # ViTs have no batch statistics; the buffers (position tables, mean/std) are constants, so
            # they are not re-broadcast before every forward (the keyword was renamed in torch 2.11).
            new_kw = "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters
            no_buffer_sync = {"forward_sync_buffers" if new_kw else "broadcast_buffers": False}
            model = DDP(
                task,
                device_ids=[device.index] if device.type == "cuda" else None,
                gradient_as_bucket_view=True,
                **no_buffer_sync,
            )
    if compile and not regional:
        model = torch.compile(model)  # type: ignore[assignment]
    return model


@contextlib.contextmanager
def gradient_sync(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Skip the gradient all-reduce (DDP) / reduce-scatter (FSDP2) inside when ``enabled`` is False:
    the micro-batches of an accumulated step before the last one."""
    inner = getattr(model, "_orig_mod", model)  # under a whole-model torch.compile
    if enabled:
        yield
    elif hasattr(inner, "no_sync"):
        with inner.no_sync():
            yield
    elif hasattr(inner, "set_requires_gradient_sync"):
        inner.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            inner.set_requires_gradient_sync(True)
    else:
        yield


# ----------------------------------------------------------------------------- sharded tensors
def _is_dtensor(x: Any) -> bool:
    return isinstance(x, DTensor)


def full_tensors(obj: Any) -> Any:
    """``obj`` (nested dicts/lists of tensors: a state dict, an optimizer state) with every DTensor
    gathered into a plain full tensor. A collective under FSDP2: every rank must call it."""
    if _is_dtensor(obj):
        return obj.full_tensor()
    if isinstance(obj, dict):
        return {k: full_tensors(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(full_tensors(v) for v in obj)
    return obj


def shard_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """After ``optimizer.load_state_dict(full)``: turn full per-parameter state (exp_avg …) of DTensor
    parameters into DTensors laid out like the parameter, each rank keeping its own slice (no
    communication). A no-op for plain parameters, so a checkpoint of any world size loads anywhere."""
    from torch.distributed.tensor import distribute_tensor

    for p, state in optimizer.state.items():
        if not _is_dtensor(p):
            continue
        for k, v in state.items():
            if isinstance(v, torch.Tensor) and not _is_dtensor(v) and v.shape == p.shape:
                state[k] = distribute_tensor(v.to(p.device), p.device_mesh, p.placements, src_data_rank=None)


def total_grad_norm(params: list[torch.Tensor]) -> torch.Tensor:
    """L2 norm of all gradients as a plain tensor (a sharded FSDP2 norm is reduced over ranks)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norm = torch.nn.utils.get_total_norm(grads)
    return norm.full_tensor() if _is_dtensor(norm) else norm


# ----------------------------------------------------------------------------- prefetch
class DevicePrefetcher:
    """Keeps the next item already on the device: right after handing out item ``k``, item ``k+1`` is
    read and its copy from pinned host memory starts on a side CUDA stream, overlapping the copy with
    step ``k``'s compute. On other devices it reads and moves one item per call.

    Args:
        read: returns the next host item (nested dicts/lists/tuples of tensors and plain values).
        device: target device.
        limit: items that may be read in all; nothing is read past it (no batch beyond the last step).
        overlap: use the side stream on CUDA (False: read and copy on demand, as on other devices).
    """

    def __init__(
        self, read: Callable[[], Any], device: torch.device, limit: int, overlap: bool = True
    ) -> None:
        self.read, self.device, self.left = read, device, limit
        self.stream = torch.cuda.Stream(device) if overlap and device.type == "cuda" else None
        self._ahead: Any = None
        self._has_ahead = False

    def _load(self) -> None:
        if self.left <= 0:
            return
        self.left -= 1
        item = self.read()
        if self.stream is None:
            self._ahead = to_device(item, self.device)
        else:
            with torch.cuda.stream(self.stream):
                self._ahead = to_device(item, self.device)
        self._has_ahead = True

    def __next__(self) -> Any:
        if not self._has_ahead:
            self._load()
        if not self._has_ahead:
            raise StopIteration
        item, self._ahead, self._has_ahead = self._ahead, None, False
        if self.stream is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_stream(self.stream)
            # The memory was allocated on the side stream: tell the allocator it is used on this one.
            _each_tensor(item, lambda t: t.record_stream(current))
            self._load()
        return item


def _each_tensor(obj: Any, fn: Callable[[torch.Tensor], Any]) -> None:
    if isinstance(obj, torch.Tensor):
        fn(obj)
    elif isinstance(obj, dict):
        for v in obj.values():
            _each_tensor(v, fn)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _each_tensor(v, fn)


def to_device(obj: Any, device: torch.device) -> Any:
    """Move tensors in nested dicts/lists/tuples to ``device`` (non-blocking; pinned on CUDA)."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj
