"""Frame sampling: ranges, determinism, short videos, and agreement with the official loops."""

from __future__ import annotations

import numpy as np
import pytest

from vidfm.data.sampling import SamplingConfig, dense_indices, multiview_indices, segment_indices


class FixedStart:
    """Stands in for a Generator whose ``integers`` returns a chosen value."""

    def __init__(self, value: int) -> None:
        self.value = value

    def integers(self, low: int, high: int) -> int:
        assert low <= self.value < high
        return self.value


def videomae_loop(n: int, num: int, stride: int, start: int) -> list[int]:
    """VideoMAE ``_video_TSN_decord_batch_loader`` with one segment (1-based offset, no jitter)."""
    out, offset = [], start + 1
    for _ in range(num):
        out.append(offset - 1)
        if offset + stride < n:
            offset += stride
    return out


@pytest.mark.parametrize("num, stride", [(16, 4), (8, 2), (4, 1), (1, 3)])
def test_dense_matches_videomae_for_every_start(num, stride):
    for n in range(1, 80):
        starts = range(0, n - num * stride + 1) if n >= num * stride else [0]
        for start in starts:
            got = dense_indices(n, num, stride, FixedStart(start))
            assert got.dtype == np.int64 and got.tolist() == videomae_loop(n, num, stride, start), (n, start)


def test_dense_ranges_determinism_and_centre():
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(200):
        idx = dense_indices(100, 16, 4, rng)
        assert idx.shape == (16,) and idx.min() >= 0 and idx.max() <= 98
        assert (np.diff(idx) == 4).all()
        starts.add(int(idx[0]))
    assert min(starts) == 0 and max(starts) == 100 - 64  # the whole start range is used
    a = dense_indices(100, 16, 4, np.random.default_rng(7))
    assert np.array_equal(a, dense_indices(100, 16, 4, np.random.default_rng(7)))
    assert dense_indices(100, 16, 4).tolist() == list(range(18, 18 + 64, 4))  # centred: (100-64)//2
    short = dense_indices(10, 16, 4, np.random.default_rng(0))  # shorter than the span
    assert short.tolist() == [0, 4, 8] + [8] * 13


def test_segment_matches_umt():
    # UMT get_frame_indices: segments [0,25),[25,50),[50,75),[75,100) -> ranges (a, next-1).
    assert segment_indices(100, 4).tolist() == [12, 37, 62, 87]  # (a + b) // 2
    rng = np.random.default_rng(0)
    for _ in range(100):
        idx = segment_indices(100, 4, rng)
        for k, i in enumerate(idx):
            assert 25 * k <= i < 25 * k + 24  # random.choice(range(a, next - 1)): the last frame never drawn
    hits = np.concatenate([segment_indices(100, 4, rng) for _ in range(300)])
    assert set(range(0, 24)) <= set(hits.tolist())
    assert np.array_equal(
        segment_indices(60, 8, np.random.default_rng(3)), segment_indices(60, 8, np.random.default_rng(3))
    )


def test_segment_short_videos():
    assert segment_indices(3, 8).tolist() == [0, 1, 2, 2, 2, 2, 2, 2]  # padded with the last frame
    rand = segment_indices(3, 8, np.random.default_rng(0))  # one-frame segments: UMT's sorted fallback
    assert sorted(set(rand[:3].tolist())) == [0, 1, 2] and (rand[3:] == rand[2]).all()
    idx = segment_indices(10, 8, np.random.default_rng(1))  # some one-frame segments -> fallback
    assert (np.diff(idx) > 0).all() and idx.max() <= 9
    with pytest.raises(ValueError, match="no frames"):
        segment_indices(0, 8)


def test_multiview_dense_follows_videomae_test_loader():
    views = multiview_indices(100, 8, 4, 3)
    strided = np.arange(0, 100, 4)  # 25 strided frames, windows of 8 at int(k * (25 - 8) / 2)
    assert [v.tolist() for v in views] == [strided[s : s + 8].tolist() for s in (0, 8, 17)]
    assert multiview_indices(100, 8, 4, 1)[0].tolist() == dense_indices(100, 8, 4).tolist()
    short = multiview_indices(10, 8, 4, 2)  # 3 strided frames padded with the last
    assert all(v.tolist() == [0, 4, 8, 8, 8, 8, 8, 8] for v in short)


def test_multiview_segment_and_config():
    views = multiview_indices(100, 4, 1, 3, mode="segment")
    assert len(views) == 3
    for k in range(4):  # every view's k-th frame inside segment k, views in increasing order
        column = [int(v[k]) for v in views]
        assert 25 * k <= column[0] < column[1] < column[2] <= 25 * k + 24
    assert multiview_indices(100, 4, 1, 1, mode="segment")[0].tolist() == segment_indices(100, 4).tolist()
    cfg = SamplingConfig(mode="segment", num_frames=4)
    assert cfg.indices(100).tolist() == [12, 37, 62, 87]
    assert len(cfg.views(100, 2)) == 2
    assert SamplingConfig().indices(100, np.random.default_rng(0)).shape == (16,)
    with pytest.raises(ValueError, match="mode"):
        SamplingConfig(mode="sparse")
    with pytest.raises(ValueError, match="mode"):
        multiview_indices(10, 2, 1, 2, mode="sparse")
