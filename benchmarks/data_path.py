"""Does the loader keep the step fed? Every data path against the plain-PyAV ceiling and the step's demand.

1. Loader throughput (clips of ``--frames`` frames at ``--stride``, ``--short-side``² after a centre crop),
   per ``--workers`` count, all measured in this run: a plain PyAV process pool (no vidfm; open, decode,
   resize with one swscale thread: the ceiling), the raw files (``VideoDataset``), streaming shards re-encoded
   at ``--short-side`` (``ShardDataset``), the decoded-clip store read by workers (``ClipStoreDataset``) and the
   resident store (the whole store on the device, one gather per batch: no workers, so one figure).
2. The trainer end to end on each path at the largest worker count, with ``--model``'s VideoMAE step:
   clips/s and ``data_wait_frac`` as the trainer logs them (median of the windows after the first). The
   step's demand is the same trainer's rate with the waiting taken out, clips/s / (1 - data wait), on
   the resident store (where the wait is smallest): the measured training step, not a separate model.
3. ``videomae:tiny`` itself (the recipe, unchanged but for batch, steps and workers) end to end from the
   raw files (how it ran before the store) and from the resident store, in this run: their ratio.

    OMP_NUM_THREADS=1 python benchmarks/data_path.py             # 2-core CPU: tiny model, 64 px
    python benchmarks/data_path.py --size 224 --short-side 224 --workers 4 8 14 --model B/16 \\
        --batch 32 --steps 40 --tiny-batch 64 256 1024 --tiny-steps 16   # a GPU machine, 16 cores
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import device_name, print_table, sync
from loader_stages import plain_rate
from torch.utils.data import DataLoader, Dataset

import vidfm.data.datasets as datasets
from vidfm.data.clip_store import ClipStoreDataset, write_clip_store
from vidfm.data.datasets import VideoDataset, collate, init_worker, read_manifest
from vidfm.data.sampling import SamplingConfig
from vidfm.data.shards import ShardDataset, write_shards
from vidfm.data.transforms import AugmentConfig
from vidfm.masking import MaskConfig
from vidfm.models.decoder import DecoderConfig
from vidfm.models.encoder import EncoderConfig
from vidfm.tasks.videomae import VideoMAETask
from vidfm.train.trainer import TrainConfig, Trainer

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "surv_fight" / "manifest.csv"


def loader_rate(dataset: Dataset, batch: int, workers: int, repeats: int) -> float:
    """Median clips/s over ``repeats`` passes after one untimed pass (worker start, page cache)."""
    stream = isinstance(dataset, ShardDataset)
    if stream:
        dataset.plan(batch)
    loader = DataLoader(
        dataset, batch_size=batch, shuffle=not stream, collate_fn=collate, num_workers=workers,
        persistent_workers=workers > 0, pin_memory=torch.cuda.is_available(), drop_last=True,
        worker_init_fn=init_worker, prefetch_factor=4 if workers else None,
    )  # fmt: skip
    rates = []
    for epoch in range(repeats + 1):
        if stream:
            dataset.set_epoch(epoch)
        start, n = time.perf_counter(), 0
        for b in loader:
            n += b["video"].shape[0]
        if epoch:
            rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def resident_rate(store: ClipStoreDataset, batch: int, device: torch.device, repeats: int) -> float:
    """Clips/s of gathering batches from a resident store (synchronised: the gather is really done)."""
    store.to_device(device)
    keys = [(0, i) for i in range(len(store))]
    rates = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        for i in range(0, len(keys) - batch + 1, batch):
            store.batch(keys[i : i + batch])
        sync(device)
        rates.append((len(keys) // batch) * batch / (time.perf_counter() - start))
    return statistics.median(rates[1:])


def task_for(args: argparse.Namespace) -> VideoMAETask:
    tiny = args.model.startswith("T")
    enc = EncoderConfig(
        size=args.model, depth=2 if tiny else None, width=64 if tiny else None, heads=2 if tiny else None,
        tubelet=2, num_frames=args.frames, img_size=args.size,
    )  # fmt: skip
    dec = DecoderConfig(depth=1 if tiny else 4)
    return VideoMAETask(enc, dec, MaskConfig("tube", 0.9), AugmentConfig(size=args.size))


def trainer_rate(task: torch.nn.Module, dataset: Dataset, args: argparse.Namespace, workers: int) -> tuple:
    """(clips/s, data-wait fraction) of the trainer, median of the logged windows after the first."""
    cfg = TrainConfig(
        steps=args.steps, batch_size=args.batch, lr=1e-4, warmup_steps=0, log_every=max(args.steps // 4, 1),
        ckpt_every=0, workers=workers, progress=False, precision="auto",
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as run:
        trainer = Trainer(task, cfg, run, dataset, collate)
        trainer.fit()
    steady = trainer.history[1:] or trainer.history
    return (
        statistics.median(r["clips_per_s"] for r in steady),
        statistics.median(r["data_wait_frac"] for r in steady),
    )


def recipe_rate(manifest: str, store: str, args: argparse.Namespace, batch: int, resident: bool) -> tuple:
    """``videomae:tiny`` (clips/s, data wait) end to end, median window after the first, from the raw files
    with ``max(--workers)`` workers as before this change (PyAV's default resize threads in every worker)
    or from the resident store."""
    from vidfm.recipes import get_recipe
    from vidfm.train.pretrain import pretrain

    cfg = get_recipe("videomae:tiny")
    data = dataclasses.replace(
        cfg.data, manifest=manifest, clip_store=store if resident else "", resident=resident
    )
    train = dataclasses.replace(
        cfg.train, steps=args.tiny_steps or args.steps, batch_size=batch, workers=max(args.workers), progress=False,
        ckpt_every=0, log_every=max(args.steps // 4, 1), warmup_steps=0,
    )  # fmt: skip
    records: list[dict] = []
    reader = datasets.VideoReader
    if not resident:  # the path before the store: PyAV's default resize threads (forked workers inherit it)
        datasets.VideoReader = functools.partial(reader, resize_threads=0)  # type: ignore[misc]
    try:
        with tempfile.TemporaryDirectory() as run:
            pretrain(dataclasses.replace(cfg, data=data, train=train), run, on_log=records.append)
    finally:
        datasets.VideoReader = reader  # type: ignore[misc]
    steady = records[1:] or records
    return (
        statistics.median(r["clips_per_s"] for r in steady),
        statistics.median(r["data_wait_frac"] for r in steady),
    )


def repeated_manifest(src: str, out: str, repeat: int) -> str:
    """``src`` with every row ``repeat`` times (absolute paths): more records than videos, so a batch of
    1024 fits a small set; the store decodes each distinct video once."""
    with open(src, newline="") as f:
        rows = list(csv.DictReader(f))
    root = Path(src).resolve().parent
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        for r in rows * repeat:
            w.writerow({**r, "path": str(root / r["path"])})
    return out


def tiny_rows(args: argparse.Namespace, root: str) -> list[list]:
    """Per ``--tiny-batch``: videomae:tiny from the raw files, from the resident store, their ratio, the
    step alone (resident clips/s without its data wait) and the resident run against it."""
    manifest = repeated_manifest(
        args.tiny_manifest or args.manifest, os.path.join(root, "tiny.csv"), args.tiny_repeat
    )
    store = os.path.join(root, "tiny-store")
    sampling = SamplingConfig(num_frames=16, stride=1)  # videomae:tiny's data section (64 px, 16 frames)
    write_clip_store(
        read_manifest(manifest), store, sampling, 64, clips_per_video=4, workers=max(args.workers)
    )
    rows = []
    for batch in args.tiny_batch:
        files, files_wait = recipe_rate(manifest, store, args, batch, resident=False)
        resident, wait = recipe_rate(manifest, store, args, batch, resident=True)
        alone = resident / max(1 - wait, 1e-9)
        rows.append([batch, files, f"{100 * files_wait:.0f}%", resident, f"{100 * wait:.1f}%", resident / files,
                     alone, resident / alone])  # fmt: skip
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", default=str(DATA))
    p.add_argument("--clips", type=int, default=32, help="clips used (the first N train rows)")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--stride", type=int, default=2)
    p.add_argument("--size", type=int, default=64, help="training crop side")
    p.add_argument("--short-side", type=int, default=64, help="decode / shard / store side")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--model", default="T/8", help="T/* = a 2-block 64-wide tiny model")
    p.add_argument("--steps", type=int, default=12, help="trainer steps per end-to-end row")
    p.add_argument(
        "--tiny-batch", type=int, nargs="+", default=[16], help="batches of the videomae:tiny rows"
    )
    p.add_argument(
        "--tiny-manifest", default=None, help="data of the videomae:tiny rows (default --manifest)"
    )
    p.add_argument("--tiny-steps", type=int, default=None, help="steps of those rows (default --steps)")
    p.add_argument("--tiny-repeat", type=int, default=1, help="repeat its rows (records) this many times")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    records = read_manifest(args.manifest, split="train")[: args.clips]
    sampling = SamplingConfig(num_frames=args.frames, stride=args.stride)
    w_max = max(args.workers)
    with tempfile.TemporaryDirectory() as root:
        shard_dir, store_dir, tiny_dir = (os.path.join(root, n) for n in ("shards", "store", "tiny"))
        write_shards(records, shard_dir, max_bytes=64 << 20, short_side=args.short_side, workers=w_max)
        write_clip_store(records, store_dir, sampling, args.short_side, clips_per_video=4, workers=w_max)
        files = VideoDataset(records, sampling, short_side=args.short_side)
        shards = ShardDataset(shard_dir, sampling, crop_square=True)
        store = ClipStoreDataset(store_dir, split=None)
        resident = ClipStoreDataset(store_dir, split=None, resident=True)
        gather = resident_rate(resident, args.batch, device, args.repeats)
        rows = []
        for w in args.workers:
            ceiling = plain_rate([r.path for r in records], sampling, args.short_side, w)
            f, s, c = (loader_rate(d, args.batch, w, args.repeats) for d in (files, shards, store))
            rows.append([w, ceiling, f, s, c, gather, f / ceiling])

        torch.manual_seed(0)
        paths = {"raw files": files, "shards": shards, "clip store": store, "resident store": resident}
        e2e = {name: trainer_rate(task_for(args), ds, args, w_max) for name, ds in paths.items()}
        demand = e2e["resident store"][0] / max(1 - e2e["resident store"][1], 1e-9)

        tiny = tiny_rows(args, root)

    print(
        f"device: {device_name(device)}; {os.cpu_count()} CPUs; {len(records)} clips of {args.manifest}, "
        f"{args.frames} frames at stride {args.stride}, short side {args.short_side}, crop {args.size}², "
        f"batch {args.batch}\n"
    )
    print_table(
        ["workers", "plain PyAV pool (ceiling)", "raw files", "shards", "clip store", "resident store",
         "raw files / ceiling"],
        rows,
    )  # fmt: skip
    print(f"\ntrainer, {args.model} VideoMAE step, batch {args.batch}, {w_max} workers (resident: none)")
    print_table(
        ["data path", "clips/s", "data wait", "/ step demand"],
        [[k, r, f"{100 * w:.1f}%", r / demand] for k, (r, w) in e2e.items()]
        + [["step demand (the step without waiting)", demand, "-", 1.0]],
    )
    print(
        f"\nvideomae:tiny end to end ({args.tiny_steps or args.steps} steps; raw files with {w_max} workers)"
    )
    print_table(
        ["batch", "raw files clips/s", "wait", "resident store clips/s", "wait", "resident / raw files",
         "step alone clips/s", "resident / step alone"],
        tiny,
    )  # fmt: skip


if __name__ == "__main__":
    main()
