"""UMT against VideoMAE on digits-motion: linear-probe accuracy against training cost, teacher included.

The paper (Li et al., ICCV 2023, Table 1 / Figure 1) reports UMT reaching VideoMAE's accuracy several times
faster. Here both students are the same 4-block ViT-T/8 at 64² (512 tokens per clip):

- VideoMAE: ``videomae:tiny`` (16 frames, tubelet 2, tube mask 0.9, pixel decoder);
- UMT: ``clip_image:tiny`` (a CLIP-style teacher trained on the frames and captions, its cost counted), then
  ``umt:tiny`` (8 frames one per segment, tubelet 1, semantic mask 0.8, last 2 layers aligned).

Every ``--every`` steps a checkpoint is probed (linear and kNN on ``digit`` and ``motion``, mean pooling,
frozen features of the train/test splits). Cost is reported as wall-clock seconds and process CPU seconds of
training (decoding in-process, ``workers=0``, so CPU time counts everything); the UMT rows add the teacher's.
Not run by CI. The run quoted in docs/umt.md took 62 min wall (8 min of training CPU time) on
2 CPU cores shared with other jobs (load average 4-13):

    python benchmarks/umt_vs_videomae.py --out runs/umt_vs_videomae --manifest DIGITS/manifest.csv \
        --videomae-steps 400 --umt-steps 200 --every 200 --umt-every 100 --probe-workers 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import torch
from common import digits_manifest, probe_encoder

from vidfm.config import apply_overrides
from vidfm.eval.report import markdown_table
from vidfm.models.encoder import VideoEncoder
from vidfm.recipes import get_recipe
from vidfm.train.checkpoint import list_checkpoints, load_model_weights
from vidfm.train.pretrain import pretrain
from vidfm.utils import default_device, setup_logging


def train(cfg, run_dir: Path) -> dict[int, tuple[float, float]]:  # noqa: ANN001 - a recipe config
    """Train ``cfg`` into ``run_dir``; returns {step: (wall s, CPU s)} at every logged step."""
    marks: dict[int, tuple[float, float]] = {}
    wall0, cpu0 = time.perf_counter(), time.process_time()

    def on_log(record: dict) -> None:
        marks[record["step"]] = (time.perf_counter() - wall0, time.process_time() - cpu0)

    pretrain(cfg, run_dir, on_log=on_log)
    (run_dir / "cost.json").write_text(json.dumps(marks))
    return marks


def curve(name: str, cfg, run_dir: Path, extra: tuple[float, float], device, workers: int) -> list[list]:  # noqa: ANN001
    """Rows (method, step, wall, CPU, digit lin, digit kNN, motion lin, motion kNN) for step 0 and each
    checkpoint; ``extra`` (wall, CPU) is added to every cost (the teacher's training)."""
    marks = {int(k): tuple(v) for k, v in json.loads((run_dir / "cost.json").read_text()).items()}
    rows = []
    points = [(0, None)] + list_checkpoints(run_dir)
    for step, ckpt in points:
        torch.manual_seed(cfg.train.seed)
        encoder = VideoEncoder(cfg.encoder)
        if ckpt is not None:
            load_model_weights(ckpt, encoder, prefix="encoder.")
        acc = probe_encoder(encoder, cfg, cfg.data.manifest, workers, device)
        wall, cpu = marks.get(step, (0.0, 0.0))
        cost = (wall + extra[0], cpu + extra[1]) if step or name.startswith("UMT") else (0.0, 0.0)
        rows.append([name, step, round(cost[0]), round(cost[1]), *acc["digit"], *acc["motion"]])
        print(markdown_table(HEADER, [rows[-1]]).splitlines()[-1], flush=True)
    return rows


HEADER = ["method", "step", "wall s", "CPU s", "digit lin", "digit kNN", "motion lin", "motion kNN"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/umt_vs_videomae")
    p.add_argument("--clips", type=int, default=2000)
    p.add_argument(
        "--manifest", default=None, help="an existing digits-motion manifest (default: made in --out)"
    )
    p.add_argument("--videomae-steps", type=int, default=600)
    p.add_argument("--umt-steps", type=int, default=300)
    p.add_argument("--teacher-steps", type=int, default=None, help="clip_image steps (default: the recipe's)")
    p.add_argument("--every", type=int, default=150, help="checkpoint (and probe) interval")
    p.add_argument("--umt-every", type=int, default=None, help="the UMT run's interval (default: --every)")
    p.add_argument("--workers", type=int, default=0, help="decoding processes (0: CPU time counts decoding)")
    p.add_argument(
        "--probe-workers",
        type=int,
        default=None,
        help="decoding processes of the probes (default: --workers)",
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    setup_logging()
    out, device = Path(args.out), default_device()
    manifest = digits_manifest(out, args.manifest, args.clips, args.seed)
    common = [f"data.manifest={manifest}", f"train.workers={args.workers}", "train.progress=false"]
    common += [f"train.seed={args.seed}", f"train.ckpt_every={args.every}", "train.keep_last=100"]
    common += [f"train.log_every={math.gcd(10, args.every)}"]  # a cost mark at every checkpoint

    def recipe(name: str, steps: int, *extra: str):  # noqa: ANN202
        cfg = apply_overrides(get_recipe(name), [*common, *extra])
        warm = min(cfg.train.warmup_steps, steps // 10)
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=steps, warmup_steps=warm))

    # The teacher and UMT first: their runs can seed a stage-2 run while VideoMAE trains.
    runs = {}
    teacher_steps = args.teacher_steps or get_recipe("clip_image:tiny").train.steps
    teacher = recipe("clip_image:tiny", teacher_steps, "train.ckpt_every=0")
    if not (out / "clip" / "cost.json").exists():
        train(teacher, out / "clip")
    marks = json.loads((out / "clip" / "cost.json").read_text())
    teacher_cost = tuple(marks[max(marks, key=int)])
    umt_every = args.umt_every or args.every
    umt_extra = [f"teacher.path={out / 'clip'}", f"train.ckpt_every={umt_every}"]
    umt = recipe("umt:tiny", args.umt_steps, *umt_extra, f"train.log_every={math.gcd(10, umt_every)}")
    if not (out / "umt" / "cost.json").exists():
        train(umt, out / "umt")
    vmae = recipe("videomae:tiny", args.videomae_steps)
    if not (out / "videomae" / "cost.json").exists():
        train(vmae, out / "videomae")
    runs["VideoMAE"] = (vmae, out / "videomae", (0.0, 0.0))
    runs["UMT (teacher included)"] = (umt, out / "umt", teacher_cost)
    print(f"teacher (clip_image:tiny): {teacher_cost[0]:.0f} s wall, {teacher_cost[1]:.0f} s CPU", flush=True)
    print(markdown_table(HEADER, []), flush=True)
    rows = []
    probe_workers = args.workers if args.probe_workers is None else args.probe_workers
    for name, (cfg, run_dir, extra) in runs.items():
        rows += curve(name, cfg, run_dir, extra, device, probe_workers)
    table = markdown_table(HEADER, rows)
    (out / "results.md").write_text(table + "\n")
    print(f"\n{table}\n\ndevice: {device}; chance: digit 0.100, motion 0.125")


if __name__ == "__main__":
    main()
