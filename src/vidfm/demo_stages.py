"""What both demo routes share (:mod:`vidfm.demo` and :mod:`vidfm.demo_language`): the demo's settings,
training one stage (reusing a finished run) and the probe rows of one encoder."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch

from vidfm.io import atomic_write_text
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
    distil: bool = True


def probe_rows(
    name: str,
    encoder: torch.nn.Module | None,
    cfg,
    manifest: Path,
    demo: DemoConfig,
    weights: Path | None = None,
    notes: list[str] | None = None,
) -> list[list]:
    """Linear-probe and kNN top-1 on digit and motion for one encoder (None = the trivial baseline).

    Results are kept in ``OUT/probes/`` under a key of everything they depend on (encoder config, the
    checkpoint of ``weights`` — a run folder — data, pool and seed), so a re-run of the demo reuses them;
    ``notes`` then gets a line saying so.
    """
    from vidfm.train.checkpoint import latest_checkpoint

    key = {
        "name": name,
        "encoder": dataclasses.asdict(cfg.encoder) if encoder is not None else None,
        "checkpoint": str(latest_checkpoint(weights)) if weights is not None else None,
        "manifest": str(manifest),
        "pool": demo.pool,
        "seed": demo.seed,
    }
    path = (
        Path(demo.out)
        / "probes"
        / (hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16] + ".json")
    )
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved["key"] == key:
            if notes is not None:
                notes.append(f"{name}: reused its probe results in {path.parent}")
            return saved["rows"]
    rows = _probe(name, encoder, cfg, manifest, demo)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"key": key, "rows": rows}, indent=1))
    return rows


def _probe(name: str, encoder: torch.nn.Module | None, cfg, manifest: Path, demo: DemoConfig) -> list[list]:
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
