"""The motion-warped keyframe: units, composition over frames, the identity at zero motion."""

from __future__ import annotations

import pytest
import torch

from vidfm.lavit.clips import MOTION_RESCALE, MOTION_STD
from vidfm.lavit.warp import accumulate_motion, warp_keyframe


def pixels_to_units(dx: float, dy: float, size: int, t: int, grid: int = 2) -> torch.Tensor:
    """A constant per-frame motion of (dx, dy) pixels in a ``size`` square frame, tokenizer units
    ``[1, 2, T, grid, grid]``; frame 0 (the keyframe) has none."""
    std = torch.tensor(MOTION_STD) / MOTION_RESCALE
    m = torch.tensor([dx, dy]) / size / std
    motion = m.view(1, 2, 1, 1, 1).expand(1, 2, t, grid, grid).clone()
    motion[:, :, 0] = 0
    return motion


def blob(size: int = 24) -> torch.Tensor:
    """A smooth image ``[1, 3, S, S]`` with distinct channels."""
    y, x = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    g = torch.exp(-((x - 9) ** 2 + (y - 11) ** 2) / 18)
    return torch.stack([g, g.roll(3, 1), 0.5 * g])[None]


def test_warp_follows_a_translation_and_undoes_it():
    size, t = 24, 4
    key = blob(size)
    # content moves 2 px right and 1 px down per frame: frame i is the keyframe shifted by (2i, i)
    out = warp_keyframe(key, pixels_to_units(2.0, 1.0, size, t))
    assert out.shape == (1, 3, t, size, size)
    for i in range(t):
        shifted = key.roll((i, 2 * i), (2, 3))
        inner = (slice(None), slice(None), slice(4, -4), slice(8, -2))  # away from the rolled-in border
        assert torch.allclose(out[:, :, i][inner], shifted[inner], atol=1e-4), i
    # warping the last frame by the opposite motion brings back the keyframe
    back = warp_keyframe(shifted, pixels_to_units(-2.0, -1.0, size, t))[:, :, -1]
    inner = (slice(None), slice(None), slice(4, -4), slice(8, -8))
    assert torch.allclose(back[inner], key[inner], atol=1e-4)


def test_displacements_compose_and_zero_motion_is_the_repeat():
    disp = accumulate_motion(pixels_to_units(1.5, -0.5, 16, 5), (16, 16))  # [1, T, H, W, 2], width 2
    expect = torch.tensor([1.5, -0.5]) * 2 / 16
    for i in range(5):
        assert torch.allclose(disp[0, i], (i * expect).expand(16, 16, 2), atol=1e-5)
    key = torch.rand(2, 3, 16, 16)
    still = warp_keyframe(key, torch.zeros(2, 2, 6, 2, 2))
    assert torch.allclose(still, key[:, :, None].expand_as(still), atol=1e-6)
    with pytest.raises(ValueError, match="motion"):
        warp_keyframe(key, torch.zeros(2, 2, 6, 2))
