"""Video datasets: CSV manifests and class-per-folder trees -> records -> decoded uint8 clips.

Failure accounting. A file that cannot be opened or decoded is logged once (path + reason), counted, and
the item is replaced by another record chosen from the item's own RNG. The counts live in a per-record
status array in shared memory (``torch`` shared tensor), so they are the same in the main process and in
every DataLoader worker, whichever loader drives the dataset (the trainer builds its own) and whether the
workers were forked or spawned; reporting failures through the batches instead would need every loop to
hand them back. Once ``min_seen`` distinct files were tried, a failed fraction above
``max_failure_fraction`` raises :class:`DataError` naming examples (in the worker; the DataLoader
re-raises it in the main process).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate, get_worker_info

from vidfm.data.decode import VideoDecodeError, VideoReader
from vidfm.data.sampling import SamplingConfig
from vidfm.errors import UserError
from vidfm.utils import log

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp")
_UNTRIED, _OK, _FAILED = 0, 1, 2
_MAX_REPLACEMENTS = 10


class DataError(UserError, RuntimeError):
    """Too many unreadable videos, or a manifest that cannot be used (the CLI prints it as one line)."""


@dataclass(frozen=True)
class VideoRecord:
    """One row: an absolute video path, integer labels per label column (-1 = unlabelled), an optional
    caption and split."""

    path: str
    labels: dict[str, int] = field(default_factory=dict)
    caption: str | None = None
    split: str | None = None


class Records(list):
    """A ``list[VideoRecord]`` that also carries ``classes``: per label column, the sorted class names
    (a label id is the position of its name)."""

    def __init__(self, records: list[VideoRecord] = (), classes: dict[str, list[str]] | None = None) -> None:
        """Args: records: the rows. classes: per label column, the sorted class names."""
        super().__init__(records)
        self.classes: dict[str, list[str]] = dict(classes or {})


def _sorted_classes(values: set[str]) -> list[str]:
    # Numeric order when every name is an integer ("0".."10"), so digit labels keep their value as id.
    if all(v.lstrip("-").isdigit() for v in values):
        return sorted(values, key=int)
    return sorted(values)


def read_manifest(
    path: str | Path,
    split: str | None = None,
    label_columns: list[str] | None = None,
    caption_column: str = "caption",
) -> Records:
    """Records of a CSV manifest with a ``path`` column (relative to the manifest's folder, or absolute).

    Args:
        path: the CSV file.
        split: keep rows whose ``split`` column equals this (None = all rows).
        label_columns: columns holding class names; None = every column except path, caption and split.
            Class ids come from the sorted names over the WHOLE manifest, so every split agrees.
        caption_column: column with free text (absent = no captions). Rows repeating a path (several
            captions) stay separate records; see :func:`group_captions`.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest not found: {path}")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    if "path" not in columns:
        raise DataError(f"{path}: a manifest needs a 'path' column, found {columns}")
    if label_columns is None:
        label_columns = [c for c in columns if c not in ("path", caption_column, "split")]
    missing = [c for c in label_columns if c not in columns]
    if missing:
        raise DataError(f"{path}: label column(s) {missing} not in {columns}")
    if split is not None and "split" not in columns:
        raise DataError(f"{path}: split={split!r} asked for but the manifest has no 'split' column")
    classes = {c: _sorted_classes({r[c] for r in rows if r[c]}) for c in label_columns}
    ids = {c: {name: i for i, name in enumerate(names)} for c, names in classes.items()}
    root = path.parent
    records = Records(classes=classes)
    for line, r in enumerate(rows, start=2):
        if not r["path"]:
            raise DataError(f"{path}:{line}: empty path")
        if split is not None and r["split"] != split:
            continue
        video = Path(r["path"]) if Path(r["path"]).is_absolute() else root / r["path"]
        records.append(
            VideoRecord(
                path=str(video),
                labels={c: ids[c][r[c]] if r[c] else -1 for c in label_columns},
                caption=(r.get(caption_column) or None) if caption_column in columns else None,
                split=r.get("split") or None,
            )
        )
    return records


def folder_records(root: str | Path) -> Records:
    """Records of a class-per-folder tree ``root/<class>/**/<video>``; the label column is ``"label"``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"not a folder: {root}")
    names = sorted(d.name for d in root.iterdir() if d.is_dir())
    records = Records(classes={"label": names})
    for i, name in enumerate(names):
        for video in sorted((root / name).rglob("*")):
            if video.suffix.lower() in VIDEO_EXTENSIONS and video.is_file():
                records.append(VideoRecord(path=str(video), labels={"label": i}))
    if not records:
        raise DataError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) under class folders of {root}")
    return records


def source_records(source: str | Path, split: str | None = None) -> Records:
    """Records of a CSV manifest (``split`` rows only, when given) or of a class-per-folder root (every video:
    folders have no split)."""
    return read_manifest(source, split=split) if str(source).endswith(".csv") else folder_records(source)


def group_captions(records: list[VideoRecord]) -> tuple[list[VideoRecord], list[list[str]]]:
    """One record per distinct path (first-seen order) and, aligned with it, that video's captions, for
    text-video retrieval (caption ``j`` of video ``i`` matches video ``i``)."""
    first: dict[str, int] = {}
    videos: list[VideoRecord] = []
    captions: list[list[str]] = []
    for r in records:
        if r.path not in first:
            first[r.path] = len(videos)
            videos.append(r)
            captions.append([])
        if r.caption is not None:
            captions[first[r.path]].append(r.caption)
    return videos, captions


class VideoDataset(Dataset):
    """Decoded clips of ``records``: ``dataset[i]`` or ``dataset[(epoch, i)]`` is a dict

    ``{"video": uint8 [T,H,W,C] (or [V,T,H,W,C] when views > 1), "labels": {col: int}, "caption": str|None,
    "index": int, "path": str}`` where ``index``/``path``/``labels`` are those of the record actually
    decoded (a replacement when the asked one failed). Frame choice is random from (seed, epoch, index) in
    training mode, deterministic (centred clip / segment middles, or evenly spaced views) otherwise.
    """

    def __init__(
        self,
        records: list[VideoRecord],
        sampling: SamplingConfig,
        short_side: int | None = 224,
        views: int = 1,
        seed: int = 0,
        max_failure_fraction: float = 0.1,
        crop_square: bool = True,
        train: bool | None = None,
        min_seen: int = 20,
    ) -> None:
        """Args:
        records: from :func:`read_manifest` / :func:`folder_records`.
        sampling: frames per clip and how they are picked.
        short_side: resize on decode so the short side has this many pixels (None = as stored).
        views: temporal clips per item; ``video`` gets a leading view axis when > 1.
        seed: with (epoch, index), seeds each item's RNG, so workers are deterministic and independent.
        max_failure_fraction: failed / tried distinct files above which loading stops with DataError.
        crop_square: centre-crop to ``short_side`` x ``short_side`` (equal H, W across a batch).
        train: random clips (True) or deterministic test clips (False); None = random when ``views == 1``.
        min_seen: distinct files tried before the failure fraction is checked (all files if fewer).
        """
        if len(records) == 0:
            raise DataError("VideoDataset needs at least one record")
        if views < 1:
            raise ValueError(f"views must be >= 1, got {views}")
        if not 0.0 <= max_failure_fraction <= 1.0:
            raise ValueError(f"max_failure_fraction must be in [0, 1], got {max_failure_fraction}")
        self.records = list(records)
        self.classes = dict(getattr(records, "classes", {}))
        self.sampling, self.short_side, self.views = sampling, short_side, views
        self.seed, self.max_failure_fraction, self.crop_square = seed, max_failure_fraction, crop_square
        self.train = views == 1 if train is None else train
        self.min_seen = min(min_seen, len(self.records))
        self.epoch = 0
        # Per-record status (untried / ok / failed), shared by every process that holds this dataset.
        self._status = torch.zeros(len(self.records), dtype=torch.uint8).share_memory_()
        self._reasons: dict[int, str] = {}  # this process's failure reasons, for logs and summary()

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Item RNGs derive from (seed, epoch, index): call per epoch for fresh clips."""
        self.epoch = epoch

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        index = int(index)
        if not 0 <= index < len(self.records):
            raise IndexError(f"index {index} out of range for {len(self.records)} records")
        rng = np.random.default_rng([self.seed, epoch, index])
        candidate = index
        for _ in range(_MAX_REPLACEMENTS + 1):
            video = self._try(candidate, rng)
            if video is not None:
                record = self.records[candidate]
                self._check_fraction()
                return {
                    "video": torch.from_numpy(video),
                    "labels": dict(record.labels),
                    "caption": record.caption,
                    "index": candidate,
                    "path": record.path,
                }
            self._check_fraction()
            # Deterministic replacement: drawn from this item's RNG, never the failed record itself.
            candidate = int(
                (candidate + 1 + rng.integers(0, max(len(self.records) - 1, 1))) % len(self.records)
            )
        raise DataError(
            f"item {index}: {_MAX_REPLACEMENTS} replacement videos failed too; {self._examples()}"
        )

    def _try(self, index: int, rng: np.random.Generator) -> np.ndarray | None:
        record = self.records[index]
        try:
            video = self._load(record.path, rng)
        except (VideoDecodeError, av.error.FFmpegError, OSError) as e:
            self._reasons[index] = e.reason if isinstance(e, VideoDecodeError) else str(e)
            if int(self._status[index]) != _FAILED:  # first failure in any process: log it once
                self._status[index] = _FAILED
                # "skipped", not "replaced": a training item takes another video in its place, but an export
                # (vidfm embed) leaves the item out; the message must be true for both.
                log.warning("unreadable video, skipped: %s (%s)", record.path, self._reasons[index])
            return None
        if int(self._status[index]) == _UNTRIED:
            self._status[index] = _OK
        return video

    def _load(self, path: str, rng: np.random.Generator) -> np.ndarray:
        with VideoReader(path, short_side=self.short_side, threads=decode_threads()) as reader:
            n = reader.info.num_frames
            if self.train:
                clips = [self.sampling.indices(n, rng) for _ in range(self.views)]
            elif self.views == 1:
                clips = [self.sampling.indices(n, None)]
            else:
                clips = self.sampling.views(n, self.views)
            frames = reader.read(np.concatenate(clips))  # one pass for all views: [V*T, H, W, C]
        if self.crop_square:
            frames = _centre_square(frames, self.short_side)
        frames = np.ascontiguousarray(frames)
        t = self.sampling.num_frames
        return frames.reshape(self.views, t, *frames.shape[1:]) if self.views > 1 else frames

    # -------------------------------------------------------------- failures
    def failure_counts(self) -> tuple[int, int]:
        """(failed, tried) distinct files so far, over every process using this dataset."""
        status = self._status.numpy()
        return int((status == _FAILED).sum()), int((status != _UNTRIED).sum())

    def failed_paths(self) -> list[str]:
        return [self.records[i].path for i in np.flatnonzero(self._status.numpy() == _FAILED)]

    def _examples(self, k: int = 5) -> str:
        failed = np.flatnonzero(self._status.numpy() == _FAILED)
        shown = [
            self.records[i].path + (f" ({self._reasons[i]})" if i in self._reasons else "")
            for i in failed[:k]
        ]
        return "; ".join(shown) + (f" and {len(failed) - k} more" if len(failed) > k else "")

    def _check_fraction(self) -> None:
        failed, tried = self.failure_counts()
        if failed and tried >= self.min_seen and failed / tried > self.max_failure_fraction:
            raise DataError(
                f"{failed} of {tried} videos tried failed to decode, above max_failure_fraction="
                f"{self.max_failure_fraction}: {self._examples()}"
            )

    def summary(self) -> str:
        """Log and return ``"N of M files failed: ..."`` (distinct files tried so far, all processes)."""
        failed, tried = self.failure_counts()
        text = f"{failed} of {tried} files failed" + (f": {self._examples(10)}" if failed else "")
        (log.warning if failed else log.info)(text)
        return text


def _centre_square(frames: np.ndarray, side: int | None) -> np.ndarray:
    """Centre crop ``[..., H, W, C]`` to ``side`` x ``side`` (the short side when ``side`` is None)."""
    h, w = frames.shape[-3:-1]
    side = min(h, w) if side is None else min(side, h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return frames[..., top : top + side, left : left + side, :]


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch items: ``video`` uint8 [B,T,H,W,C] (or [B,V,T,H,W,C]), ``labels`` {col: int64 [B]},
    ``caption`` list, ``index`` int64 [B], ``path`` list."""
    if not items:
        raise ValueError("collate needs at least one item")
    shapes = {tuple(it["video"].shape) for it in items}
    if len(shapes) > 1:
        raise ValueError(f"clips of different shapes in one batch: {sorted(shapes)} (use crop_square)")
    return {
        # torch's default_collate stacks straight into shared memory in a worker, so handing the batch to
        # the main process is no second copy of the clips.
        "video": default_collate([it["video"] for it in items]),
        "labels": {
            c: torch.tensor([it["labels"][c] for it in items], dtype=torch.int64) for c in items[0]["labels"]
        },
        "caption": [it["caption"] for it in items],
        "index": torch.tensor([it["index"] for it in items], dtype=torch.int64),
        "path": [it["path"] for it in items],
    }


class EpochKeySampler(Sampler):
    """Yields ``(epoch, index)`` keys, so each item knows its epoch even in persistent workers (whose
    dataset copies never see a ``set_epoch`` from the main process). Shuffled order is a permutation seeded
    by ``(seed, epoch)``. The epoch advances by itself after each full pass unless set with ``set_epoch``."""

    def __init__(self, size: int, shuffle: bool, seed: int) -> None:
        """Args: size: dataset length. shuffle: permute each epoch. seed: permutation seed."""
        self.size, self.shuffle, self.seed, self.epoch = size, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        epoch = self.epoch
        order = (
            np.random.default_rng([self.seed, epoch]).permutation(self.size)
            if self.shuffle
            else range(self.size)
        )
        for i in order:
            yield epoch, int(i)
        self.epoch = epoch + 1

    def __len__(self) -> int:
        return self.size


_decode_threads = 0  # this process's decoder and resize threads; 0 = FFmpeg's choice (one per core)


def decode_threads() -> int:
    """Decoder and swscale threads for a video opened in this process: 0 (FFmpeg's choice) in the main
    process, the worker's share of the cores in a DataLoader worker started with :func:`init_worker`."""
    if get_worker_info() is None:
        return 0
    return _decode_threads or 1


def init_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seeds numpy's and Python's global RNGs from torch's worker seed and
    gives the worker ``cores // workers`` decode threads (at least 1), so W workers use the cores once."""
    global _decode_threads
    info = get_worker_info()
    _decode_threads = max(1, len(os.sched_getaffinity(0)) // max(info.num_workers if info else 1, 1))
    # torch seeds each worker with base_seed + worker_id (base_seed from the loader's generator); numpy's
    # global RNG is not, so derive it for any library code that uses it.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    import random

    random.seed(seed)


def build_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool = False,
    workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader with :func:`collate`, ``(epoch, index)`` keys (:class:`EpochKeySampler`: call
    ``loader.sampler.set_epoch(e)`` to pin an epoch), seeded workers, persistent workers when
    ``workers > 0`` and pinned memory on CUDA."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=EpochKeySampler(len(dataset), shuffle, seed),  # type: ignore[arg-type]
        num_workers=workers,
        collate_fn=collate,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        persistent_workers=workers > 0,
        worker_init_fn=init_worker,
        generator=torch.Generator().manual_seed(seed),
    )
