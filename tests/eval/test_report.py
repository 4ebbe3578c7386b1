"""Report pictures: one loss panel per objective (runs and the loss_* parts of a summed loss), captions."""

from __future__ import annotations

import json

import pytest

from vidfm.eval.report import loss_panels, plot_loss_curves, plot_reconstruction


def _metrics(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_one_panel_per_objective(tmp_path):
    pytest.importorskip("matplotlib")
    import torch

    mae = _metrics(tmp_path / "mae/metrics.jsonl", [{"step": s, "loss": 1.0 / s, "lr": 0.1} for s in (1, 2)])
    umt2 = _metrics(
        tmp_path / "umt2/metrics.jsonl",
        [{"step": s, "loss": 5.0, "loss_vtc": 3.0, "loss_mlm": 2.0, "temp": 0.07} for s in (1, 2)],
    )
    one_part = _metrics(tmp_path / "mvd/metrics.jsonl", [{"step": 1, "loss": 2.0, "loss_video": 2.0}])
    panels = loss_panels({"VideoMAE": mae, "UMT stage 2": umt2, "one part": one_part})
    # A loss with two or more parts gets a panel per part; diagnostics (temp, lr) never get one.
    assert [p[0] for p in panels] == [
        "VideoMAE",
        "UMT stage 2",
        "UMT stage 2: mlm",
        "UMT stage 2: vtc",
        "one part",
    ]
    assert panels[0][1:] == ([1, 2], [1.0, 0.5])
    plot_loss_curves({"VideoMAE": mae, "UMT stage 2": umt2}, tmp_path / "loss.png")
    assert (tmp_path / "loss.png").stat().st_size > 1000
    video = torch.rand(3, 4, 8, 8)
    plot_reconstruction({"clip": video, "reconstruction": video}, tmp_path / "r.png", caption="what it shows")
    assert (tmp_path / "r.png").stat().st_size > 1000
