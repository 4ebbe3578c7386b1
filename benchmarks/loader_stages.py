"""Where does a clip's loading time go, and which stage stops the loader from scaling with its workers?

1. Per-stage cost in one process (wall and CPU ms per clip, median over the clips; CPU time counts every
   thread of the process, so it shows what a stage costs a machine whose cores are all busy): open + packet scan, decode to the
   needed frames, RGB conversion + resize (swscale with 1 thread and with PyAV's default, one per CPU),
   centre crop, collate, the worker-to-main hand-off (a batch through shared memory, as DataLoader does),
   and on CUDA pinning and the host-to-device copy. Stages marked "main" run in the training process for
   every batch, whatever the worker count: they are the serial part.
2. Throughput (clips/s) per worker count: a plain PyAV process pool (no vidfm: open, decode, resize with one
   swscale thread) as the ceiling, vidfm's loader as it was (PyAV's default resize threads in each worker)
   and as it is (the worker's share of the cores, ``init_worker``).

    OMP_NUM_THREADS=1 python benchmarks/loader_stages.py                       # 2-core CPU
    python benchmarks/loader_stages.py --short-side 256 --workers 1 4 8 14     # 16-core GPU machine
"""

from __future__ import annotations

import argparse
import functools
import io
import multiprocessing as mp
import statistics
import time
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

import av
import numpy as np
import torch
from common import print_table
from torch.utils.data import DataLoader

import vidfm.data.datasets as datasets
from vidfm.data.datasets import VideoDataset, _centre_square, collate, read_manifest
from vidfm.data.decode import VideoReader
from vidfm.data.sampling import SamplingConfig

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "surv_fight" / "manifest.csv"


_CPU: dict[str, list[float]] = {}  # stage -> CPU ms (every thread of this process), beside the wall ms


def _ms(fn, *a) -> tuple[float, object]:
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*a)
    _ms.cpu = 1e3 * (time.process_time() - c0)  # type: ignore[attr-defined]
    return 1e3 * (time.perf_counter() - t0), out


def _rgb(frames: list, w: int, h: int, threads: int) -> np.ndarray:
    return np.stack([f.to_ndarray(format="rgb24", width=w, height=h, threads=threads) for f in frames])


def _crop(rgb: np.ndarray, side: int) -> np.ndarray:
    return np.ascontiguousarray(_centre_square(rgb, side))


def stage_costs(paths: list[str], sampling: SamplingConfig, side: int, batch: int) -> list[list]:
    """Median ms per clip of each stage, in this process."""
    cost: dict[str, list[float]] = {}
    clips = []
    rng = np.random.default_rng(0)
    for path in paths:
        t, reader = _ms(VideoReader, path, side, 1)
        _add(cost, "open + packet scan", t)
        idx = sampling.indices(reader.info.num_frames, rng)
        t, frames = _ms(reader.gather, idx, lambda f: f, list)
        _add(cost, "decode", t)
        w, h = reader._output_size()
        for name, threads in (
            ("RGB + resize, 1 swscale thread", 1),
            ("RGB + resize, PyAV default threads", 0),
        ):
            t, rgb = _ms(_rgb, frames, w, h, threads)
            _add(cost, name, t)
        reader.close()
        t, clip = _ms(_crop, rgb, side)
        _add(cost, "centre crop", t)
        clips.append(
            {"video": torch.from_numpy(clip), "labels": {}, "caption": None, "index": 0, "path": path}
        )
    items = clips[:batch]
    t, b = _ms(collate, items)
    _add(cost, "collate (per clip)", t, len(items))

    def handoff() -> (
        None
    ):  # what a worker's queue does: tensors to shared memory, rebuilt in the main process
        buf = io.BytesIO()
        ForkingPickler(buf).dump(b)
        ForkingPickler.loads(buf.getvalue())

    t, _ = _ms(handoff)
    _add(cost, "worker -> main hand-off (per clip)", t, len(items))
    if torch.cuda.is_available():
        t, pinned = _ms(lambda: b["video"].pin_memory())
        _add(cost, "pin memory (per clip), main", t, len(items))
        torch.cuda.synchronize()
        t, _ = _ms(lambda: (pinned.to("cuda", non_blocking=True), torch.cuda.synchronize()))
        _add(cost, "host -> device copy (per clip), main", t, len(items))
    where = {"worker -> main hand-off (per clip)": "worker + main"}
    return [
        [
            k,
            statistics.median(v),
            statistics.median(_CPU[k]),
            where.get(k, "main" if "main" in k else "worker"),
        ]
        for k, v in cost.items()
    ]


def _add(cost: dict[str, list[float]], stage: str, wall_ms: float, per: int = 1) -> None:
    cost.setdefault(stage, []).append(wall_ms / per)
    _CPU.setdefault(stage, []).append(_ms.cpu / per)  # type: ignore[attr-defined]


def _plain(job: tuple[str, np.ndarray, int]) -> int:
    """The ceiling: PyAV alone, decode from the start to the last index, resize the wanted frames."""
    path, idx, side = job
    want = set(int(i) for i in idx)
    with av.open(path) as c:
        s = c.streams.video[0]
        s.thread_count = 1
        for i, f in enumerate(c.decode(s)):
            if i in want:
                scale = side / min(f.width, f.height)
                f.to_ndarray(
                    format="rgb24", width=round(f.width * scale), height=round(f.height * scale), threads=1
                )
            if i >= max(want):
                break
    return 1


def plain_rate(paths: list[str], sampling: SamplingConfig, side: int, workers: int) -> float:
    rng = np.random.default_rng(0)
    jobs = []
    for p in paths:
        with VideoReader(p) as r:
            jobs.append((p, sampling.indices(r.info.num_frames, rng), side))
    with mp.get_context("spawn").Pool(workers) as pool:
        pool.map(_plain, jobs[: workers * 2])  # warm up the processes
        rates = []
        for _ in range(3):
            t0 = time.perf_counter()
            rates.append(sum(pool.map(_plain, jobs)) / (time.perf_counter() - t0))
    return statistics.median(rates)


def loader_rate(dataset: VideoDataset, batch: int, workers: int, init) -> float:
    loader = DataLoader(dataset, batch, shuffle=True, num_workers=workers, collate_fn=collate,
                        worker_init_fn=init, persistent_workers=True, prefetch_factor=4, drop_last=True)  # fmt: skip
    for _ in loader:  # worker start-up and page cache, untimed
        pass
    rates = []
    for _ in range(3):  # median of three passes: a shared machine's other jobs come and go
        t0, n = time.perf_counter(), 0
        for b in loader:
            n += len(b["index"])
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def _old_init(worker_id: int) -> None:
    """The loader as it was: PyAV's default swscale threads (one per CPU) in every worker."""
    datasets.VideoReader = functools.partial(VideoReader, resize_threads=0)  # type: ignore[misc]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", default=str(DATA))
    p.add_argument("--clips", type=int, default=32)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--stride", type=int, default=2)
    p.add_argument("--short-side", type=int, default=112)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = p.parse_args()
    records = read_manifest(args.manifest, split="train")[: args.clips]
    paths = [r.path for r in records]
    sampling = SamplingConfig(num_frames=args.frames, stride=args.stride)
    print(f"{len(paths)} clips of {args.manifest}, {args.frames} frames at stride {args.stride}, "
          f"short side {args.short_side}, {len(__import__('os').sched_getaffinity(0))} cores")  # fmt: skip
    print_table(
        ["stage", "wall ms per clip", "CPU ms per clip", "runs in"],
        stage_costs(paths, sampling, args.short_side, args.batch),
    )
    ds = VideoDataset(records, sampling, short_side=args.short_side)
    rows = []
    for w in args.workers:
        ceiling = plain_rate(paths, sampling, args.short_side, w)
        before = loader_rate(ds, args.batch, w, _old_init)
        after = loader_rate(ds, args.batch, w, datasets.init_worker)
        rows.append([w, ceiling, before, after, after / ceiling])
    print()
    print_table(["workers", "plain PyAV pool clips/s", "loader before", "loader now", "now / ceiling"], rows)


if __name__ == "__main__":
    main()
