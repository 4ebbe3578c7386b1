"""Every recipe's ``:tiny`` variant for a few steps on this machine's device, one row per run.

Runs the recipes in dependency order (teachers and stage-1 runs first, their run folders feed the later
ones) on a digits-motion set, in the combinations that exercise different code: eager vs ``torch.compile``,
decoding workers vs a resident clip store (``data.resident=true``), and for the distillation recipes (MVD,
UMT) live teachers vs cached targets (built with ``build_teacher_cache`` on the device, the path that once
drew masks with a CPU generator on CUDA). Each row: ok or the error, clips/s and data-wait fraction (median
of the trainer's logged windows after the first), peak GPU memory.

    python benchmarks/gpu_smoke.py --out /tmp/smoke                 # CUDA: 20 steps a run, bf16, all combos
    python benchmarks/gpu_smoke.py --out /tmp/smoke --steps 2 --quick   # CPU (the test suite's twin)
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from vidfm.config import apply_overrides
from vidfm.recipes import get_recipe
from vidfm.train.pretrain import pretrain

# (recipe, overrides naming earlier runs); {name} is the run folder of that earlier row.
CHAIN: list[tuple[str, list[str]]] = [
    ("videomae", []),
    ("mae_image", []),
    ("mvd", ["teachers.image={mae_image}", "teachers.video={videomae}"]),
    ("clip_image", []),
    ("umt", ["teacher.path={clip_image}"]),
    ("umt_stage2", ["teacher.path={clip_image}", "init={umt}"]),
    ("videoprism_stage1", []),
    ("videoprism_stage2", ["init={videoprism_stage1}"]),
    ("finetune", ["init={videomae}", "label=digit"]),
    ("motion_vq", []),
]
DISTILL = {"mvd", "umt"}  # recipes whose teachers can be cached
NO_STORE = {"motion_vq"}  # reads motion fields of its own dataset, not clips


@dataclasses.dataclass
class Row:
    recipe: str
    compile: bool
    cache: bool
    resident: bool
    status: str = "ok"
    clips_per_s: float = float("nan")
    data_wait: float = float("nan")
    peak_gib: float = float("nan")
    seconds: float = 0.0


def combos(recipe: str, quick: bool, compile_: bool) -> list[tuple[bool, bool, bool]]:
    """(compile, teacher cache, resident) runs of one recipe; the first one's run feeds later recipes."""
    store = recipe not in NO_STORE
    if quick:  # CPU: each recipe once, from the resident store where it can; MVD also from a cache
        out = [(False, False, store)]
        return out + ([(False, True, True)] if recipe == "mvd" else [])
    out = [(False, False, False)] + ([(False, False, True)] if store else [])
    if compile_:
        out.append((True, False, store))
    if recipe in DISTILL:
        out += [(False, True, False), (False, True, True)] + ([(True, True, True)] if compile_ else [])
    return out


def _data(recipe: str, manifest: Path) -> list[str]:
    if recipe == "motion_vq":
        return [f"data.manifest={manifest}", "data.split=train"]
    return [f"data.manifest={manifest}"]


def run_one(row: Row, args: argparse.Namespace, manifest: Path, runs: dict[str, str], device: str) -> None:
    from vidfm.data.config import with_clip_store

    deps = [d.format(**runs) for d in dict(CHAIN)[row.recipe]]
    tag = f"{row.recipe}-c{int(row.compile)}-t{int(row.cache)}-r{int(row.resident)}"
    run_dir = Path(args.out) / "runs" / tag
    train = [
        f"train.steps={args.steps}", f"train.batch_size={args.batch}", "train.warmup_steps=0",
        f"train.log_every={max(1, args.steps // 4)}", "train.ckpt_every=0", "train.progress=false",
        f"train.workers={args.workers}", f"train.compile={str(row.compile).lower()}", f"train.device={device}",
        "train.resume=false",
    ]  # fmt: skip
    cfg = apply_overrides(get_recipe(f"{row.recipe}:tiny"), _data(row.recipe, manifest) + deps + train)
    if row.resident:
        data = cfg.data
        key = f"{data.sampling}-{data.num_frames}-{data.stride}-{data.short_side}"
        data = with_clip_store(data, str(Path(args.out) / "stores" / key), clips_per_video=2)
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(data, resident=True))
    if row.cache:
        cfg = dataclasses.replace(
            cfg, train=dataclasses.replace(cfg.train, teacher_cache=_cache(cfg, args, tag))
        )
    records: list[dict[str, Any]] = []
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    pretrain(cfg, run_dir, on_log=records.append)
    row.seconds = time.perf_counter() - t0
    steady = records[1:] or records  # the first window holds start-up (workers, compilation)
    row.clips_per_s = statistics.median(r["clips_per_s"] for r in steady)
    row.data_wait = statistics.median(r["data_wait_frac"] for r in steady)
    if device.startswith("cuda"):
        row.peak_gib = torch.cuda.max_memory_allocated() / 2**30
    if (row.compile, row.cache, row.resident) == combos(row.recipe, args.quick, args.compile)[0]:
        runs[row.recipe] = str(run_dir)


def _cache(cfg: Any, args: argparse.Namespace, tag: str) -> str:
    """Teacher targets of ``cfg``'s dataset (files or store), built on the device as `cache-targets` does."""
    from vidfm.data.config import build_dataset
    from vidfm.data.datasets import collate
    from vidfm.teachers.cache import build_teacher_cache
    from vidfm.train.distributed import init_distributed

    out = Path(args.out) / "caches" / tag
    info = init_distributed(device=cfg.train.device)
    torch.manual_seed(cfg.train.seed)
    dataset = build_dataset(cfg.data, seed=cfg.train.seed)
    build_teacher_cache(
        cfg.build_task, dataset, out, views=2, collate=collate, batch_size=args.batch,
        seed=cfg.train.seed, device=info.device,
    )  # fmt: skip
    return str(out)


def smoke(args: argparse.Namespace) -> list[Row]:
    """Run every row; a failing row records its error and the next rows go on."""
    from vidfm.data.digits import make_digits_motion

    device = "cuda" if torch.cuda.is_available() else "cpu"
    manifest = Path(args.out) / "digits" / "manifest.csv"
    if not manifest.exists():
        manifest = make_digits_motion(manifest.parent, n=args.clips, seed=0, workers=args.workers)
    rows, runs = [], {}
    only = set(args.recipes or [r for r, _ in CHAIN])
    for recipe, _ in CHAIN:
        if recipe not in only:
            continue
        runs_of = combos(recipe, args.quick, args.compile)
        if args.compile_only:  # the first run feeds later recipes (teachers, stage 1), so it stays
            runs_of = runs_of[:1] + [c for c in runs_of[1:] if c[0]]
        elif args.compile_rows_apart:
            runs_of = [c for c in runs_of if not c[0]]
        for compile_, cache, resident in runs_of:
            row = Row(recipe, compile_, cache, resident)
            try:
                run_one(row, args, manifest, runs, device)
            except Exception as e:  # noqa: BLE001 - a smoke test reports every failure and goes on
                row.status = f"error: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
                traceback.print_exc(file=sys.stderr)
            rows.append(row)
            print(_line(row), flush=True)
    return rows


def _line(r: Row) -> str:
    return (
        f"| {r.recipe} | {'on' if r.compile else 'off'} | {'on' if r.cache else 'off'} | "
        f"{'on' if r.resident else 'off'} | {r.status} | {r.clips_per_s:.1f} | {100 * r.data_wait:.0f}% | "
        f"{r.peak_gib:.2f} | {r.seconds:.0f} |"
    )


HEADER = (
    "| recipe (:tiny) | compile | teacher cache | resident store | status | clips/s | data wait | "
    "peak GiB | s |\n|---|---|---|---|---|---|---|---|---|"
)


def main(argv: list[str] | None = None) -> list[Row]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="work folder (data, stores, caches, runs)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--clips", type=int, default=256, help="digits-motion clips")
    p.add_argument("--workers", type=int, default=4, help="decoding workers of the non-resident runs")
    p.add_argument("--no-compile", dest="compile", action="store_false", help="skip the compiled rows")
    p.add_argument("--compile-only", action="store_true", help="the compiled rows (and each first run)")
    p.add_argument(
        "--compile-rows-apart", action="store_true", help="leave the compiled rows to --compile-only"
    )
    p.add_argument("--quick", action="store_true", help="one run per recipe (and MVD from a cache): CPU")
    p.add_argument("--recipes", nargs="*", help="only these recipes (default: all, in dependency order)")
    args = p.parse_args(argv)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(f"device: {device}; torch {torch.__version__}; {args.steps} steps, batch {args.batch}\n{HEADER}")
    rows = smoke(args)
    bad = [r for r in rows if r.status != "ok"]
    print(f"\n{len(rows) - len(bad)} of {len(rows)} runs ok")
    return rows


if __name__ == "__main__":
    sys.exit(0 if all(r.status == "ok" for r in main()) else 1)
