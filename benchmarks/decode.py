"""Decoding throughput: ``VideoDataset`` + DataLoader against a naive PyAV loader, clips per second.

Both loaders read the same clips of ``../shared/data/surv_fight`` (train split; 16 frames at stride 4 from
the same per-item random start; short side 112, centre square crop) with 0 (main process), 1 and 2
DataLoader workers. The naive loader decodes every frame from the start of the file, converts each to RGB,
then picks the clip's frames and resizes them with torch (bilinear, antialiased). After a warm-up epoch
(page cache, worker start), each configuration is timed over ``--repeats`` epochs; the table reports the
median, with the ratio against the naive loader at the same worker count.

    python benchmarks/decode.py                      # 100 clips, 3 repeats (~2 min on 2 CPU cores)
    python benchmarks/decode.py --clips 209 --workers 0 1 2 4
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from vidfm.data.datasets import VideoDataset, build_loader, read_manifest
from vidfm.data.sampling import SamplingConfig

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "surv_fight"


class NaiveClips(Dataset):
    """The usual first loader: decode everything, keep some frames, resize in torch."""

    def __init__(self, dataset: VideoDataset) -> None:
        """Args: dataset: the VideoDataset whose records, sampling, size and seed are copied."""
        self.ref = dataset

    def __len__(self) -> int:
        return len(self.ref)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        rng = np.random.default_rng([self.ref.seed, epoch, index])  # the same clip VideoDataset picks
        with av.open(self.ref.records[index].path) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        idx = self.ref.sampling.indices(len(frames), rng)
        clip = torch.from_numpy(np.stack([frames[i] for i in idx])).permute(0, 3, 1, 2).float()  # [T,C,H,W]
        side = self.ref.short_side
        h, w = clip.shape[-2:]
        size = (side, round(w * side / h)) if h <= w else (round(h * side / w), side)
        clip = F.interpolate(clip, size=size, mode="bilinear", antialias=True, align_corners=False)
        top, left = (size[0] - side) // 2, (size[1] - side) // 2
        clip = clip[..., top : top + side, left : left + side].round().clamp(0, 255).to(torch.uint8)
        record = self.ref.records[index]
        return {
            "video": clip.permute(0, 2, 3, 1).contiguous(),
            "labels": dict(record.labels),
            "caption": None,
            "index": index,
            "path": record.path,
        }


def clips_per_second(dataset: Dataset, workers: int, batch_size: int, repeats: int) -> float:
    loader = build_loader(dataset, batch_size=batch_size, shuffle=True, workers=workers, seed=0)
    for _ in loader:  # warm-up: page cache, worker start-up
        pass
    rates = []
    for _ in range(repeats):
        start, n = time.perf_counter(), 0
        for batch in loader:
            n += batch["video"].shape[0]
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(DATA), help="surv_fight folder (manifest.csv)")
    parser.add_argument("--clips", type=int, default=100, help="clips of the train split per epoch")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per configuration")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    records = read_manifest(Path(args.data) / "manifest.csv", split="train", label_columns=["label"])
    ours = VideoDataset(records[: args.clips], SamplingConfig("dense", 16, 4), short_side=112, seed=0)
    naive = NaiveClips(ours)
    print(
        f"surv_fight train, {len(ours)} clips, 16 frames stride 4, short side 112, batch {args.batch_size}, "
        f"median of {args.repeats} epochs, torch threads {torch.get_num_threads()}\n"
    )
    print("| workers | VideoDataset clips/s | naive clips/s | speed-up |")
    print("|---|---|---|---|")
    for w in args.workers:
        a = clips_per_second(ours, w, args.batch_size, args.repeats)
        b = clips_per_second(naive, w, args.batch_size, args.repeats)
        print(f"| {w} | {a:.1f} | {b:.1f} | {a / b:.2f}x |", flush=True)
    print(f"\n{ours.summary()}")


if __name__ == "__main__":
    main()
