import pytest
import torch

from vidfm.masking import (
    MaskConfig,
    frame_mask,
    make_mask,
    masked_count,
    random_mask,
    semantic_mask,
    tube_mask,
)

GRID = (4, 6, 6)
N = 4 * 36


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def check_partition(mask, batch: int) -> None:
    assert mask.visible.shape[0] == mask.masked.shape[0] == batch
    both = torch.cat([mask.visible, mask.masked], 1).sort(1).values
    assert torch.equal(both, torch.arange(N).expand(batch, -1))  # every token exactly once
    assert torch.equal(mask.visible, mask.visible.sort(1).values)
    assert torch.equal(mask.masked, mask.masked.sort(1).values)
    assert mask.bool().sum(1).tolist() == [mask.masked.shape[1]] * batch


@pytest.mark.parametrize("maker", [tube_mask, random_mask, frame_mask])
def test_counts_partition_and_determinism(maker):
    m = maker(5, GRID, 0.9, gen(), torch.device("cpu"))
    check_partition(m, 5)
    per = masked_count(36, 0.9) * 4 if maker is not random_mask else masked_count(N, 0.9)
    assert m.masked.shape[1] == per
    again = maker(5, GRID, 0.9, gen(), torch.device("cpu"))
    assert torch.equal(m.visible, again.visible)
    other = maker(5, GRID, 0.9, gen(1), torch.device("cpu"))
    assert not torch.equal(m.visible, other.visible)
    assert not torch.equal(m.visible[0], m.visible[1])  # samples differ


def test_tube_mask_is_the_same_in_every_frame_and_frame_mask_is_not():
    tube = tube_mask(3, GRID, 0.75, gen(), torch.device("cpu")).bool().view(3, 4, 36)
    assert (tube == tube[:, :1]).all()
    frame = frame_mask(3, GRID, 0.75, gen(), torch.device("cpu")).bool().view(3, 4, 36)
    assert (frame.sum(-1) == masked_count(36, 0.75)).all()  # same count per frame
    assert not (frame == frame[:, :1]).all()


def test_masked_count_floors_like_videomae_and_keeps_one_visible():
    assert masked_count(196, 0.9) == 176  # official: int(0.9 * 196)
    assert masked_count(4, 0.9) == 3
    with pytest.raises(ValueError):
        masked_count(10, 1.0)


def test_semantic_mask_prefers_important_tokens():
    importance = torch.full((2, 4, 36), 0.01)
    importance[:, :, :6] = 1.0  # the first 6 patches of every frame matter most
    hits = torch.zeros(36)
    for seed in range(50):
        m = semantic_mask(importance, GRID, 0.8, gen(seed))
        check_partition(m, 2)
        vis = m.visible % 36
        assert (m.visible // 36).flatten().bincount(minlength=4).tolist() == [2 * 8] * 4  # 36 - floor(0.8*36)
        hits += torch.bincount(vis.flatten(), minlength=36).float()
    assert hits[:6].mean() > 10 * hits[6:].mean()
    with pytest.raises(ValueError, match="importance"):
        make_mask(MaskConfig("semantic", 0.8), 2, GRID, gen(), "cpu")


def test_semantic_mask_rejects_bad_importance_and_accepts_flat_maps():
    good = torch.rand(2, N)
    check_partition(semantic_mask(good, GRID, 0.75, gen()), 2)  # [B, N] works like [B, T, HW]
    torch.testing.assert_close(
        semantic_mask(good, GRID, 0.75, gen()).visible,
        semantic_mask(good.view(2, 4, 36), GRID, 0.75, gen()).visible,
    )
    with pytest.raises(ValueError, match="importance must be"):
        semantic_mask(torch.rand(2, 4, 35), GRID, 0.75, gen())
    for bad in (-1.0, float("nan")):
        imp = torch.rand(2, 4, 36)
        imp[0, 0, 0] = bad
        with pytest.raises(ValueError, match="non-negative"):
            semantic_mask(imp, GRID, 0.75, gen())
    with pytest.raises(ValueError, match="batch size"):
        make_mask(MaskConfig("semantic", 0.75), 3, GRID, gen(), "cpu", importance=good)
    zeros = torch.zeros(2, 4, 36)  # no information: still a valid, uniform draw
    check_partition(semantic_mask(zeros, GRID, 0.75, gen()), 2)


@pytest.mark.parametrize("kind", ["tube", "random", "frame"])
def test_masks_draw_on_the_generator_device(kind):
    """A CPU generator with another target device (CUDA in the cached-teacher path) must not draw on that
    device: the guard turns that CUDA-only error into a CPU one ('meta' stands in for the accelerator)."""
    from devicecheck import GeneratorDeviceGuard, GeneratorDeviceMismatch

    grid, g = (2, 4, 4), torch.Generator().manual_seed(0)
    with GeneratorDeviceGuard():
        mask = make_mask(MaskConfig(kind, 0.75), 3, grid, g, torch.device("meta"))
        with pytest.raises(GeneratorDeviceMismatch):  # the guard itself catches the old form
            torch.rand(2, 3, generator=g, device="meta")
    assert mask.visible.device.type == "meta" and mask.visible.shape == (3, 2 * 4)
    cpu = make_mask(MaskConfig(kind, 0.75), 3, grid, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert cpu.visible.shape == mask.visible.shape
