"""The GPU schedule benchmark runs end to end on a CPU at a very small step count (every table, every row)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn")  # digits-motion ships scikit-learn's digits

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_schedules.py"


def test_gpu_schedules_run_end_to_end_at_a_few_steps(tmp_path) -> None:
    out = tmp_path / "gpu"
    args = ["--out", str(out), "--clips", "80", "--epochs", "0.0005", "--batch", "4", "--every", "2"]
    args += ["--workers", "0", "--train-workers", "0"]
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=3000)
    assert done.returncode == 0, done.stderr[-3000:]
    table = (out / "results.md").read_text()
    rows = [line.split("|")[1].strip() for line in table.splitlines()[2:]]
    assert rows[0] == "trivial baseline"
    assert rows.count("VideoMAE (videomae:gpu)") >= 2  # random init (step 0) and at least one checkpoint
    assert "UMT stage 1 (teacher included)" in rows
    assert sum(r.startswith("MVD student") for r in rows) == 3
    assert "step 0 = random init" in done.stdout
