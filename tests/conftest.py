"""Session-wide fixtures shared by test folders."""

from __future__ import annotations

import os
from pathlib import Path

# One intra-op thread per process: the tests' tensors are small, and DataLoader workers or spawned ranks
# with two threads each oversubscribe a 2-core machine (measured 10x slower steps). Set before torch loads,
# so spawned processes inherit it too.
if not os.environ.get("OMP_NUM_THREADS"):
    os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

# The digits-motion set every test shares: 16 frames of 64x64 like ``vidfm demo``. 3,000 clips give ~600
# test clips (20 % of the sources), enough for a chance-level check to be +-5 points at 3.7 sigma.
DIGITS_CLIPS = 3000
DIGITS_FRAMES = 16
DIGITS_SIZE = 64
DIGITS_SEED = 0


@pytest.fixture(scope="session")
def digits_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Manifest of a digits-motion set (DIGITS_CLIPS clips, seed DIGITS_SEED) generated once per session
    (~10-20 s on 2 cores); skips when scikit-learn, which ships the digits, is missing."""
    pytest.importorskip("sklearn", reason="digits-motion needs scikit-learn (pip install vidfm[eval])")
    from vidfm.data.digits import make_digits_motion

    out = tmp_path_factory.mktemp("digits_motion")
    return make_digits_motion(
        out, n=DIGITS_CLIPS, num_frames=DIGITS_FRAMES, size=DIGITS_SIZE, seed=DIGITS_SEED, workers=2
    )
