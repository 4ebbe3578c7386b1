"""Which frames of a video make a clip: dense strided clips (VideoMAE), one frame per segment (TSN/UMT),
and deterministic multi-view test clips. Pure functions of (num_frames, rng): no decoding here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np


def _check(num_frames: int, num_samples: int, stride: int = 1) -> None:
    if num_frames < 1:
        raise ValueError(f"video has no frames (num_frames={num_frames})")
    if num_samples < 1 or stride < 1:
        raise ValueError(f"num_samples and stride must be >= 1, got {num_samples}, {stride}")


def dense_indices(
    num_frames: int, num_samples: int, stride: int, rng: np.random.Generator | None = None
) -> np.ndarray:
    """``num_samples`` frames ``stride`` apart from a random start (centred when ``rng`` is None).

    Follows VideoMAE pre-training (``datasets.py`` ``VideoMAE``, one segment): the clip spans
    ``num_samples * stride`` frames and starts uniformly in ``[0, num_frames - span]``
    (``_sample_train_indices``); a shorter video starts at 0. The index then advances by ``stride`` only
    while the next one stays ``<= num_frames - 2`` (``_video_TSN_decord_batch_loader``: ``if offset +
    self.new_step < duration`` with a 1-based ``offset``), repeating the last reached index otherwise: short
    videos repeat their last strided frame, and no clip ever ends on the very last frame.
    Returns int64 ``[num_samples]``.
    """
    _check(num_frames, num_samples, stride)
    span = num_samples * stride
    if num_frames < span:
        start = 0
    else:
        start = (num_frames - span) // 2 if rng is None else int(rng.integers(0, num_frames - span + 1))
    last = start + stride * max((num_frames - 2 - start) // stride, 0)  # furthest index the loop reaches
    return np.minimum(start + np.arange(num_samples, dtype=np.int64) * stride, last)


def _segments(num_frames: int, num_samples: int) -> list[tuple[int, int]]:
    # UMT video_utils.py get_frame_indices: acc_samples equal intervals of [0, vlen), each as the pair
    # (start, next_start - 1).
    acc = min(num_samples, num_frames)
    edges = np.linspace(0, num_frames, acc + 1).astype(int)
    return [(int(edges[i]), int(edges[i + 1]) - 1) for i in range(acc)]


def _pad_last(indices: list[int], num_samples: int) -> np.ndarray:
    # UMT: "padded with last frame" when the video has fewer frames than samples.
    return np.asarray(indices + [indices[-1]] * (num_samples - len(indices)), dtype=np.int64)


def segment_indices(num_frames: int, num_samples: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """One frame per each of ``num_samples`` equal segments: random within the segment in training, the
    middle at test (``rng`` None). Follows UMT ``dataset/video_utils.py get_frame_indices`` exactly:
    ``sample="rand"`` draws from ``range(start, end)`` with ``end`` the segment's last frame (so the last
    frame of a segment is never drawn) and, when a segment has a single frame, falls back to a sorted
    random subset; ``sample="middle"`` takes ``(start + end) // 2``; short videos repeat the last index.
    Returns int64 ``[num_samples]``.
    """
    _check(num_frames, num_samples)
    ranges = _segments(num_frames, num_samples)
    if rng is None:
        picks = [(a + b) // 2 for a, b in ranges]
    elif all(b > a for a, b in ranges):
        picks = [int(rng.integers(a, b)) for a, b in ranges]
    else:
        picks = sorted(int(i) for i in rng.permutation(num_frames)[: len(ranges)])
    return _pad_last(picks, num_samples)


def multiview_indices(
    num_frames: int,
    num_samples: int,
    stride: int,
    num_clips: int,
    mode: Literal["dense", "segment"] = "dense",
) -> list[np.ndarray]:
    """``num_clips`` deterministic, evenly spaced test clips (int64 ``[num_samples]`` each).

    dense: VideoMAE's test loader (``kinetics.py`` ``VideoClsDataset``, mode ``test``): take every
    ``stride``-th frame (padding with the last one up to ``num_samples``), then clip ``k`` is the window of
    ``num_samples`` of those starting at ``int(k * (len - num_samples) / (num_clips - 1))``. One clip is the
    centred :func:`dense_indices`.
    segment: within each UMT segment ``(start, end)``, clip ``k`` takes ``start + (end - start) * (k + 1)
    // (num_clips + 1)``: the middle for one clip, evenly spaced interior points for more.
    """
    _check(num_frames, num_samples, stride)
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    if mode == "segment":
        ranges = _segments(num_frames, num_samples)
        return [
            _pad_last([a + (b - a) * (k + 1) // (num_clips + 1) for a, b in ranges], num_samples)
            for k in range(num_clips)
        ]
    if mode != "dense":
        raise ValueError(f"mode must be 'dense' or 'segment', got {mode!r}")
    if num_clips == 1:
        return [dense_indices(num_frames, num_samples, stride)]
    strided = list(range(0, num_frames, stride))
    strided = np.asarray(strided + [strided[-1]] * max(0, num_samples - len(strided)), dtype=np.int64)
    step = max((len(strided) - num_samples) / (num_clips - 1), 0.0)
    return [strided[int(k * step) : int(k * step) + num_samples] for k in range(num_clips)]


@dataclass
class SamplingConfig:
    """How a dataset picks the frames of a clip.

    mode: ``"dense"`` (``num_frames`` frames ``stride`` apart, VideoMAE) or ``"segment"`` (one frame per
    equal segment, TSN/UMT; ``stride`` unused). num_frames: frames per clip. stride: dense frame step.
    """

    mode: Literal["dense", "segment"] = "dense"
    num_frames: int = 16
    stride: int = 4

    def __post_init__(self) -> None:
        if self.mode not in ("dense", "segment"):
            raise ValueError(f"SamplingConfig.mode must be 'dense' or 'segment', got {self.mode!r}")
        if self.num_frames < 1 or self.stride < 1:
            raise ValueError(f"SamplingConfig num_frames/stride must be >= 1: {self}")

    def indices(self, num_frames_in_video: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """One clip's frame indices (random with ``rng``, centred/middle without)."""
        if self.mode == "segment":
            return segment_indices(num_frames_in_video, self.num_frames, rng)
        return dense_indices(num_frames_in_video, self.num_frames, self.stride, rng)

    def views(self, num_frames_in_video: int, num_clips: int) -> list[np.ndarray]:
        """``num_clips`` deterministic test clips (:func:`multiview_indices`)."""
        return multiview_indices(num_frames_in_video, self.num_frames, self.stride, num_clips, self.mode)
