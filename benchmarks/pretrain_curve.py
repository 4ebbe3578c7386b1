"""How long until VideoMAE pre-training pays? Probe accuracy against pre-training steps, per variant.

Each variant pre-trains the tiny VideoMAE on digits-motion, saving a checkpoint every ``--every`` steps; every
checkpoint (and step 0 = random init) is probed (linear, on ``digit`` and ``motion``) with mean and 2×2-grid
pooling. The trivial baseline (colour histogram + frame differences) is printed beside. Hours on a CPU are
fine for this script; it is not run by CI.

    python benchmarks/pretrain_curve.py --variants official lr1e-3 --steps 600 --every 200
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from vidfm.config import apply_overrides
from vidfm.data.digits import make_digits_motion
from vidfm.eval.frozen import probe_features, split_features
from vidfm.models.encoder import VideoEncoder
from vidfm.recipes.videomae import tiny
from vidfm.train.checkpoint import list_checkpoints, load_model_weights
from vidfm.train.config import effective_lr
from vidfm.train.pretrain import pretrain

# Variant name -> config overrides on top of the tiny recipe (after --steps is applied).
VARIANTS: dict[str, list[str]] = {
    "official": ["train.blr=1.5e-4"],  # VideoMAE's lr rule: 1.5e-4 x batch/256 -> 9.4e-6 at batch 16
    "tiny": [],  # the recipe as shipped
    "lr1e-3": ["train.lr=1e-3"],
    "lr3e-3": ["train.lr=3e-3"],
    "mask0.75": ["mask.ratio=0.75"],
    "raw-pixels": ["normalize_target=false"],
    "patch16": ["encoder.size=T/16"],
    "eps0.05": ["target_eps=0.05"],  # patch-std floor: flat patches' codec noise no longer unit-variance
    "eps0.05-mask0.75": ["target_eps=0.05", "mask.ratio=0.75"],
    # A tube mask at 0.9 leaves ~6 of the 64 positions per frame visible; the 24-px digit covers ~9, so the
    # encoder rarely sees it. These variants show the digit more often.
    "mask0.5": ["mask.ratio=0.5"],
    "random0.9": ["mask.kind=random"],  # MAE-ST's random masking: other frames reveal the masked digit parts
    "eps0.05-random0.9": ["target_eps=0.05", "mask.kind=random"],
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=["official", "tiny"], choices=sorted(VARIANTS))
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--every", type=int, default=200)
    p.add_argument("--clips", type=int, default=2000)
    p.add_argument("--contrast", type=float, default=0.5, help="digits-motion background contrast")
    p.add_argument("--out", default="runs/pretrain_curve")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    out = Path(args.out)
    data_dir = out / f"digits-motion-c{args.contrast}-n{args.clips}"
    manifest = data_dir / "manifest.csv"
    if not manifest.exists():
        make_digits_motion(
            data_dir, n=args.clips, contrast=args.contrast, seed=args.seed, workers=args.workers
        )
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = []
    base = tiny()
    base = dataclasses.replace(base, data=dataclasses.replace(base.data, manifest=str(manifest)))
    feats = split_features(None, base.data, base.augment, workers=args.workers, progress=False)
    for r in probe_features(feats["train"], feats["test"], ["digit", "motion"], seed=args.seed):
        rows.append(("trivial baseline", "-", 0, 0.0, "-", r.label, r.linear))
    for name in args.variants:
        cfg = apply_overrides(
            base,
            [
                f"train.steps={args.steps}",
                f"train.warmup_steps={max(1, args.steps // 10)}",
                f"train.ckpt_every={args.every}",
                f"train.keep_last={args.steps // args.every + 1}",
                f"train.seed={args.seed}",
                f"train.workers={args.workers}",
                "train.progress=false",
                *VARIANTS[name],
            ],
        )
        run_dir = out / f"{name}-s{args.seed}"
        t0 = time.perf_counter()
        pretrain(cfg, run_dir)
        minutes = (time.perf_counter() - t0) / 60
        torch.manual_seed(args.seed)
        points = [(0, None)] + list_checkpoints(run_dir)
        for step, ckpt in points:
            encoder = VideoEncoder(cfg.encoder)
            if ckpt is not None:
                load_model_weights(ckpt, encoder, prefix="encoder.")
            for pool in ("mean", "grid2x2"):
                feats = split_features(
                    encoder, cfg.data, cfg.augment, pool=pool, workers=args.workers, progress=False
                )
                for r in probe_features(feats["train"], feats["test"], ["digit", "motion"], seed=args.seed):
                    rows.append(
                        (
                            name,
                            pool,
                            step,
                            minutes * step / args.steps,
                            f"{effective_lr(cfg.train, 1):.2e}",
                            r.label,
                            r.linear,
                        )
                    )
                    print(
                        "| " + " | ".join(_cells(rows[-1])) + " |", flush=True
                    )  # partial results survive a kill
        loss = [ln for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if '"loss"' in ln]
        print(f"{name}: first/last logged loss {loss[0][:80]} ... {loss[-1][:80]}", flush=True)

    print("\n| variant | pool | step | pre-train min | lr | label | linear top-1 |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(_cells(row)) + " |")


def _cells(row: tuple) -> list[str]:
    name, pool, step, minutes, lr, label, acc = row
    return [name, pool, str(step), f"{minutes:.1f}", lr, label, f"{acc:.3f}"]


if __name__ == "__main__":
    main()
