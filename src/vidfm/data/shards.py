"""Streaming shards: webdataset-style tar files of pre-resized clips, and the dataset that streams them.

Writing (:func:`write_shards`, ``vidfm data shard``). Each clip of a manifest is decoded once, resized so
its short side has ``short_side`` pixels and re-encoded as H.264 (still a video, not frames: a 10 s clip
stays ~10x smaller than its frames as JPEGs). A shard ``shard-000000.tar`` holds, per clip, ``KEY.mp4`` and
``KEY.json`` (labels, caption, split, source path, frames, fps), KEY being the clip's 9-digit position.
Shards close once the next clip would pass ``max_bytes``. Clips are shuffled (``seed``) before writing,
so every shard is a random sample of the set. ``index.json`` lists the shards, their clip counts, the
class names and the clips that failed (reported and skipped, never fatal). Every file is written
atomically; a rerun rewrites the set.

Reading (:class:`ShardDataset`). An epoch's stream is the shards in an order permuted by
``(seed, epoch)``, each shard's clips in an order permuted by ``(seed, epoch, shard)``. Rank ``r`` of
``R`` takes the ``r``-th contiguous ``1/R`` of that stream (so mostly its own shards), cut into batches;
DataLoader worker ``w`` of ``W`` produces the rank's batches ``start + w, start + w + W, ...``, which the
DataLoader's round-robin returns in order. The position is therefore just ``(epoch, batch)``: resuming
skips whole batches without reading them, and the order does not depend on the number of workers.
Every rank gets the same number of batches (the last ``< R·B`` clips of an epoch are dropped).
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from vidfm.data.datasets import DataError, VideoRecord, _centre_square, decode_threads
from vidfm.data.decode import VideoDecodeError, VideoReader
from vidfm.data.sampling import SamplingConfig
from vidfm.io import atomic_write, atomic_write_text
from vidfm.utils import log, make_generator

INDEX_FILE = "index.json"
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)
_CHUNK = 32  # frames decoded per read while re-encoding: memory stays bounded for long videos
# Decoding reads a file path; clips from a shard go through RAM-backed files where there are some.
_TMP_DIR = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


def parse_size(text: str) -> int:
    """``"1GB"``, ``"512MB"``, ``"1.5G"``, ``"2000000"`` -> bytes (powers of 1024)."""
    m = _SIZE_RE.match(str(text))
    if m is None:
        raise ValueError(f"cannot read size {text!r}; use e.g. 1GB, 512MB or a number of bytes")
    return int(float(m.group(1)) * 1024 ** "_KMGT".index(m.group(2).upper() or "_"))


# ----------------------------------------------------------------------------- writing
@dataclass
class EncodedClip:
    """One re-encoded clip: mp4 bytes and what its json member records."""

    data: bytes
    frames: int
    fps: float
    width: int
    height: int


def reencode(
    path: str | Path, short_side: int, crf: int = 23, preset: str = "fast", threads: int = 1
) -> EncodedClip:
    """Decode ``path`` (upright, short side resized to ``short_side``, even sides) and encode it again
    as H.264 yuv420p in MP4 at the source frame rate. Raises :class:`VideoDecodeError` if it cannot."""
    with VideoReader(path, short_side=short_side, threads=threads) as reader:
        n, fps = reader.info.num_frames, reader.info.fps or 25.0
        rate = Fraction(fps).limit_denominator(1001)
        buf = io.BytesIO()
        with av.open(buf, "w", format="mp4") as out:
            stream = None
            for start in range(0, n, _CHUNK):
                frames = reader.read(np.arange(start, min(start + _CHUNK, n)))  # [t,H,W,3]
                h, w = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2  # 4:2:0 needs even sides
                if stream is None:
                    stream = out.add_stream("libx264", rate=rate, options={"crf": str(crf), "preset": preset})
                    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
                    stream.codec_context.thread_count = threads
                for i, rgb in enumerate(frames[:, :h, :w]):
                    vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                    vf.pts, vf.time_base = start + i, 1 / rate
                    out.mux(stream.encode(vf))
            out.mux(stream.encode())
    return EncodedClip(buf.getvalue(), n, float(rate), w, h)


def _encode_job(job: tuple[int, VideoRecord, int, int, int]) -> tuple[int, EncodedClip | None, str]:
    index, record, short_side, crf, threads = job
    try:
        return index, reencode(record.path, short_side, crf, threads=threads), ""
    except (VideoDecodeError, av.error.FFmpegError, OSError, ValueError) as e:
        return index, None, e.reason if isinstance(e, VideoDecodeError) else f"{type(e).__name__}: {e}"


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644  # mtime 0: same input, same bytes
    tar.addfile(info, io.BytesIO(data))


class _ShardWriter:
    """Appends samples to ``shard-NNNNNN.tar`` files under ``out``, closing one at ``max_bytes``."""

    def __init__(self, out: Path, max_bytes: int) -> None:
        self.out, self.max_bytes = out, max_bytes
        self.shards: list[dict[str, Any]] = []
        self._buf: io.BytesIO | None = None
        self._tar: tarfile.TarFile | None = None
        self._count = 0

    def add(self, key: str, members: dict[str, bytes]) -> None:
        size = sum(512 + -(-len(d) // 512) * 512 for d in members.values())  # tar headers + padding
        if self._tar is not None and self._count and self._buf.tell() + size > self.max_bytes:
            self.close_shard()
        if self._tar is None:
            self._buf = io.BytesIO()
            self._tar = tarfile.open(fileobj=self._buf, mode="w", format=tarfile.USTAR_FORMAT)
            self._count = 0
        for ext, data in members.items():
            _add_member(self._tar, f"{key}.{ext}", data)
        self._count += 1

    def close_shard(self) -> None:
        if self._tar is None:
            return
        self._tar.close()
        name = f"shard-{len(self.shards):06d}.tar"
        data = self._buf.getvalue()
        atomic_write(self.out / name, lambda p: Path(p).write_bytes(data))
        self.shards.append({"name": name, "count": self._count, "bytes": len(data)})
        self._tar = self._buf = None


def write_shards(
    records: list[VideoRecord],
    out: str | Path,
    max_bytes: int = 1 << 30,
    short_side: int = 256,
    crf: int = 23,
    seed: int | None = 0,
    workers: int = 0,
    classes: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """Re-encode ``records`` into tar shards under ``out`` and write ``out/index.json``; returns the index.

    Args:
        records: clips to write (e.g. from :func:`vidfm.data.datasets.read_manifest`).
        out: output folder (created).
        max_bytes: shard size limit (a single larger clip still gets a shard of its own).
        short_side: short side of the stored clips in pixels (VideoMAE crops 224² from 256 px).
        crf: x264 constant rate factor (lower = better quality, larger files).
        seed: shuffle order before writing, None = manifest order.
        workers: re-encoding processes (0 = this process).
        classes: per label column, the class names (``records.classes`` when it has them).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be positive, got {max_bytes}")
    order = list(range(len(records)))
    if seed is not None:
        order = np.random.default_rng(seed).permutation(len(records)).tolist()
    # One encoder thread per process when several processes encode at once.
    jobs = [(i, records[i], short_side, crf, 1 if workers else 0) for i in order]
    writer, failed, t0 = _ShardWriter(out, max_bytes), [], time.perf_counter()
    if workers:
        import multiprocessing

        pool = multiprocessing.get_context("spawn").Pool(workers)
        results = pool.imap(_encode_job, jobs, chunksize=1)  # in order: the shards do not depend on timing
    else:
        pool, results = None, map(_encode_job, jobs)
    try:
        for index, clip, reason in results:
            record = records[index]
            if clip is None:
                log.warning("skipped unreadable video %s (%s)", record.path, reason)
                failed.append({"path": record.path, "reason": reason})
                continue
            meta = {
                "labels": record.labels,
                "caption": record.caption,
                "split": record.split,
                "source": record.path,
                "frames": clip.frames,
                "fps": clip.fps,
                "size": [clip.height, clip.width],
            }
            key = f"{index:09d}"
            writer.add(key, {"json": json.dumps(meta).encode(), "mp4": clip.data})
        writer.close_shard()
    finally:
        if pool is not None:
            pool.terminate()
    for stale in out.glob("shard-*.tar"):  # shards of an earlier, larger run of the same folder
        if stale.name not in {s["name"] for s in writer.shards}:
            stale.unlink()
    total = sum(s["count"] for s in writer.shards)
    index = {
        "version": 1,
        "total": total,
        "bytes": sum(s["bytes"] for s in writer.shards),
        "short_side": short_side,
        "crf": crf,
        "classes": dict(classes if classes is not None else getattr(records, "classes", {})),
        "shards": writer.shards,
        "failed": failed,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    atomic_write_text(out / INDEX_FILE, json.dumps(index, indent=1) + "\n")
    return index


# ----------------------------------------------------------------------------- reading
def read_index(root: str | Path) -> dict[str, Any]:
    """``index.json`` of a shard folder, checked."""
    path = Path(root) / INDEX_FILE
    if not path.is_file():
        raise DataError(f"{root} is not a shard folder (no {INDEX_FILE}; write one with `vidfm data shard`)")
    index = json.loads(path.read_text())
    missing = [s["name"] for s in index["shards"] if not (Path(root) / s["name"]).is_file()]
    if missing:
        raise DataError(f"{root}: shard files missing: {missing[:5]}")
    return index


class _TarMembers:
    """Byte ranges of each sample's members in one shard, found by reading the tar headers once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.samples: list[dict[str, tuple[int, int]]] = []
        keys: dict[str, int] = {}
        with tarfile.open(path, "r:") as tar:
            for m in tar:
                key, _, ext = m.name.partition(".")
                if key not in keys:
                    keys[key] = len(self.samples)
                    self.samples.append({})
                self.samples[keys[key]][ext] = (m.offset_data, m.size)
        self.keys = list(keys)
        self._file = None

    def read(self, j: int) -> tuple[str, dict[str, bytes]]:
        if self._file is None:
            self._file = open(self.path, "rb")
        out = {}
        for ext, (offset, size) in self.samples[j].items():
            self._file.seek(offset)
            out[ext] = self._file.read(size)
        return self.keys[j], out

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class ShardDataset(IterableDataset):
    """Clips streamed from a shard folder; items as :class:`vidfm.data.datasets.VideoDataset`'s
    (``video`` uint8 [T,H,W,C], ``labels``, ``caption``, ``index`` = the clip's key, ``path`` =
    ``shard#key``), so :func:`~vidfm.data.datasets.collate` batches them. See the module docstring for
    the order. Call :meth:`plan` once, then :meth:`set_epoch` before each iteration (the trainer does).
    """

    def __init__(
        self,
        root: str | Path,
        sampling: SamplingConfig,
        short_side: int | None = None,
        crop_square: bool = True,
        seed: int = 0,
        shuffle: bool = True,
        max_failure_fraction: float = 0.1,
        min_seen: int = 20,
    ) -> None:
        """Args:
        root: folder with ``index.json`` and the shards.
        sampling: frames per clip and how they are picked (random per (seed, epoch, clip)).
        short_side: resize on decode (None = as stored, already resized by the writer).
        crop_square: centre square crop, so a batch has equal sides.
        seed: order and frame-sampling seed.
        shuffle: permute shards and clips per epoch (False: stored order).
        max_failure_fraction, min_seen: as :class:`~vidfm.data.datasets.VideoDataset`.
        """
        self.root = Path(root)
        self.index = read_index(root)
        self.shards = [s["name"] for s in self.index["shards"]]
        self.counts = np.asarray([s["count"] for s in self.index["shards"]], dtype=np.int64)
        self.classes = dict(self.index.get("classes", {}))
        self.total = int(self.counts.sum())
        if self.total == 0:
            raise DataError(f"{root}: the shards hold no clips")
        self.sampling, self.short_side, self.crop_square = sampling, short_side, crop_square
        self.seed, self.shuffle = seed, shuffle
        self.max_failure_fraction, self.min_seen = max_failure_fraction, min(min_seen, self.total)
        self.batch_size, self.rank, self.world_size = 1, 0, 1
        # (epoch, start batch) in shared memory: persistent DataLoader workers read what the main
        # process set before each ``iter(loader)``; a plain attribute would stay at its pickled value.
        self._position = torch.zeros(2, dtype=torch.int64).share_memory_()
        self._offsets = np.concatenate([[0], np.cumsum(self.counts)])  # first clip number of each shard
        # Per clip: 0 untried, 1 decoded, 2 failed; shared, so every worker counts the same failures.
        self._status = torch.zeros(self.total, dtype=torch.uint8).share_memory_()
        self._members: dict[int, _TarMembers] = {}

    def plan(self, batch_size: int, rank: int = 0, world_size: int = 1) -> int:
        """Fix the per-rank batch and this process's rank; returns this rank's batches per epoch."""
        if batch_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad plan: batch_size {batch_size}, rank {rank} of {world_size}")
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        return self.batches_per_epoch

    @property
    def batches_per_epoch(self) -> int:
        return (self.total // self.world_size) // self.batch_size

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Where the next iteration starts: batch ``start_batch`` of epoch ``epoch``."""
        self._position[0], self._position[1] = epoch, start_batch

    def failure_counts(self) -> tuple[int, int]:
        """(failed, tried) distinct clips so far, over every process using this dataset."""
        status = self._status.numpy()
        return int((status == 2).sum()), int((status != 0).sum())

    def stream(self, epoch: int) -> np.ndarray:
        """The epoch's global order as ``[total, 2]`` rows of (shard, clip within shard)."""
        shard_order = np.arange(len(self.shards))
        if self.shuffle:
            shard_order = torch.randperm(len(self.shards), generator=make_generator(self.seed, epoch)).numpy()
        rows = []
        for s in shard_order:
            within = np.arange(self.counts[s])
            if self.shuffle:
                g = make_generator(self.seed, epoch, int(s))
                within = torch.randperm(int(self.counts[s]), generator=g).numpy()
            rows.append(np.stack([np.full_like(within, s), within], 1))
        return np.concatenate(rows)

    def __iter__(self):
        epoch, start = (int(v) for v in self._position)
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        b, per_rank = self.batch_size, self.batches_per_epoch * self.batch_size
        mine = self.stream(epoch)[self.rank * per_rank : (self.rank + 1) * per_rank]  # [per_rank, 2]
        try:
            for k in range(start + worker, self.batches_per_epoch, workers):
                for pos in range(k * b, (k + 1) * b):
                    yield self._item(epoch, mine, pos)
        finally:
            for m in self._members.values():
                m.close()

    def _item(self, epoch: int, mine: np.ndarray, pos: int) -> dict[str, Any]:
        # A clip that fails to decode is reported and replaced by the next one of the rank's stream.
        for attempt in range(len(mine)):
            shard, j = (int(v) for v in mine[(pos + attempt) % len(mine)])
            item = self._load(epoch, shard, j)
            if item is not None:
                return item
        raise DataError(f"{self.root}: no clip of this rank's part of the stream decodes")

    def _load(self, epoch: int, shard: int, j: int) -> dict[str, Any] | None:
        if shard not in self._members:
            self._members[shard] = _TarMembers(self.root / self.shards[shard])
        key, members = self._members[shard].read(j)
        meta = json.loads(members["json"])
        rng = np.random.default_rng([self.seed, epoch, int(key)])
        number = int(self._offsets[shard]) + j
        try:
            video = self._decode(members["mp4"], rng)
        except (VideoDecodeError, av.error.FFmpegError, OSError) as e:
            if int(self._status[number]) != 2:  # first failure in any process: log it once
                self._status[number] = 2
                log.warning("unreadable clip %s#%s, replaced: %s", self.shards[shard], key, e)
            failed, tried = self.failure_counts()
            if tried >= self.min_seen and failed / tried > self.max_failure_fraction:
                raise DataError(f"{failed} of {tried} clips from {self.root} failed to decode") from e
            return None
        if int(self._status[number]) == 0:
            self._status[number] = 1
        return {
            "video": torch.from_numpy(video),
            "labels": {k: int(v) for k, v in meta["labels"].items()},
            "caption": meta.get("caption"),
            "index": int(key),
            "path": f"{self.shards[shard]}#{key}",
        }

    def _decode(self, data: bytes, rng: np.random.Generator) -> np.ndarray:
        threads = decode_threads()
        with tempfile.NamedTemporaryFile(suffix=".mp4", dir=_TMP_DIR) as f:
            f.write(data)
            f.flush()
            with VideoReader(f.name, short_side=self.short_side, threads=threads) as reader:
                frames = reader.read(self.sampling.indices(reader.info.num_frames, rng))
        if self.crop_square:
            frames = _centre_square(frames, self.short_side)
        return np.ascontiguousarray(frames)
