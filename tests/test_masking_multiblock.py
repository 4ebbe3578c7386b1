"""V-JEPA multi-block masks: block shapes from the config, the union masked, equal visible count per sample."""

import math

import pytest
import torch

from vidfm.masking import (
    LONG_RANGE,
    SHORT_RANGE,
    BlockMaskConfig,
    block_size,
    block_starts,
    blocks_to_masked,
    multiblock_mask,
)

GRID = (8, 14, 14)  # V-JEPA ViT-L/16: 16 frames / tubelet 2, 224 / 16
N = math.prod(GRID)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("cfg", [SHORT_RANGE, LONG_RANGE], ids=["short", "long"])
def test_block_shape_follows_scale_and_aspect(cfg):
    hw = GRID[1] * GRID[2]
    for seed in range(50):
        t, h, w = block_size(cfg, GRID, gen(seed))
        assert t == GRID[0]  # temporal scale 1.0: every block spans the clip
        area = int(hw * cfg.spatial_scale[0])  # 29 or 137 positions
        assert abs(h * w - area) <= h + w  # rounding of √(area·ar) and √(area/ar) only
        lo, hi = cfg.aspect_ratio
        assert lo * 0.6 <= h / w <= hi / 0.6  # the sampled aspect ratio, up to rounding on a small grid


def test_blocks_are_where_the_starts_say():
    starts = torch.tensor([[[0, 1, 2], [3, 10, 11]]])  # one sample, two blocks
    m = blocks_to_masked(starts, (2, 3, 3), GRID).view(1, *GRID)
    expected = torch.zeros(GRID, dtype=torch.bool)
    expected[0:2, 1:4, 2:5] = True
    expected[3:5, 10:13, 11:14] = True
    assert torch.equal(m[0], expected)


@pytest.mark.parametrize("cfg", [SHORT_RANGE, LONG_RANGE], ids=["short", "long"])
def test_mask_is_the_union_of_the_blocks_with_equal_visible_count(cfg):
    batch = 16
    mask = multiblock_mask(cfg, batch, GRID, gen(3), "cpu")
    # The same draws, replayed: the block size, then the corners.
    g = gen(3)
    size = block_size(cfg, GRID, g)
    union = blocks_to_masked(block_starts(batch, cfg.num_blocks, size, GRID, g), size, GRID)
    assert mask.visible.shape[1] == int((~union).sum(1).min())  # cut to the smallest context of the batch
    is_masked = mask.bool()
    assert is_masked[union].all()  # every block token is masked
    both = torch.cat([mask.visible, mask.masked], 1).sort(1).values
    assert torch.equal(both, torch.arange(N).expand(batch, -1))  # a partition
    assert torch.equal(mask.visible, mask.visible.sort(1).values)
    # The context is each sample's first context tokens in (t, h, w) order (official ``[:min_keep_enc]``).
    for b in range(batch):
        assert torch.equal(mask.visible[b], (~union[b]).nonzero()[:, 0][: mask.visible.shape[1]])


@pytest.mark.parametrize("cfg", [SHORT_RANGE, LONG_RANGE], ids=["short", "long"])
def test_masked_ratio_lies_between_one_block_and_all_blocks_disjoint(cfg):
    """One sample (no cut to a batch minimum): the masked share is the union of K blocks of the sampled size,
    so at least one block's share and at most K of them. Over 200 draws the mean is ~0.70 for 8 blocks of
    15 % and ~0.82 for 2 of 70 %, as uniform placement makes it."""
    ratios = []
    for seed in range(200):
        t, h, w = block_size(cfg, GRID, gen(seed))
        one = t * h * w / N
        ratio = multiblock_mask(cfg, 1, GRID, gen(seed), "cpu").bool().float().mean().item()
        assert one - 1e-6 <= ratio <= min(1.0, cfg.num_blocks * one) + 1e-6
        ratios.append(ratio)
    mean = sum(ratios) / len(ratios)
    assert (0.6 < mean < 0.8) if cfg is SHORT_RANGE else (0.75 < mean < 0.9), mean


def test_batch_cut_masks_more_but_never_less():
    """A batch's context is cut to its smallest: each sample masks at least its own union."""
    # Same seed: the same block size and the same corners for the first sample.
    single = multiblock_mask(LONG_RANGE, 1, GRID, gen(0), "cpu").masked.shape[1]
    batch = multiblock_mask(LONG_RANGE, 8, GRID, gen(0), "cpu").masked.shape[1]
    assert batch >= single


def test_a_clip_covered_by_its_blocks_is_drawn_again_or_refused():
    whole = BlockMaskConfig(num_blocks=1, spatial_scale=(1.0, 1.0), aspect_ratio=(1.0, 1.0))
    with pytest.raises(ValueError, match="covers the whole"):
        multiblock_mask(whole, 2, (2, 4, 4), gen(), "cpu")
    # Blocks of half the frame leave context in every sample.
    half = BlockMaskConfig(num_blocks=2, spatial_scale=(0.5, 0.5))
    mask = multiblock_mask(half, 32, (2, 4, 4), gen(), "cpu")
    assert mask.visible.shape[1] >= 1
