"""Do the recipes learn when given their official schedule? The ``:gpu`` recipes on digits-motion, probed.

Three tables, one command (prepared for one GPU; not yet measured — README "Measured" marks the rows):

1. ``videomae:gpu``: the tiny VideoMAE at the official small-data schedule (UCF101: tube mask 0.75, 3,200
   epochs, lr 3e-4 × batch / 256), probed every ``--every`` epochs (linear and kNN top-1 on ``digit`` and
   ``motion``; step 0 is random init). Targets: ``digit`` ≥ random init + 15 points, ``motion`` ≥ random init.
2. UMT against VideoMAE at equal GPU time: ``clip_image:gpu`` (the teacher, its time counted) then
   ``umt:gpu``; the curve's cost column is read against table 1's (UMT's "several times faster" claim).
3. MVD co-teaching with teachers trained long enough to be worth distilling: ``mae_image:gpu`` and table 1's
   ``videomae:gpu`` run teach three ``mvd:gpu`` students (image only, video only, both).

Every row has its wall and process-CPU seconds of training; the trivial baseline is printed first. Runs
finished in ``--out`` are reused. ``--epochs`` scales every schedule (e.g. ``--epochs 0.01`` on a CPU to see
it run end to end; the test suite does that)::

    python benchmarks/gpu_schedules.py --out runs/gpu                       # the full schedules, on a GPU
    python benchmarks/gpu_schedules.py --out /tmp/g --clips 80 --epochs 0.01 --batch 4 --every 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

from common import probe_encoder
from umt_vs_videomae import HEADER, curve, train

from vidfm.config import apply_overrides
from vidfm.data.digits import make_digits_motion
from vidfm.eval.report import markdown_table
from vidfm.recipes import get_recipe, load_run_encoder
from vidfm.recipes.common import DIGITS_TRAIN_CLIPS
from vidfm.utils import default_device, setup_logging

STUDENTS = {"image": (1.0, 0.0), "video": (0.0, 1.0), "both": (1.0, 1.0)}  # MVD's (λ_img, λ_vid)


def schedule(spec: str, args: argparse.Namespace, manifest: Path, *extra: str):  # noqa: ANN201 - a recipe
    """Recipe ``spec`` on ``manifest`` with its epochs scaled by ``--epochs`` and the batch of ``--batch``."""
    sets = [f"data.manifest={manifest}", "train.progress=false", f"train.workers={args.train_workers}"]
    cfg = apply_overrides(get_recipe(spec), [*sets, *extra])
    t = cfg.train
    train_clips = round(args.clips * DIGITS_TRAIN_CLIPS / 2000)
    epochs = t.steps * t.batch_size / DIGITS_TRAIN_CLIPS * args.epochs  # the recipe's epochs, scaled
    batch = args.batch or t.batch_size
    per_epoch = max(train_clips / batch, 1e-9)
    steps = max(1, round(epochs * per_epoch))
    every = max(1, min(steps, round(args.every * per_epoch)))
    # log_every divides every checkpoint interval, so each probed checkpoint has its cost mark
    fields = dict(batch_size=batch, steps=steps, warmup_steps=min(t.warmup_steps, steps // 10))
    fields |= dict(ckpt_every=every, log_every=math.gcd(every, 50), keep_last=1000, seed=args.seed)
    return dataclasses.replace(cfg, train=dataclasses.replace(t, **fields))


def trained(cfg, run_dir: Path) -> tuple[float, float]:  # noqa: ANN001
    """Train (unless finished) and return the run's final (wall s, CPU s)."""
    if not (run_dir / "cost.json").exists():
        train(cfg, run_dir)
    marks = json.loads((run_dir / "cost.json").read_text())
    return tuple(marks[max(marks, key=int)]) if marks else (0.0, 0.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/gpu_schedules")
    p.add_argument("--clips", type=int, default=2000, help="digits-motion clips (80 %% train)")
    p.add_argument(
        "--epochs", type=float, default=1.0, help="scale of every recipe's epochs (1 = as shipped)"
    )
    p.add_argument("--batch", type=int, default=0, help="clips per step (0 = the recipes' 256)")
    p.add_argument("--every", type=float, default=200, help="probe interval in epochs")
    p.add_argument("--workers", type=int, default=8, help="decoding processes of the probes")
    p.add_argument("--train-workers", type=int, default=8, help="decoding processes of the training runs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip", nargs="*", default=[], choices=["umt", "mvd"], help="tables to leave out")
    args = p.parse_args()
    setup_logging()
    out, device = Path(args.out), default_device()
    manifest = out / "digits-motion" / "manifest.csv"
    if not manifest.exists():
        make_digits_motion(manifest.parent, n=args.clips, seed=args.seed, workers=4)
    base = schedule("videomae:gpu", args, manifest)
    trivial = probe_encoder(None, base, manifest, args.workers, device)
    results = [["trivial baseline", "-", "-", "-", *trivial["digit"], *trivial["motion"]]]
    print(markdown_table(HEADER, results), flush=True)

    # 1. VideoMAE at the official small-data schedule.
    trained(base, out / "videomae")
    results += curve("VideoMAE (videomae:gpu)", base, out / "videomae", (0.0, 0.0), device, args.workers)
    # 2. UMT stage 1 with its teacher's cost, against table 1's costs.
    if "umt" not in args.skip:
        teacher = schedule("clip_image:gpu", args, manifest)
        cost = trained(teacher, out / "clip")
        umt = schedule("umt:gpu", args, manifest, f"teacher.path={out / 'clip'}")
        trained(umt, out / "umt")
        results += curve("UMT stage 1 (teacher included)", umt, out / "umt", cost, device, args.workers)
    # 3. MVD co-teaching: the image teacher trained here, the video teacher is table 1's run.
    if "mvd" not in args.skip:
        image = schedule("mae_image:gpu", args, manifest)
        image_cost, video_cost = trained(image, out / "mae_image"), trained(base, out / "videomae")
        teachers = [f"teachers.image={out / 'mae_image'}", f"teachers.video={out / 'videomae'}"]
        for name, (w_img, w_vid) in STUDENTS.items():
            weights = [f"teachers.image_weight={w_img}", f"teachers.video_weight={w_vid}"]
            student = schedule("mvd:gpu", args, manifest, *teachers, *weights)
            wall, cpu = trained(student, out / f"mvd-{name}")
            extra = [c for c, w in ((image_cost, w_img), (video_cost, w_vid)) if w]
            wall, cpu = wall + sum(c[0] for c in extra), cpu + sum(c[1] for c in extra)
            acc = probe_encoder(
                load_run_encoder(out / f"mvd-{name}")[0], student, manifest, args.workers, device
            )
            results.append(
                [
                    f"MVD student, {name} teacher(s), teachers included",
                    student.train.steps,
                    round(wall),
                    round(cpu),
                    *acc["digit"],
                    *acc["motion"],
                ]
            )
    table = markdown_table(HEADER, results)
    (out / "results.md").write_text(table + "\n")
    print(f"\n{table}\n\ndevice: {device}; chance: digit 0.100, motion 0.125; step 0 = random init")


if __name__ == "__main__":
    main()
