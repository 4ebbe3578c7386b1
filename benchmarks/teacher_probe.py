"""How much a frozen image teacher knows: linear probes on its own per-frame features, pretrained vs random init.

For the EfficientNet-Lite0 teacher (ImageNet) at each (input size, stride), the clip feature is either the
feature map's mean over frames and positions (``pooled``) or each frame's mean, concatenated (``frames``: the
order of frames is kept, so motion is readable). Rows: the same network at random init, and the trivial
baseline (colour histogram + frame differences) on the same clips. Linear probe with C chosen on a held-out
fold of train; kNN is left out (it says little about what a distilled student can reach).

    python benchmarks/teacher_probe.py --manifest digits/manifest.csv --labels digit motion
    python benchmarks/teacher_probe.py --manifest ../shared/data/surv_fight/manifest.csv --labels label \\
        --short-side 128 --configs 128/16

Decoded clips are kept in ``--cache`` (one file per split), so further configs cost only the teacher.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from vidfm.data.config import DataConfig, build_dataset
from vidfm.eval.baselines import trivial_clip_features
from vidfm.eval.probes import linear_probe


def decode_split(manifest: str, split: str, frames: int, short_side: int, cache: Path) -> dict:
    """uint8 clips [N,T,S,S,3] and labels of one split (evenly spaced test clips), cached on disk."""
    path = cache / f"{Path(manifest).parent.name}-{split}-{frames}x{short_side}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    data = DataConfig(manifest=manifest, sampling="segment", num_frames=frames, short_side=short_side)
    ds = build_dataset(data, split=split, train=False)
    items = [ds[i] for i in range(len(ds))]
    out = {
        "video": torch.stack([it["video"] for it in items]),
        "labels": {k: torch.tensor([int(it["labels"][k]) for it in items]) for k in items[0]["labels"]},
    }
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(out, path)
    return out


@torch.no_grad()
def teacher_features(
    teacher: torch.nn.Module, video: torch.Tensor, batch: int = 32
) -> dict[str, torch.Tensor]:
    """uint8 [N,T,S,S,3] -> {pooled: [N,C], frames: [N,T·C]} from the teacher's feature map."""
    pooled, frames = [], []
    for v in video.split(batch):
        x = v.permute(0, 4, 1, 2, 3).float() / 255  # [B,3,T,S,S] in [0,1]
        out = teacher(x)
        t, h, w = out.grid
        per_frame = out.tokens.view(x.shape[0], t, h * w, -1).mean(2)  # [B,T,C]
        pooled.append(per_frame.mean(1))
        frames.append(per_frame.flatten(1))
    return {"pooled": torch.cat(pooled), "frames": torch.cat(frames)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", required=True)
    p.add_argument("--labels", nargs="+", default=["digit", "motion"])
    p.add_argument("--frames", type=int, default=4, help="frames per clip, one per segment")
    p.add_argument("--short-side", type=int, default=64, help="decode size (the student's input)")
    p.add_argument("--configs", nargs="+", default=["64/8", "128/16"], help="teacher SIZE/STRIDE")
    p.add_argument("--cache", default="runs/teacher_probe_clips")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from vidfm.teachers.efficientnet import efficientnet_teacher

    cache = Path(args.cache)
    splits = {
        s: decode_split(args.manifest, s, args.frames, args.short_side, cache) for s in ("train", "test")
    }
    print(
        f"{len(splits['train']['video'])} train / {len(splits['test']['video'])} test clips, {args.frames} frames"
    )
    print("| features | init | clip feature | " + " | ".join(args.labels) + " | teacher CPU s |")
    print("|---" * (4 + len(args.labels)) + "|")

    def row(name: str, init: str, kind: str, tr: torch.Tensor, te: torch.Tensor, cpu: str) -> None:
        accs = [
            linear_probe(
                tr.numpy(),
                splits["train"]["labels"][c].numpy(),
                te.numpy(),
                splits["test"]["labels"][c].numpy(),
            ).top1
            for c in args.labels
        ]
        print(
            f"| {name} | {init} | {kind} | " + " | ".join(f"{a:.3f}" for a in accs) + f" | {cpu} |",
            flush=True,
        )

    triv = {s: torch.stack([trivial_clip_features(v) for v in d["video"]]) for s, d in splits.items()}
    row("trivial baseline", "-", "histogram + frame differences", triv["train"], triv["test"], "-")
    for spec in args.configs:
        size, stride = (int(x) for x in spec.split("/"))
        for pretrained in (True, False):
            teacher = efficientnet_teacher(size, stride, pretrained=pretrained)
            start = time.process_time()
            feats = {s: teacher_features(teacher, d["video"]) for s, d in splits.items()}
            cpu = f"{time.process_time() - start:.0f}"
            init = "ImageNet" if pretrained else "random"
            for kind in ("pooled", "frames"):
                row(
                    f"EfficientNet-Lite0 {size} px / stride {stride}",
                    init,
                    kind,
                    feats["train"][kind],
                    feats["test"][kind],
                    cpu,
                )


if __name__ == "__main__":
    main()
