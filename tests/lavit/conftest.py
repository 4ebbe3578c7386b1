"""One intra-op thread for these small models: on a shared, busy machine torch's thread pool spends more
time waiting at barriers than computing (measured 10-20x slower steps with 2 threads under load)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """The three tiny ``motion_vq`` stages trained for two steps on six digits-motion videos."""
    from vidfm.cli import main
    from vidfm.config import apply_overrides
    from vidfm.data.digits import make_digits_motion
    from vidfm.recipes import get_recipe
    from vidfm.train.pretrain import pretrain as train

    root = tmp_path_factory.mktemp("lavit")
    manifest = make_digits_motion(root / "digits", n=6, seed=0)
    out = {}
    sets = [f"data.manifest={manifest}", "data.split=none", "train.steps=2", "train.batch_size=4",
            "train.progress=false", "train.warmup_steps=0", "detokenizer.channels=[8,16,32]"]  # fmt: skip
    # the motion stage through the command line, as the recipe's docstring says; the others from Python
    args = ["pretrain", "--recipe", "motion_vq:tiny", "--out", str(root / "motion")]
    assert main([*args, *(a for s in sets for a in ("--set", s))]) == 0
    out["motion"] = root / "motion"
    for stage, variant in (("keyframe", "keyframe-tiny"), ("detokenizer", "detokenizer-tiny")):
        train(apply_overrides(get_recipe(f"motion_vq:{variant}"), sets), root / stage)
        out[stage] = root / stage
    out["video"] = root / "digits" / "videos" / "000000.mp4"
    out["manifest"] = manifest
    return out
