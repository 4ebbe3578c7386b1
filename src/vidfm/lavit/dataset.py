"""A map-style dataset of prepared clips (motion fields, keyframes, optionally frames) with an npz cache.

Preparing a clip decodes, re-encodes and reads motion vectors: far slower than a training step. Every
video is prepared once, up front, into ``cache_dir/<key>.npz`` (the key hashes the path, size, mtime and
the clip settings), so later epochs and later runs only load arrays. A video that cannot be prepared is
reported once, remembered in the cache as a failure, and skipped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing
import os
from pathlib import Path

import av
import numpy as np
import torch
from torch.utils.data import Dataset

from vidfm.data.decode import VideoDecodeError
from vidfm.io import atomic_write
from vidfm.lavit.clips import ClipConfig, prepare_clips, resize_motion
from vidfm.utils import log

_FIELDS = ("keyframe", "motion", "frames", "start", "num_frames", "shot", "fps", "frame_size")


def cache_key(path: str | Path, cfg: ClipConfig) -> str:
    """Hash of the file identity (absolute path, size, mtime) and the clip settings."""
    st = os.stat(path)
    ident = json.dumps([str(Path(path).resolve()), st.st_size, st.st_mtime_ns, dataclasses.asdict(cfg)])
    return hashlib.sha1(ident.encode()).hexdigest()


def _save(file: Path, arrays: dict[str, np.ndarray]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(file, write)


def prepare_cached(path: str, cfg: ClipConfig, cache_dir: str | None) -> dict[str, np.ndarray] | str:
    """The clips of ``path`` as stacked arrays (from the cache when present), or the failure reason."""
    file = Path(cache_dir) / f"{cache_key(path, cfg)}.npz" if cache_dir else None
    if file is not None and file.is_file():
        with np.load(file) as z:
            data = {k: z[k] for k in z.files}
        return str(data["error"]) if "error" in data else data
    try:
        clips = prepare_clips(path, cfg, work_dir=cache_dir)
        if not clips:
            raise VideoDecodeError(path, f"no clip of at least {cfg.min_frames} frames starts at an I-frame")
    except (av.error.FFmpegError, OSError, ValueError, RuntimeError) as e:  # VideoDecodeError included
        reason = str(e)
        local = isinstance(e, OSError) and not isinstance(e, av.error.FFmpegError)
        if file is not None and not local:  # a full or missing disk is not the video's fault: retry later
            _save(file, {"error": np.asarray(reason)})
        return reason
    data = {
        "keyframe": np.stack([c.keyframe for c in clips]),
        "motion": np.stack([c.motion for c in clips]),
        "start": np.asarray([c.start for c in clips]),
        "num_frames": np.asarray([c.num_frames for c in clips]),
        "shot": np.asarray([c.shot for c in clips]),
        "fps": np.asarray([c.fps for c in clips]),
        "frame_size": np.asarray([c.frame_size for c in clips]),
    }
    if cfg.frames_size:
        data["frames"] = np.stack([c.frames for c in clips])
    if file is not None:
        _save(file, data)
    return data


def _job(args: tuple[str, ClipConfig, str | None]) -> dict[str, np.ndarray] | str:
    torch.set_num_threads(1)
    return prepare_cached(*args)


class ClipDataset(Dataset):
    """Every clip of ``paths``; item ``i`` is a dict of tensors:

    ``motion`` float ``[2, T, gh, gw]`` (resized to ``grid``), ``keyframe`` uint8 ``[S, S, 3]``,
    ``num_frames`` (valid frames), ``video`` (index into ``paths``), and ``frames`` uint8
    ``[T, s, s, 3]`` when the clip config keeps frames.

    Args:
        paths: video files.
        clips: how videos become clips.
        grid: motion grid the model reads (official 20 x 36).
        cache_dir: npz cache folder (None: no cache).
        workers: processes preparing videos (0 = in this process).
        max_failure_fraction: raise when more videos than this fraction fail (a wrong folder, a codec
            missing), rather than train on almost nothing.
    """

    def __init__(
        self,
        paths: list[str],
        clips: ClipConfig,
        grid: tuple[int, int],
        cache_dir: str | None = None,
        workers: int = 0,
        max_failure_fraction: float = 0.5,
    ) -> None:
        if not paths:
            raise ValueError("ClipDataset needs at least one video")
        if cache_dir:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
        jobs = [(str(p), clips, cache_dir) for p in paths]
        if workers > 0:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                results = pool.map(_job, jobs, chunksize=1)
        else:
            results = [prepare_cached(*j) for j in jobs]
        self.paths = [str(p) for p in paths]
        self.failures = [(p, r) for p, r in zip(self.paths, results, strict=True) if isinstance(r, str)]
        for path, reason in self.failures:
            log.warning("skipping %s: %s", path, reason)
        if len(self.failures) > max_failure_fraction * len(paths):
            raise RuntimeError(
                f"{len(self.failures)} of {len(paths)} videos could not be prepared, e.g. {self.failures[:3]}"
            )
        good = [(i, r) for i, r in enumerate(results) if not isinstance(r, str)]
        if not good:
            raise RuntimeError(f"no video could be prepared, e.g. {self.failures[:3]}")
        self.video = torch.as_tensor(np.concatenate([np.full(len(r["start"]), i) for i, r in good]))
        # Videos differ in size, so their macroblock grids too: each is resized to ``grid`` first.
        self.motion = torch.cat([resize_motion(r["motion"], grid) for _, r in good])  # [N, 2, T, gh, gw]
        keep = [k for k in _FIELDS if k in good[0][1] and k != "motion"]
        self.arrays = {k: np.concatenate([r[k] for _, r in good]) for k in keep}
        self.keyframe = torch.from_numpy(self.arrays["keyframe"])
        self.frames = torch.from_numpy(self.arrays["frames"]) if "frames" in self.arrays else None
        self.num_frames = torch.from_numpy(self.arrays["num_frames"])

    def __len__(self) -> int:
        return len(self.motion)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {
            "motion": self.motion[i],
            "keyframe": self.keyframe[i],
            "num_frames": self.num_frames[i],
            "video": self.video[i],
        }
        if self.frames is not None:
            item["frames"] = self.frames[i]
        return item
