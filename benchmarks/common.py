"""Timing, FLOP counting, a measured matmul peak and table printing shared by the speed benchmarks.

Import from a script in ``benchmarks/`` as ``from common import ...`` (the script's folder is on the path).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


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
