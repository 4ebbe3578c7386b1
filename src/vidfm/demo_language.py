"""The demo's language route on digits-motion: ``clip_image`` -> UMT stage 1 (-> stage 2 if the budget allows).

A CLIP-style teacher is trained on the frames and captions, a UMT student is distilled from it on the unmasked
tokens, and (time permitting) stage 2 aligns the student with the MiniLM text encoder. The students are probed
like the demo's VideoMAE rows; stage 2 is also evaluated zero-shot (text->video retrieval on the test split).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from vidfm.utils import log


def demo_recipe(recipe: str, manifest: Path, demo: Any, *overrides: str) -> Any:
    """A tiny recipe on the demo's data, seed and workers."""
    from vidfm.config import apply_overrides
    from vidfm.recipes import get_recipe

    sets = [f"data.manifest={manifest}", f"train.seed={demo.seed}", f"train.workers={demo.workers}"]
    return apply_overrides(get_recipe(recipe), [*sets, *overrides])


def train_note(cfg: Any, run_dir: Path) -> str:
    """Train one stage; its note's time ("reused" when the folder held the finished run)."""
    from vidfm.demo_stages import train_stage

    seconds, reused = train_stage(cfg, run_dir)
    return f"reused the finished run in {run_dir}" if reused else f"{seconds:.0f} s"


def language_rows(
    manifest: Path,
    out: Path,
    demo: Any,
    budget_s: float = 300.0,
    stage2_steps: int = 60,
    steps: int | None = None,
) -> tuple[list[list], list[str]]:
    """Train and probe the language route; returns table rows ``[name, label, linear, kNN]`` and note lines.

    Args:
        manifest: the digits-motion manifest.
        out: the demo folder; runs go to ``out/clip``, ``out/umt``, ``out/umt2`` (resumed when present).
        demo: the :class:`~vidfm.demo.DemoConfig` (seed, workers, pool).
        budget_s: seconds for the whole route. Stage 2 runs only when stage 1 with its probe left more than
            40% of it, and its probe row only when 15% is left after its training and retrieval.
        stage2_steps: stage-2 steps. The ``umt_stage2:tiny`` recipe has 600: its contrastive loss stays at
            log(batch) for ~180 steps (docs/umt.md), so the demo's few steps show the route working, and its
            retrieval score is expected near chance.
        steps: when given, every stage trains this many steps (quick runs and tests).
    """
    from vidfm.demo_stages import probe_rows
    from vidfm.eval.retrieval import evaluate_retrieval
    from vidfm.utils import default_device

    start = time.perf_counter()
    notes: list[str] = []

    def left() -> float:
        return budget_s - (time.perf_counter() - start)

    short = [] if steps is None else [f"train.steps={steps}", f"train.warmup_steps={max(1, steps // 10)}"]
    if steps is not None:
        stage2_steps = steps
    clip_cfg = demo_recipe("clip_image:tiny", manifest, demo, *short)
    notes.append(f"clip_image teacher: {clip_cfg.train.steps} steps, {train_note(clip_cfg, out / 'clip')}")
    umt_cfg = demo_recipe("umt:tiny", manifest, demo, f"teacher.path={out / 'clip'}", *short)
    notes.append(f"UMT stage 1: {umt_cfg.train.steps} steps, {train_note(umt_cfg, out / 'umt')}")
    umt_encoder = trained_encoder(umt_cfg, out / "umt", demo.seed)
    name = "UMT stage 1 (clip_image teacher)"
    rows = probe_rows(name, umt_encoder, umt_cfg, manifest, demo, weights=out / "umt", notes=notes)
    if left() < 0.4 * budget_s:
        notes.append(f"UMT stage 2 skipped: {left():.0f} s of the {budget_s:.0f} s budget left")
        return rows, notes
    stage2 = demo_recipe(
        "umt_stage2:tiny",
        manifest,
        demo,
        f"teacher.path={out / 'clip'}",
        f"init={out / 'umt'}",
        f"train.steps={stage2_steps}",
        f"train.warmup_steps={max(1, stage2_steps // 10)}",
    )
    notes.append(f"UMT stage 2: {stage2_steps} steps, {train_note(stage2, out / 'umt2')}")
    device = default_device()
    result = evaluate_retrieval(
        out / "umt2", manifest, "test", workers=demo.workers, device=device, progress=False
    )
    t2v = result.t2v
    notes.append(
        f"UMT stage 2 zero-shot text->video, test split: R@1 {t2v['R@1']:.1f}, R@5 {t2v['R@5']:.1f}, R@10 "
        f"{t2v['R@10']:.1f} % (chance R@1 {100 / result.num_videos:.2f} %, {result.num_videos} videos)"
    )
    if left() > 0.15 * budget_s:
        encoder = trained_encoder(stage2, out / "umt2", demo.seed)
        name = "UMT stage 2 (video-text)"
        rows += probe_rows(name, encoder, stage2, manifest, demo, weights=out / "umt2", notes=notes)
    log.info("language route: %.0f s", time.perf_counter() - start)
    return rows, notes


def trained_encoder(cfg: Any, run_dir: Path, seed: int) -> torch.nn.Module:
    """The trained student of a run."""
    from vidfm.models.encoder import VideoEncoder
    from vidfm.train.checkpoint import load_model_weights

    torch.manual_seed(seed)
    encoder = VideoEncoder(cfg.encoder)
    load_model_weights(run_dir, encoder, prefix="encoder.")
    return encoder


__all__ = ["language_rows"]
