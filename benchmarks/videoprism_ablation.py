"""VideoPrism's stage-2 ablations on digits-motion: token shuffling and global distillation.

Stage 1 trains ``videoprism_stage1:tiny`` (video-text contrastive on the digits-motion captions, MAP-pooled
video embedding, frozen MiniLM text tower). Stage 2 continues it four ways with ``videoprism_stage2:tiny``
(student initialised from stage 1, stage 1 as the frozen teacher): with and without token shuffling, with
and without global distillation. Every encoder is probed frozen (mean-pooled tokens; linear probe with C
chosen on a held-out fold of train, and kNN k=20) on ``digit`` (appearance: one frame suffices) and
``motion`` (dynamics: one frame is at chance), beside the same encoder at random init and the trivial
colour-histogram + frame-difference baseline; zero-shot text->video R@1 on the test split uses the
stage-1 text tower with each run's video tower (stage 2: its global head, or the stage-1 MAP head where the
run has none, see ``VideoPrismStage2Recipe.dual_encoder``).

The paper's claims (VideoPrism, ICML 2024; ``../shared/PAPERS.md`` §3):
  1. token-only masked modeling loses stage 1's appearance accuracy; global distillation keeps it
     (here: digit, global >= no global);
  2. token shuffling helps (here: shuffled >= not shuffled).

    python benchmarks/videoprism_ablation.py --out runs/videoprism_ablation            # tiny, CPU
    python benchmarks/videoprism_ablation.py --out runs/vp_gpu --stage1-steps 3000 --stage2-steps 3000

Runs, probes and retrievals already in ``--out`` are reused, so an interrupted benchmark continues.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from common import LABELS, probe_run, train_run

# name -> stage-2 overrides
VARIANTS = {
    "shuffle + global": ["shuffle=true", "global_weight=1.0"],
    "shuffle, no global": ["shuffle=true", "global_weight=0"],
    "no shuffle + global": ["shuffle=false", "global_weight=1.0"],
    "no shuffle, no global": ["shuffle=false", "global_weight=0"],
}


def overrides(manifest: Path, seed: int, steps: int, workers: int) -> list[str]:
    return [
        f"data.manifest={manifest}",
        f"train.seed={seed}",
        f"train.workers={workers}",
        "train.progress=false",
        f"train.steps={steps}",
        f"train.warmup_steps={max(steps // 10, 1)}",
        f"train.ckpt_every={steps}",
    ]


def zero_shot(run_dir: Path, manifest: Path, workers: int, device: torch.device) -> float:
    """Text->video R@1 (%) on the test split, cached in the run folder."""
    cache = run_dir / "retrieval.json"
    if cache.is_file():
        return json.loads(cache.read_text())["t2v_R@1"]
    from vidfm.eval.retrieval import evaluate_retrieval

    result = evaluate_retrieval(
        run_dir, manifest, split="test", batch_size=24, workers=workers, device=device, progress=False
    )
    cache.write_text(json.dumps({"t2v_R@1": result.t2v["R@1"], "t2v": result.t2v, "v2t": result.v2t}) + "\n")
    return result.t2v["R@1"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/videoprism_ablation")
    p.add_argument("--manifest", default="", help="a digits-motion manifest (default: write one in --out)")
    p.add_argument("--clips", type=int, default=2000, help="digits-motion clips when writing one")
    p.add_argument("--stage1-steps", type=int, default=350)
    p.add_argument("--stage2-steps", type=int, default=80)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="decoding worker processes")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = p.parse_args()

    from vidfm.data.digits import make_digits_motion
    from vidfm.eval.report import markdown_table
    from vidfm.utils import default_device, setup_logging

    setup_logging()
    torch.set_num_threads(args.threads)
    device = default_device()
    out = Path(args.out)
    manifest = Path(args.manifest) if args.manifest else out / "digits-motion" / "manifest.csv"
    if not manifest.is_file():
        manifest = make_digits_motion(manifest.parent, n=args.clips, seed=0, workers=args.workers)

    wall0 = time.perf_counter()
    stage1 = out / "stage1"
    cost = {
        "stage 1": train_run(
            "videoprism_stage1:tiny", overrides(manifest, args.seed, args.stage1_steps, args.workers), stage1
        )["wall"]
    }
    runs = {"stage 1": stage1}
    for name, extra in VARIANTS.items():
        run_dir = out / ("stage2_" + name.replace(" + ", "_").replace(", ", "_").replace(" ", "_"))
        sets = overrides(manifest, args.seed, args.stage2_steps, args.workers) + [f"init={stage1}", *extra]
        cost[f"stage 2, {name}"] = train_run("videoprism_stage2:tiny", sets, run_dir)["wall"]
        runs[f"stage 2, {name}"] = run_dir
    train_s = time.perf_counter() - wall0

    header = ["encoder", "train min", "digit linear", "digit kNN", "motion linear", "motion kNN", "t2v R@1 %"]
    rows = []
    for label, kind in (("trivial baseline (colour histogram + frame difference)", "trivial"),
                        ("random init (same factorized encoder)", "random")):  # fmt: skip
        acc = probe_run(stage1, manifest, args.workers, device, kind)
        rows.append([label, "0"] + [f"{acc[lab][i]:.3f}" for lab in LABELS for i in (0, 1)] + ["n/a"])
        print(markdown_table(header, [rows[-1]]).splitlines()[-1], flush=True)
    for name, run_dir in runs.items():
        acc = probe_run(run_dir, manifest, args.workers, device)
        r1 = zero_shot(run_dir, manifest, args.workers, device)
        minutes = cost[name] / 60 + (cost["stage 1"] / 60 if name != "stage 1" else 0)
        rows.append(
            [name, f"{minutes:.1f}"]
            + [f"{acc[lab][i]:.3f}" for lab in LABELS for i in (0, 1)]
            + [f"{r1:.1f}"]
        )
        print(markdown_table(header, [rows[-1]]).splitlines()[-1], flush=True)
    table = markdown_table(header, rows)
    total = time.perf_counter() - wall0
    (out / "results.md").write_text(table + "\n")
    print(
        f"\n{table}\n\nstage 1: {args.stage1_steps} steps; stage 2: {args.stage2_steps} steps each "
        f"(train min of a stage-2 row includes stage 1). device: {device}; chance: digit 0.100, motion 0.125, "
        f"t2v R@1 {100 / 400:.2f}% for 400 test videos. Training {train_s / 60:.1f} min, total "
        f"{total / 60:.1f} min wall."
    )


if __name__ == "__main__":
    main()
