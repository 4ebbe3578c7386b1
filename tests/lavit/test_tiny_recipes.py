"""The shipped tiny variants of ``motion_vq`` learn on a CPU at their own model sizes, on real digits-motion clips.

``test_tokenize.py`` runs the whole path for two steps with a shrunken detokenizer; here each stage keeps the
sizes the recipe ships and must fit a fixed batch of real clips within a few steps at the recipe's lr.
"""

from __future__ import annotations

import pytest
import torch

from vidfm.config import apply_overrides
from vidfm.data.digits import make_digits_motion
from vidfm.recipes import get_recipe


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return make_digits_motion(tmp_path_factory.mktemp("digits"), n=4, seed=0)


@pytest.mark.parametrize(
    ("variant", "steps", "drop"),
    # Measured (one thread, these seeds): motion 0.43 -> 0.35 at its lr 3e-4 (sparse, heavy-tailed codec
    # vectors fit slowly), keyframe 1.81 -> 0.30, detokenizer (residual to the warped keyframe) 0.95 -> 0.79.
    [("tiny", 20, 0.92), ("keyframe-tiny", 10, 0.5), ("detokenizer-tiny", 12, 0.9)],
)
def test_shipped_tiny_variant_fits_real_clips(manifest, tmp_path, variant, steps, drop):
    cfg = apply_overrides(
        get_recipe(f"motion_vq:{variant}"), [f"data.manifest={manifest}", "data.split=none",
                                             f"data.cache_dir={tmp_path}"],
    )  # fmt: skip
    ds = cfg.build_dataset()
    assert len(ds) == 4  # one 16-frame clip per digits-motion video
    batch = {k: torch.stack([ds[i][k] for i in range(len(ds))]) for k in ds[0]}
    torch.manual_seed(0)
    task = cfg.build_task().train()
    params = [p for p in task.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.train.lr, betas=cfg.train.betas)
    losses = []
    for _ in range(steps):
        # One draw for every step (noise level, restarts): the loss then measures fitting alone.
        out = task(batch, torch.Generator().manual_seed(1))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert min(losses[-3:]) < drop * losses[0], losses
