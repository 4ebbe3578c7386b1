"""What both demo routes share (:mod:`vidfm.demo` and :mod:`vidfm.demo_language`): the demo's settings,
training one stage (reusing a finished run) and the probe rows of one encoder."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

from vidfm.utils import default_device


@dataclasses.dataclass
class DemoConfig:
    """out: report and run folder. clips: digits-motion size. steps: pre-training steps (None = recipe's).
    pool: clip feature for the probes (see :func:`vidfm.eval.features.pool_tokens`).
    language: also run the language route (``clip_image`` -> UMT stage 1 -> stage 2 when the budget allows,
    :mod:`vidfm.demo_language`) within ``language_budget_s``; language_steps overrides its stages' steps."""

    out: str = "vidfm-demo"
    clips: int = 2000
    steps: int | None = None
    seed: int = 0
    pool: str = "mean"
    workers: int = 1
    language: bool = True
    language_budget_s: float = 300.0
    language_steps: int | None = None


def probe_rows(
    name: str, encoder: torch.nn.Module | None, cfg, manifest: Path, demo: DemoConfig
) -> list[list]:
    """Linear-probe and kNN top-1 on digit and motion for one encoder (None = the trivial baseline)."""
    from vidfm.eval.frozen import probe_features, split_features

    data = dataclasses.replace(cfg.data, manifest=str(manifest))
    feats = split_features(
        encoder,
        data,
        cfg.augment,
        pool=demo.pool,
        workers=demo.workers,
        seed=demo.seed,
        device=default_device(),
    )
    rows = probe_features(feats["train"], feats["test"], ["digit", "motion"], seed=demo.seed)
    return [[name, r.label, r.linear, r.knn] for r in rows]


def train_stage(cfg: Any, run_dir: Path) -> tuple[float, bool]:
    """Pre-train ``cfg`` into ``run_dir`` -> (seconds, whether a finished run there was reused instead).

    Runs resume by default, so a demo re-run into the same folder skips finished stages; the notes say so,
    or its minutes would read as a speed-up."""
    from vidfm.train.checkpoint import list_checkpoints
    from vidfm.train.pretrain import pretrain

    finished = any(step >= cfg.train.steps for step, _ in list_checkpoints(run_dir))
    start = time.perf_counter()
    pretrain(cfg, run_dir)
    return time.perf_counter() - start, finished
