"""Decoded-clip store: uint8 clips decoded once into one memory-mappable file, read at memory speed.

Why. Decoding is what a GPU-hour buys on a small set: the tiny recipes' step takes a few ms on a GPU while
a clip costs ~10-50 ms to decode on a core. Small research sets fit in memory once decoded
(digits-motion: 2,000 x 16x64x64x3 = 393 MB), so decode them once.

Layout of ``OUT/`` (no pickle anywhere):

- ``clips.u8``: raw uint8 ``[N, T, S, S, 3]`` (C order), N clips of T frames, centre-square crops of side S
  after resizing the short side to S (what ``VideoDataset(crop_square=True)`` yields). Opened with
  ``numpy.memmap``; the shape lives in the index.
- ``store.json``: sampling (mode, frames, stride), short side, shape, per video its path, first clip row,
  clip count and frame indices, the failed videos with their reasons, and the manifest records (labels,
  caption, split) with the video each refers to (or, when it failed, its failure).

Clips per video. Each video holds up to ``clips_per_video`` fixed clips: first the centred test clip
(``SamplingConfig.indices`` without a generator, the clip evaluation decodes), then the sampling's evenly
spaced views (``SamplingConfig.views``), duplicates dropped, so a short video holds every distinct window.
Training picks one of them per (seed, epoch, item), so a store trades the infinitely many random windows
of decoding on the fly for a few fixed ones (the crop, flip and scale jitter stay random: they happen on
the device, in the task's ``VideoAugment``).

Resident mode (``data.resident=true``): the trainer moves the whole ``[N,T,S,S,3]`` array to its device
once (:meth:`ClipStoreDataset.to_device`) and gathers each batch there with one index (:meth:`batch`):
no worker, no pinning, no host-to-device copy per step.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from torch.utils.data import Dataset

from vidfm.data.datasets import DataError, Records, VideoRecord, _centre_square
from vidfm.data.decode import VideoDecodeError, VideoReader
from vidfm.data.sampling import SamplingConfig
from vidfm.io import atomic_write_text
from vidfm.utils import log

INDEX_FILE = "store.json"
CLIPS_FILE = "clips.u8"
STORE_VERSION = 2  # 2: a record whose video failed names it (``failed``: its row in the index's ``failed``)


# ----------------------------------------------------------------------------- writing
def _decode_clips(job: tuple[int, str, SamplingConfig, int, int]) -> tuple[int, np.ndarray | None, list, str]:
    """(video id, uint8 [K,T,S,S,3] or None, frame indices per clip, failure reason)."""
    vid, path, sampling, side, per_video = job
    try:
        with VideoReader(path, short_side=side, threads=1) as reader:
            n = reader.info.num_frames
            # First the centred test clip (what VideoDataset(train=False) decodes), then evenly spaced ones.
            views = [sampling.indices(n, None)] + (sampling.views(n, per_video) if per_video > 1 else [])
            unique: list[np.ndarray] = []
            for v in views:  # a short video yields the same window several times: keep it once
                if len(unique) < per_video and not any(np.array_equal(v, u) for u in unique):
                    unique.append(v)
            frames = reader.read(np.concatenate(unique))  # one decoding pass: [K*T, H, W, 3]
    except (VideoDecodeError, av.error.FFmpegError, OSError) as e:
        return vid, None, [], e.reason if isinstance(e, VideoDecodeError) else str(e)
    frames = np.ascontiguousarray(_centre_square(frames, side))
    if frames.shape[1:3] != (side, side):  # a frame smaller than the side after resizing (cannot happen)
        return vid, None, [], f"frames of {frames.shape[1:3]} are not {side}x{side}"
    clips = frames.reshape(len(unique), sampling.num_frames, side, side, 3)
    return vid, clips, [u.tolist() for u in unique], ""


def write_clip_store(
    records: Records | list[VideoRecord],
    out: str | Path,
    sampling: SamplingConfig,
    short_side: int,
    clips_per_video: int = 4,
    workers: int = 0,
) -> dict[str, Any]:
    """Decode every distinct video of ``records`` once into ``out`` (see the module docstring).

    Args:
        records: manifest rows (all splits: the split is stored and chosen when reading).
        out: store folder (created; an existing store there is replaced).
        sampling: how clips are cut (mode, frames, stride); training must use the same.
        short_side: S, the stored side (short side resized to S, then the centre S x S).
        clips_per_video: fixed clips per video (fewer for short videos).
        workers: decoding processes (0 = this one).

    Unreadable videos are logged, listed in the index and left out; never fatal. Returns the index.
    """
    if clips_per_video < 1 or short_side < 1:
        raise ValueError(f"clips_per_video and short_side must be >= 1, got {clips_per_video}, {short_side}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = list(dict.fromkeys(r.path for r in records))
    jobs = [(i, p, sampling, short_side, clips_per_video) for i, p in enumerate(paths)]
    videos: list[dict[str, Any] | None] = [None] * len(paths)
    failed: list[dict[str, str]] = []
    rows = 0
    tmp = out / f".{CLIPS_FILE}.tmp"
    with open(tmp, "wb") as f:
        for vid, clips, indices, reason in _map(jobs, workers):
            if clips is None:
                log.warning("clip store: unreadable video left out: %s (%s)", paths[vid], reason)
                failed.append({"path": paths[vid], "reason": reason})
                continue
            f.write(clips.tobytes())
            videos[vid] = {"path": paths[vid], "first": rows, "count": len(clips), "frames": indices}
            rows += len(clips)
    os.replace(tmp, out / CLIPS_FILE)
    stored = [v for v in videos if v is not None]
    video_id = {v["path"]: k for k, v in enumerate(stored)}  # records of a failed video get -1 ...
    failed_id = {f["path"]: k for k, f in enumerate(failed)}  # ... and the row of their failure
    index = {
        "version": STORE_VERSION,
        "sampling": {"mode": sampling.mode, "num_frames": sampling.num_frames, "stride": sampling.stride},
        "short_side": short_side,
        "shape": [rows, sampling.num_frames, short_side, short_side, 3],
        "videos": stored,
        "failed": failed,
        "classes": dict(getattr(records, "classes", {})),
        "records": [
            {"video": video_id.get(r.path, -1), "labels": r.labels, "caption": r.caption, "split": r.split}
            | ({"failed": failed_id[r.path]} if r.path in failed_id else {})
            for r in records
        ],
    }
    atomic_write_text(out / INDEX_FILE, json.dumps(index) + "\n")
    log.info(
        "clip store %s: %d clips of %d videos (%.1f MB), %d failed",
        out, rows, len(stored), rows * int(np.prod(index["shape"][1:])) / 1e6, len(failed),
    )  # fmt: skip
    return index


def _map(jobs: list, workers: int) -> Iterator[tuple[int, np.ndarray | None, list, str]]:
    if workers <= 0:
        yield from map(_decode_clips, jobs)
        return
    # spawn: a fork of a process that already ran FFmpeg threads can deadlock in the child.
    with get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(_decode_clips, jobs, chunksize=4)


# ----------------------------------------------------------------------------- reading
def read_store_index(root: str | Path) -> dict[str, Any]:
    """The store's ``store.json``; a clear error when ``root`` is not a complete store."""
    root = Path(root)
    if not (root / INDEX_FILE).is_file():
        raise DataError(
            f"{root} is not a clip store (no {INDEX_FILE}; write one with vidfm data cache-clips)"
        )
    index = json.loads((root / INDEX_FILE).read_text())
    expected = int(np.prod(index["shape"]))
    size = (root / CLIPS_FILE).stat().st_size if (root / CLIPS_FILE).is_file() else -1
    if size != expected:
        raise DataError(f"{root}/{CLIPS_FILE}: {size} bytes, the index says {expected}: rewrite the store")
    return index


class ClipStoreDataset(Dataset):
    """Clips of a store, one item per manifest record of ``split``: ``dataset[i]`` or ``[(epoch, i)]`` is
    ``{"video": uint8 [T,S,S,3] (or [V,T,S,S,3]), "labels", "caption", "index", "path"}`` as
    :class:`vidfm.data.datasets.VideoDataset`.

    Training items take one of their video's stored clips, chosen by ``(seed, epoch, index)``; test items
    the centred one (or ``views`` of the stored ones, evenly spaced). Records whose video failed are dropped
    (logged); the failures reported (:meth:`failure_counts`, :meth:`failed_paths`) are those of ``split``'s
    records, as a :class:`~vidfm.data.datasets.VideoDataset` of that split would report them.
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        seed: int = 0,
        views: int = 1,
        train: bool | None = None,
        resident: bool = False,
        index: dict[str, Any] | None = None,
    ) -> None:
        """Args:
        root: store folder (:func:`write_clip_store`).
        split: records of this split (None = all).
        seed: with (epoch, index), picks the training clip.
        views: clips per item (a leading view axis when > 1).
        train: random clip per epoch (True) or the deterministic test clip(s); None = ``views == 1``.
        resident: the trainer keeps the whole store on its device (:meth:`to_device`) and gathers batches
            there (:meth:`batch`).
        index: ``store.json`` as :func:`read_store_index` returned it, when the caller has read it already
            (it is parsed once per open: large stores have an index of many MB).
        """
        self.root = Path(root)
        index = read_store_index(self.root) if index is None else index
        s = index["sampling"]
        self.sampling = SamplingConfig(mode=s["mode"], num_frames=s["num_frames"], stride=s["stride"])
        self.short_side, self.crop_square = int(index["short_side"]), True
        self.shape = tuple(index["shape"])
        self.seed, self.views, self.resident = seed, views, resident
        self.train = views == 1 if train is None else train
        self.epoch = 0
        videos = index["videos"]
        kept = [r for r in index["records"] if split is None or r["split"] == split]
        lost = [r for r in kept if r["video"] < 0]
        if all("failed" in r for r in lost):  # the failed videos of this split's records, once each
            self._failed = [index["failed"][k]["path"] for k in sorted({r["failed"] for r in lost})]
        else:  # a version-1 store does not say which video a record lost: every failure of the store
            self._failed = [f["path"] for f in index["failed"]]
        if lost:
            log.warning("clip store %s: %d records of split %s have no clips (their videos failed: %s)",
                        root, len(lost), split, "; ".join(self._failed[:5]))  # fmt: skip
        kept = [r for r in kept if r["video"] >= 0]
        if not kept:
            raise DataError(f"clip store {root}: no usable records in split {split!r}")
        self.classes: dict[str, list[str]] = index["classes"]
        self.records = [
            VideoRecord(videos[r["video"]]["path"], r["labels"], r["caption"], r["split"]) for r in kept
        ]
        vid = np.asarray([r["video"] for r in kept], np.int64)
        self._first = np.asarray([videos[v]["first"] for v in vid], np.int64)  # [R] first clip row
        self._count = np.asarray([videos[v]["count"] for v in vid], np.int64)  # [R] clips of that video
        self._labels = {  # {column: int64 [R]}
            c: torch.tensor([r.labels[c] for r in self.records], dtype=torch.int64) for c in self.classes
        }
        self._clips: np.ndarray | None = None  # memmap, opened lazily in each process
        self._device_clips: torch.Tensor | None = None  # [N,T,S,S,3] on the device when resident
        self._choice: tuple[int, np.ndarray] | None = None  # (epoch, uniform [R]) for the clip choice

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getstate__(self) -> dict[str, Any]:  # workers reopen the memmap; never pickle device tensors
        if self._device_clips is not None:
            raise RuntimeError("a resident clip store is gathered on its device, not in loader workers")
        return {**self.__dict__, "_clips": None}

    # ----- which rows
    def _rows(self, keys: list[tuple[int, int]]) -> np.ndarray:
        """Clip rows of (epoch, index) keys: int64 [B] (training) or [B, views] (test)."""
        idx = np.asarray([i for _, i in keys], np.int64)
        first, count = self._first[idx], self._count[idx]
        if not self.train:
            if self.views == 1:
                return first  # the centred test clip
            k = np.arange(self.views)[None] * (count[:, None] - 1) // max(self.views - 1, 1)
            return first[:, None] + k  # [B, views], evenly spaced (repeats when fewer are stored)
        u = np.asarray([self._uniform(e)[i] for e, i in keys])
        return first + np.minimum((u * count).astype(np.int64), count - 1)

    def _uniform(self, epoch: int) -> np.ndarray:
        # One uniform number per record and epoch, drawn for all records at once: choosing clips for a
        # batch of 1024 stays a gather, not 1024 generator constructions.
        if self._choice is None or self._choice[0] != epoch:
            self._choice = (epoch, np.random.default_rng([self.seed, epoch, 0xC11]).random(len(self)))
        return self._choice[1]

    def _memmap(self) -> np.ndarray:
        if self._clips is None:
            self._clips = np.memmap(self.root / CLIPS_FILE, np.uint8, "r", shape=self.shape)
        return self._clips

    # ----- items and batches
    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        index = int(index)
        if not 0 <= index < len(self.records):
            raise IndexError(f"index {index} out of range for {len(self.records)} records")
        rows = self._rows([(epoch, index)])[0]
        if self._device_clips is not None:
            video = self._device_clips[torch.as_tensor(rows, device=self._device_clips.device)]
        else:
            video = torch.from_numpy(np.array(self._memmap()[rows]))  # copy out of the page cache
        record = self.records[index]
        return {
            "video": video,
            "labels": dict(record.labels),
            "caption": record.caption,
            "index": index,
            "path": record.path,
        }

    def to_device(self, device: torch.device) -> None:
        """Load the whole store onto ``device`` once (resident mode)."""
        if self._device_clips is None or self._device_clips.device != device:
            self._device_clips = torch.from_numpy(np.array(self._memmap())).to(device)
            self._labels = {c: v.to(device) for c, v in self._labels.items()}
            log.info(
                "clip store %s resident on %s (%.1f MB)", self.root, device, self._device_clips.numel() / 1e6
            )

    def batch(self, keys: list[tuple[int, int]]) -> dict[str, Any]:
        """A collated batch of (epoch, index) keys gathered on the resident device in one index:
        ``video`` uint8 [B,T,S,S,3], ``labels`` {col: int64 [B]}, ``index`` int64 [B], captions, paths."""
        if self._device_clips is None:
            raise RuntimeError("batch() needs a resident store: call to_device(device) first")
        device = self._device_clips.device
        idx = torch.as_tensor([i for _, i in keys], dtype=torch.int64)
        rows = torch.from_numpy(self._rows(keys)).to(device, non_blocking=True)
        idx_dev = idx.to(device, non_blocking=True)
        return {
            "video": self._device_clips[rows],
            "labels": {c: v[idx_dev] for c, v in self._labels.items()},
            "caption": [self.records[i].caption for i in idx.tolist()],
            "index": idx_dev,
            "path": [self.records[i].path for i in idx.tolist()],
        }

    # ----- the failure interface of VideoDataset (failures happened when the store was written)
    def failure_counts(self) -> tuple[int, int]:
        """(failed, tried) distinct videos of this split's records."""
        return len(self._failed), len(self._failed) + len(set(r.path for r in self.records))

    def failed_paths(self) -> list[str]:
        return list(self._failed)

    def summary(self) -> str:
        failed, tried = self.failure_counts()
        text = f"{failed} of {tried} files failed when the store was written" + (
            f": {'; '.join(self._failed[:10])}" if failed else ""
        )
        (log.warning if failed else log.info)(text)
        return text


def store_matches(index: dict[str, Any], sampling: SamplingConfig, short_side: int) -> str:
    """Empty when a store with ``index`` serves ``sampling`` at ``short_side``, else why not."""
    s = index["sampling"]
    want = {"mode": sampling.mode, "num_frames": sampling.num_frames, "short_side": short_side}
    have = {"mode": s["mode"], "num_frames": s["num_frames"], "short_side": index["short_side"]}
    if sampling.mode == "dense":
        want["stride"], have["stride"] = sampling.stride, s["stride"]
    diff = {k: (have[k], want[k]) for k in want if have[k] != want[k]}
    return "" if not diff else ", ".join(f"{k}: store {a} != data {b}" for k, (a, b) in diff.items())
