"""Does the loader keep the GPU fed? Loader clips/s against what the training step consumes.

1. Loader throughput, clips of ``--frames`` frames cropped to ``--size``², from the raw files
   (``VideoDataset``, random access into each video) and from streaming shards of the same clips
   re-encoded at ``--short-side`` (``ShardDataset``; written once by ``write_shards`` into a temp folder),
   for each ``--workers`` count; the first pass (worker start, page cache) is not timed.
2. The step: the vidfm VideoMAE step at ``--model`` size on these clips (its clips/s is the demand).
3. The trainer end to end on the shards: ``data_wait_frac`` (time waiting for the next batch over the
   step time, as logged by the trainer) after the first logged window.

    python benchmarks/data_path.py                                  # 2-core CPU: tiny model, 64 px
    python benchmarks/data_path.py --size 224 --short-side 256 --workers 4 8 14 --model B/16 \\
        --batch 32 --steps 60                                       # a GPU machine with 16 cores
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from common import device_name, print_table
from torch.utils.data import DataLoader, Dataset

from vidfm.data.datasets import VideoDataset, collate, read_manifest
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
    """Median clips/s over ``repeats`` passes after one untimed pass."""
    stream = isinstance(dataset, ShardDataset)
    if stream:
        dataset.plan(batch)
    loader = DataLoader(
        dataset,
        batch_size=batch,
        shuffle=not stream,
        collate_fn=collate,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=torch.cuda.is_available(),
        drop_last=True,
    )
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


def task_for(args: argparse.Namespace) -> VideoMAETask:
    tiny = args.model.startswith("T")
    enc = EncoderConfig(
        size=args.model, depth=2 if tiny else None, width=64 if tiny else None, heads=2 if tiny else None,
        tubelet=2, num_frames=args.frames, img_size=args.size,
    )  # fmt: skip
    dec = DecoderConfig(depth=1 if tiny else 4)
    return VideoMAETask(enc, dec, MaskConfig("tube", 0.9), AugmentConfig(size=args.size))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", default=str(DATA))
    p.add_argument("--clips", type=int, default=64, help="clips used (the first N train rows)")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--stride", type=int, default=2)
    p.add_argument("--size", type=int, default=64, help="training crop side")
    p.add_argument("--short-side", type=int, default=72, help="decode/shard short side")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--model", default="T/8", help="T/* = a 2-block 64-wide tiny model")
    p.add_argument("--steps", type=int, default=12, help="trainer steps for the data-wait measurement")
    p.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (1 on an oversubscribed machine)"
    )
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    records = read_manifest(args.manifest, split="train")[: args.clips]
    sampling = SamplingConfig(num_frames=args.frames, stride=args.stride)
    files = VideoDataset(records, sampling, short_side=args.short_side)
    with tempfile.TemporaryDirectory() as root:
        t0 = time.perf_counter()
        index = write_shards(
            records, root, max_bytes=64 << 20, short_side=args.short_side, workers=max(args.workers)
        )
        shard_s = time.perf_counter() - t0
        shards = ShardDataset(root, sampling, crop_square=True)
        rows = []
        for w in args.workers:
            rows.append(
                [
                    w,
                    loader_rate(files, args.batch, w, args.repeats),
                    loader_rate(shards, args.batch, w, args.repeats),
                ]
            )

        torch.manual_seed(0)
        cfg = TrainConfig(
            steps=args.steps, batch_size=args.batch, lr=1e-4, warmup_steps=0, log_every=max(args.steps // 3, 1),
            ckpt_every=0, workers=max(args.workers), progress=False, precision="auto",
        )  # fmt: skip
        with tempfile.TemporaryDirectory() as run:
            trainer = Trainer(task_for(args), cfg, run, ShardDataset(root, sampling), collate)
            trainer.fit()
        steady = trainer.history[1:] or trainer.history  # the first window includes worker start-up
        step_rate = statistics.median(r["clips_per_s"] for r in steady)
        wait = statistics.median(r["data_wait_frac"] for r in steady)

    print(
        f"device: {device_name(device)}; {len(records)} clips of {args.manifest}, {args.frames} frames at stride "
        f"{args.stride}, short side {args.short_side}, crop {args.size}², batch {args.batch}; shards: "
        f"{index['bytes'] / max(index['total'], 1) / 1024:.0f} KiB/clip, written at {index['total'] / shard_s:.1f} clips/s"
    )
    print_table(
        [
            "workers",
            "files: clips/s",
            "shards: clips/s",
            f"step demand ({args.model}) clips/s",
            "shards / demand",
        ],
        [r + [step_rate, r[2] / step_rate] for r in rows],
    )
    print(
        f"\ntrainer on shards, {max(args.workers)} workers, {args.model}: {step_rate:.1f} clips/s, data wait "
        f"{100 * wait:.1f}% of step time (median of the logged windows after the first)"
    )


if __name__ == "__main__":
    main()
