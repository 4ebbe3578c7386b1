"""The CPU twin of benchmarks/gpu_smoke.py: every recipe's :tiny variant for 2 steps, from the resident clip
store where it reads clips, and MVD from teacher targets cached by the same code the GPU run uses."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn")  # digits-motion ships scikit-learn's digits
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.mark.slow
def test_every_recipe_runs_from_the_store(tmp_path, capsys):
    import gpu_smoke

    args = ["--out", str(tmp_path), "--steps", "2", "--batch", "2", "--clips", "16", "--workers", "0"]
    rows = gpu_smoke.main([*args, "--quick", "--no-compile"])
    assert [r.status for r in rows] == ["ok"] * len(rows), capsys.readouterr().out
    assert {r.recipe for r in rows} == {name for name, _ in gpu_smoke.CHAIN}
    assert any(r.recipe == "mvd" and r.cache and r.resident for r in rows)
    assert all(r.clips_per_s > 0 for r in rows)
