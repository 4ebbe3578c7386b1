"""What the benchmarks share: timing, FLOP counting, a measured matmul peak, table printing (speed), and
cached pre-training runs and frozen-feature probes (accuracy).

Import from a script in ``benchmarks/`` as ``from common import ...`` (the script's folder is on the path).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vidfm.utils import cpu_seconds


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class StepTiming:
    """Median seconds per call over the timed calls, and the peak GPU memory (GiB, NaN on CPU)."""

    median_s: float
    times: list[float]
    peak_gib: float


def time_steps(step: Callable[[], object], device: torch.device, steps: int, warmup: int) -> StepTiming:
    """Run ``step`` ``warmup`` times untimed (compilation, allocator, cuDNN autotune), then ``steps`` times
    synchronised; peak memory covers the timed calls only."""
    for _ in range(warmup):
        step()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return StepTiming(statistics.median(times), times, peak)


def count_flops(fn: Callable[[], torch.Tensor], model: torch.nn.Module) -> float:
    """FLOPs of one forward+backward of ``fn()`` (a loss), counted by torch's FlopCounterMode (matmuls,
    convolutions and attention; elementwise work is not counted, as MFU conventions have it)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        loss = fn()
        if loss.requires_grad:
            loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 8192, repeats: int = 20) -> float:
    """Measured dense matmul throughput in FLOP/s (``n``³ GEMMs, median of ``repeats``): the denominator
    of MFU, so the ratio is against what this GPU really sustains rather than a datasheet number."""
    if device.type != "cuda":
        n, repeats = min(n, 1024), min(repeats, 5)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    timing = time_steps(lambda: a @ b, device, repeats, warmup=3)
    return 2 * n**3 / timing.median_s


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads)"


def print_table(header: list[str], rows: list[list[object]]) -> None:
    """A markdown table; floats get 3 significant digits."""

    def cell(v: object) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(cell(v) for v in r) + " |")


# ----------------------------------------------------------------------------- accuracy benchmarks
LABELS = ("digit", "motion")  # digits-motion's label columns


def train_run(recipe: str, sets: list[str], run_dir: Path) -> dict[str, float]:
    """Run (or reuse) one pre-training run of ``recipe`` with ``--set`` overrides ``sets``; returns its cost
    ``{"wall": s, "cpu": s}``, kept in ``RUN/cost.json`` (None for CPU when an older file lacks it)."""
    from vidfm.config import apply_overrides
    from vidfm.recipes import get_recipe
    from vidfm.train.pretrain import pretrain

    cost = run_dir / "cost.json"
    if cost.is_file():
        saved = json.loads(cost.read_text())
        return {"wall": saved["seconds"], "cpu": saved.get("cpu_seconds")}
    start, cpu = time.perf_counter(), cpu_seconds()
    pretrain(apply_overrides(get_recipe(recipe), sets), run_dir)
    spent = {"wall": time.perf_counter() - start, "cpu": cpu_seconds() - cpu}
    record = {"recipe": recipe, "sets": sets, "seconds": spent["wall"], "cpu_seconds": spent["cpu"]}
    cost.write_text(json.dumps(record) + "\n")
    return spent


def probe_encoder(
    encoder: torch.nn.Module | None,
    cfg: Any,
    manifest: Path | str,
    workers: int,
    device: torch.device,
    labels: Sequence[str] = LABELS,
) -> dict[str, tuple[float, float]]:
    """{label: (linear top-1, kNN top-1)}: features of the manifest's train and test splits with the run
    config's clip sampling and augmentation, then the probes (``encoder`` None: the trivial
    colour-histogram + frame-difference baseline)."""
    from vidfm.eval.frozen import probe_features, split_features

    data = dataclasses.replace(cfg.data, manifest=str(manifest))
    feats = split_features(encoder, data, cfg.augment, workers=workers, device=device, progress=False)
    rows = probe_features(feats["train"], feats["test"], list(labels))
    return {r.label: (r.linear, r.knn) for r in rows}


def probe_run(
    run_dir: Path, manifest: Path, workers: int, device: torch.device, kind: str = "run"
) -> dict[str, tuple[float, float]]:
    """:func:`probe_encoder` of a run's frozen encoder (``kind="random"``: the same config at random init;
    ``"trivial"``: the trivial baseline), cached in ``RUN/probe_KIND.json``."""
    from vidfm.recipes import load_run_config, load_run_encoder

    cache = run_dir / f"probe_{kind}.json"
    if cache.is_file():
        return {k: tuple(v) for k, v in json.loads(cache.read_text()).items()}
    if kind == "trivial":
        encoder, cfg = None, load_run_config(run_dir)
    else:
        encoder, cfg = load_run_encoder(run_dir, random_init=kind == "random")
    result = probe_encoder(encoder, cfg, manifest, workers, device)
    cache.write_text(json.dumps(result) + "\n")
    return result


def digits_manifest(out: Path, given: str | None, clips: int, seed: int) -> Path:
    """``given`` if set, else ``out/digits-motion/manifest.csv``, written (``clips`` clips) when missing."""
    from vidfm.data.digits import make_digits_motion

    manifest = Path(given) if given else out / "digits-motion" / "manifest.csv"
    if not manifest.exists():
        make_digits_motion(manifest.parent, n=clips, seed=seed, workers=1)
    return manifest


def clip_labels(clips: Any, manifest: str | Path, column: str) -> Any:
    """Class ids of ``column`` for each clip of a Video-LaVIT ``ClipDataset`` (its video's manifest row), as
    the manifest reader numbers them: a numpy array ``[len(clips)]``."""
    import numpy as np

    from vidfm.data.datasets import read_manifest

    label = {r.path: r.labels[column] for r in read_manifest(manifest, label_columns=[column])}
    return np.array([label[clips.paths[int(v)]] for v in clips.video])
