"""benchmarks/lavit_keyframe.py runs end to end on the session's 2-step keyframe run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "lavit_keyframe.py"


@pytest.mark.filterwarnings("ignore::UserWarning")  # sklearn: a handful of clips per class
def test_keyframe_table(runs, capsys, monkeypatch):
    pytest.importorskip("sklearn")
    monkeypatch.syspath_prepend(str(SCRIPT.parent))  # it imports benchmarks/common.py
    spec = importlib.util.spec_from_file_location("lavit_keyframe", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--run", f"kf={runs['keyframe']}", "--label", "motion"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(
        "| keyframes | PSNR dB | codes used | perplexity | motion from tokens | motion from the bag"
    )
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in lines[2:]]
    assert [r[0] for r in rows] == ["majority class", "trivial baseline (pixels at 16x16)", "kf (encoder)"]
    psnr, used = rows[2][1], rows[2][2]
    assert float(psnr.split(" ± ")[0]) > 0 and used.endswith("/ 512")
    assert all(0.0 <= float(x) <= 1.0 for x in rows[2][4:])
