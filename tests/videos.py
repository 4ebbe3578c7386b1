"""Tiny videos encoded in-process with PyAV, for tests that need a known file (rotation, VFR, containers).

Import as ``from videos import encode_video`` (pytest puts the ``tests`` folder on ``sys.path`` through
rootdir-style discovery) or by path.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def encode_video(
    path: str | Path,
    frames: np.ndarray,
    fps: int = 25,
    codec: str = "libx264",
    *,
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
    rotation: int | None = None,
    pts: Sequence[int] | None = None,
    time_base: Fraction | None = None,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Encode ``frames`` (uint8 ``[T, H, W, 3]`` RGB) to ``path``; the container follows the suffix.

    Args:
        path: output file (``.mp4``, ``.mkv``, ``.webm``, ``.avi``...).
        frames: uint8 RGB frames ``[T, H, W, 3]``; H and W even for 4:2:0 codecs.
        fps: nominal frame rate (also the time base when ``pts`` is not given).
        codec: PyAV encoder name (``libx264``, ``libvpx-vp9``, ``mpeg4``...).
        pix_fmt: encoder pixel format.
        options: encoder options, e.g. ``{"bf": "2", "g": "8"}``.
        rotation: counter-clockwise display rotation in degrees written as a display matrix
            (FFmpeg ``AV_PKT_DATA_DISPLAYMATRIX``), as read back by ``VideoFrame.rotation``.
        pts: explicit presentation timestamps (in ``time_base`` units) for variable frame rate.
        time_base: time base for ``pts`` (default ``1/(fps*100)`` when ``pts`` is given, else ``1/fps``).
        metadata: container tags, e.g. ``{"title": "..."}``.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [T,H,W,3], got {frames.dtype} {frames.shape}")
    if pts is not None and len(pts) != len(frames):
        raise ValueError(f"{len(pts)} pts for {len(frames)} frames")
    path = Path(path)
    if time_base is None:
        time_base = Fraction(1, fps * 100) if pts is not None else Fraction(1, fps)
    with av.open(str(path), mode="w") as container:
        container.metadata.update(metadata or {})
        stream = container.add_stream(codec, rate=fps, options=dict(options or {}))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        stream.codec_context.time_base = time_base
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = int(pts[i]) if pts is not None else i
            frame.time_base = time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def moving_square(num_frames: int = 24, size: int = 64, step: int = 3, seed: int = 0) -> np.ndarray:
    """uint8 ``[T, size, size, 3]``: a bright blocky square moving ``step`` pixels right per frame over a
    dark blocky background (8-pixel blocks: distinct frames that survive lossy coding, real motion)."""
    rng = np.random.default_rng(seed)
    cells = -(-size // 8)
    background = np.kron(rng.integers(0, 120, (cells, cells, 3)), np.ones((8, 8, 1)))[:size, :size]
    side = max(size // 4, 8)
    patch = np.kron(rng.integers(140, 255, (side // 4, side // 4, 3)), np.ones((4, 4, 1)))
    out = np.empty((num_frames, size, size, 3), np.uint8)
    for t in range(num_frames):
        frame = background.copy()
        x = (t * step) % (size - patch.shape[1])
        y = size // 3
        frame[y : y + patch.shape[0], x : x + patch.shape[1]] = patch
        out[t] = frame
    return out
