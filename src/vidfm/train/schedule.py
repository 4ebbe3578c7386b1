"""Per-step schedules, precomputed as arrays: ``values[step]`` is the value for optimizer update ``step``.

Precomputing (as VideoMAE/DINO do, per iteration) makes a resumed run read the same values as an
uninterrupted one: nothing about the schedule lives in the checkpoint, it is rebuilt from the config.
"""

from __future__ import annotations

import math

import numpy as np


def _check(total_steps: int, warmup_steps: int) -> None:
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}")


def _with_warmup(body: np.ndarray, base: float, warmup_steps: int, warmup_start: float) -> np.ndarray:
    # Linear warmup from ``warmup_start`` to ``base`` inclusive of both ends (np.linspace), as VideoMAE
    # ``utils.cosine_scheduler``: the last warmup step already uses ``base``.
    warmup = np.linspace(warmup_start, base, warmup_steps, dtype=np.float64)
    return np.concatenate([warmup, body]).astype(np.float64)


def cosine_schedule(
    base: float, final: float, total_steps: int, warmup_steps: int = 0, warmup_start: float = 0.0
) -> np.ndarray:
    """Linear warmup then half-cosine decay from ``base`` towards ``final``; shape ``[total_steps]``.

    Same formula as VideoMAE ``utils.cosine_scheduler`` (MAE/BEiT/DINO share it) with epochs*niter_per_ep
    replaced by a step count: for ``i`` in ``0..n-1`` (``n = total_steps - warmup_steps``) the value is
    ``final + 0.5 (base - final) (1 + cos(pi i / n))``, so the cosine part starts at ``base`` and its last
    value is one step short of ``final`` (the official code does the same).
    """
    _check(total_steps, warmup_steps)
    n = total_steps - warmup_steps
    i = np.arange(n, dtype=np.float64)
    body = final + 0.5 * (base - final) * (1.0 + np.cos(math.pi * i / max(n, 1)))
    return _with_warmup(body, base, warmup_steps, warmup_start)


def linear_schedule(
    start: float, end: float, total_steps: int, warmup_steps: int = 0, warmup_start: float = 0.0
) -> np.ndarray:
    """Optional linear warmup to ``start``, then linear from ``start`` to ``end`` (both reached)."""
    _check(total_steps, warmup_steps)
    body = np.linspace(start, end, total_steps - warmup_steps, dtype=np.float64)
    return _with_warmup(body, start, warmup_steps, warmup_start)


def constant_schedule(
    value: float, total_steps: int, warmup_steps: int = 0, warmup_start: float = 0.0
) -> np.ndarray:
    """Optional linear warmup to ``value``, then ``value`` for every remaining step."""
    _check(total_steps, warmup_steps)
    body = np.full(total_steps - warmup_steps, value, dtype=np.float64)
    return _with_warmup(body, value, warmup_steps, warmup_start)


def momentum_schedule(start: float, end: float, total_steps: int, horizon: float = 1.0) -> np.ndarray:
    """EMA momentum per optimizer update, linear from ``start`` towards ``end`` over ``horizon × total_steps``.

    As official V-JEPA ``app/vjepa/train.py`` (``momentum_scheduler``): update ``i`` (0-based) uses
    ``start + i (end - start) / (total_steps · horizon)``; V-JEPA's ``ipe_scale`` 1.25 is ``horizon``, so a run
    stops at 80 % of the ramp and the target never freezes (momentum 1).
    """
    _check(total_steps, 0)
    if horizon <= 0:
        raise ValueError(f"horizon must be > 0, got {horizon}")
    if not (0.0 <= start <= 1.0 and 0.0 <= end <= 1.0):
        raise ValueError(f"momentum must be in [0, 1], got start={start}, end={end}")
    i = np.arange(total_steps, dtype=np.float64)
    return start + i * (end - start) / (total_steps * horizon)
