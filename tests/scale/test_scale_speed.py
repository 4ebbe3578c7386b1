"""Speed paths applied from outside the model: activation checkpointing, regional compile, gradient-sync
control for accumulation, and the device prefetcher."""

from __future__ import annotations

import pytest
import torch
from scale_toys import mvd_task

from vidfm.data.transforms import AugmentConfig
from vidfm.layers.block import Mlp
from vidfm.masking import MaskConfig, tube_mask
from vidfm.models.decoder import DecoderConfig
from vidfm.models.encoder import EncoderConfig
from vidfm.objectives.pixel import masked_mse
from vidfm.tasks.videomae import VideoMAETask
from vidfm.train.distributed import (
    DevicePrefetcher,
    apply_activation_checkpointing,
    compile_blocks,
    gradient_sync,
    parallelize,
    transformer_blocks,
)


def videomae() -> VideoMAETask:
    torch.manual_seed(0)
    enc = EncoderConfig(size="T/8", depth=2, width=32, heads=2, num_frames=4, img_size=32, drop_path=0.0)
    return VideoMAETask(enc, DecoderConfig(depth=1), MaskConfig("tube", 0.75), AugmentConfig(size=32))


def loss_and_grads(task: VideoMAETask) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    video = torch.randn(2, 3, 4, 32, 32, generator=g)
    mask = tube_mask(2, task.encoder.grid, 0.75, g, torch.device("cpu"))
    task.zero_grad(set_to_none=True)
    loss = masked_mse(*task.reconstruct(video, mask))
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in task.named_parameters()}


def test_activation_checkpointing_recomputes_blocks_with_equal_gradients(monkeypatch):
    plain, checkpointed = videomae(), videomae()
    keys = list(checkpointed.state_dict())
    assert apply_activation_checkpointing(checkpointed) == 3  # 2 encoder blocks + 1 decoder block
    assert apply_activation_checkpointing(checkpointed) == 3 and list(checkpointed.state_dict()) == keys
    want = loss_and_grads(plain)
    calls, mlp_forward = [], Mlp.forward
    # Counted in forward itself: module hooks do not fire during checkpoint recomputation.
    monkeypatch.setattr(Mlp, "forward", lambda self, x: calls.append(1) or mlp_forward(self, x))
    got = loss_and_grads(checkpointed)
    assert len(calls) == 6  # every block's MLP ran twice: forward, then recomputed in backward
    torch.testing.assert_close(got[0], want[0])
    for name, grad in want[1].items():
        torch.testing.assert_close(got[1][name], grad, msg=name)


def test_frozen_teacher_blocks_are_not_checkpointed_but_are_compiled():
    task = mvd_task()
    everything = transformer_blocks(task)
    trainable = transformer_blocks(task, ("teacher",))
    assert len(everything) == len(trainable) + 2 and all(not n.startswith("teacher") for n, _ in trainable)
    assert apply_activation_checkpointing(task, ("teacher",)) == len(trainable)
    assert not getattr(task.teacher_video.teacher.encoder.blocks[0], "_vidfm_checkpointed", False)
    # Regional compile covers student, decoders and teachers; the eager backend keeps this test fast.
    assert compile_blocks(task, backend="eager") == len(everything)
    assert task.teacher_image.teacher.encoder.blocks[0]._compiled_call_impl is not None
    batch = {"video": torch.randint(0, 256, (2, 4, 40, 48, 3), dtype=torch.uint8)}
    out = task(batch, torch.Generator().manual_seed(0))
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and task.encoder.blocks[0].mlp.fc1.weight.grad is not None


def test_parallelize_without_a_process_group_wraps_nothing():
    task = videomae()
    assert parallelize(task, "fsdp", torch.device("cpu"), ("teacher",)) is task
    with pytest.raises(ValueError, match="parallel mode"):
        parallelize(task, "zero3", torch.device("cpu"), ())


def test_gradient_sync_uses_each_wrappers_switch():
    events = []

    class DDPLike(torch.nn.Module):
        def no_sync(self):
            events.append("no_sync")
            return torch.autograd.graph.saved_tensors_hooks(lambda x: x, lambda x: x)

    class FSDPLike(torch.nn.Module):
        def set_requires_gradient_sync(self, flag: bool) -> None:
            events.append(flag)

    with gradient_sync(DDPLike(), enabled=False):
        pass
    with gradient_sync(FSDPLike(), enabled=False):
        events.append("inside")
    with gradient_sync(FSDPLike(), enabled=True):
        pass
    assert events == ["no_sync", False, "inside", True]


def test_prefetcher_keeps_order_and_never_reads_past_its_limit():
    reads = []

    def read():
        reads.append(len(reads))
        return {"x": torch.tensor([reads[-1]]), "tag": f"b{reads[-1]}"}

    pre = DevicePrefetcher(read, torch.device("cpu"), limit=3)
    got = [next(pre) for _ in range(3)]
    assert [b["tag"] for b in got] == ["b0", "b1", "b2"] and [int(b["x"]) for b in got] == [0, 1, 2]
    with pytest.raises(StopIteration):
        next(pre)
    assert reads == [0, 1, 2]  # on CPU one read per item, on demand; never a fourth
