"""Shared tiny data for the evaluation-suite tests: a digits-motion manifest and a 1-step VideoMAE run of a
1-block, 32-wide encoder on 32² clips (the plumbing is under test here, not the numbers)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("sklearn")  # digits-motion ships scikit-learn's digits; the probes use it too

SMALL = [
    "encoder.depth=1",
    "encoder.width=32",
    "encoder.heads=2",
    "encoder.img_size=32",
    "encoder.num_frames=8",
    "augment.size=32",
    "data.num_frames=8",
    "data.short_side=32",
    "decoder.depth=1",
    "decoder.width=32",
    "decoder.heads=2",
]
ONE_STEP = [
    "train.steps=1",
    "train.batch_size=2",
    "train.warmup_steps=0",
    "train.workers=0",
    "train.progress=false",
    "train.ckpt_every=0",
]


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny matrices on a shared 2-core machine: a second torch thread only adds spin-waiting.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def digits(tmp_path_factory) -> Path:
    """A 24-clip digits-motion manifest (8 frames, 32²)."""
    from vidfm.data.digits import make_digits_motion

    return make_digits_motion(tmp_path_factory.mktemp("digits"), n=24, num_frames=8, size=32, seed=0)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, digits) -> Path:
    """A VideoMAE run folder (config.yaml + one checkpoint) of a tiny encoder."""
    from vidfm.config import apply_overrides
    from vidfm.recipes import get_recipe
    from vidfm.train.pretrain import pretrain

    run = tmp_path_factory.mktemp("runs") / "videomae"
    cfg = apply_overrides(get_recipe("videomae:tiny"), SMALL + ONE_STEP + [f"data.manifest={digits}"])
    pretrain(cfg, run)
    return run
