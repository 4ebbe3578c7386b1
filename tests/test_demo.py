"""The demo end to end at a few steps: every row of the table, the report files, the language route's notes."""

from __future__ import annotations

import csv
import json

from vidfm.demo import DemoConfig, run_demo, train_stage
from vidfm.recipes import load_run_config


def test_demo_writes_every_row_and_the_report(tmp_path):
    demo = DemoConfig(out=str(tmp_path), clips=240, steps=4, language_steps=3, language_budget_s=1e6)
    table = run_demo(demo)
    report = tmp_path / "report"
    with open(report / "results.csv") as f:
        rows = list(csv.DictReader(f))
    encoders = {r["encoder"] for r in rows}
    # The headline first: the EfficientNet-Lite0 students (2 seeds, with the standard error over seeds).
    assert rows[0]["encoder"].startswith("UMT-style student of ImageNet EfficientNet-Lite0 (2 seeds)")
    assert rows[0]["± (seeds)"].startswith("± ")
    assert rows[2]["encoder"] == "random init, the student's encoder" and rows[4]["encoder"] == "random init"
    assert {
        "random init",
        "VideoMAE pre-trained",
        "UMT stage 1 (clip_image teacher)",
        "UMT stage 2 (video-text)",
    } <= encoders
    assert any(e.startswith("trivial baseline") for e in encoders)
    assert {r["label"] for r in rows} == {"digit", "motion"}
    assert all(0.0 <= float(r["linear top-1"]) <= 1.0 for r in rows)
    for name in ("loss.png", "reconstruction.png", "results.md"):
        assert (report / name).stat().st_size > 0
    notes = json.loads((report / "summary.json").read_text())["notes"]
    assert any("text->video" in n and "R@1" in n for n in notes)
    assert "UMT stage 2" in table and "R@1" in (report / "results.md").read_text()
    assert not any("reused" in n for n in notes)
    # The clips were decoded once, into the store that training and the probes read.
    assert load_run_config(tmp_path / "run").data.clip_store == str(tmp_path / "clips")
    assert (tmp_path / "clips" / "clips.u8").stat().st_size == 240 * 16 * 64 * 64 * 3
    assert "does NOT pay at CPU scale" in table  # the VideoMAE row says so in the table's legend
    # A second demo into the same folder reuses data, targets, runs and probes: the same rows, and notes
    # that say what was reused (its time would otherwise read as a speed-up).
    run_demo(demo)
    with open(report / "results.csv") as f:
        assert list(csv.DictReader(f)) == rows
    notes = json.loads((report / "summary.json").read_text())["notes"]
    assert any("reused the finished run" in n for n in notes)
    assert any("reused its probe results" in n for n in notes)
    assert any("reused the teacher targets" in n for n in notes)
    seconds, reused = train_stage(load_run_config(tmp_path / "run"), tmp_path / "run")
    assert reused and seconds < 60
