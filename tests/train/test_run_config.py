"""A run folder records the config of each training segment; a resume that would change anything but the
step budget (or settings that cannot change the weights) is refused unless forced."""

from __future__ import annotations

import logging

import pytest
import torch
import yaml
from train_toys import LinearToyTask, ToyVideos, collate

from vidfm.errors import RunFolderError, UserError
from vidfm.train.run_config import differences
from vidfm.train.trainer import TrainConfig, Trainer
from vidfm.utils import log


def _cfg(**kw) -> TrainConfig:
    base = dict(steps=2, batch_size=4, lr=1e-2, warmup_steps=0, log_every=1, ckpt_every=1, workers=0)
    return TrainConfig(**{**base, "device": "cpu", "precision": "fp32", "progress": False, **kw})


def _fit(run_dir, cfg: TrainConfig, force: bool = False) -> dict:
    torch.manual_seed(0)
    return Trainer(LinearToyTask(), cfg, run_dir, ToyVideos(16), collate, force=force).fit()


def _segments(run_dir) -> dict[str, dict]:
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted((run_dir / "configs").glob("*.yaml"))}


@pytest.fixture
def logs(caplog, monkeypatch):
    monkeypatch.setattr(log, "handlers", [*log.handlers, caplog.handler])  # vidfm's logger does not propagate
    caplog.set_level(logging.INFO, logger="vidfm")
    return caplog


def test_segments_budget_refusal_and_force(tmp_path, logs):
    run = tmp_path / "run"
    assert _fit(run, _cfg())["step"] == 2
    assert list(_segments(run)) == ["step-0000000.yaml"]
    # Interrupted-and-resumed or re-run with the same config: no new segment.
    assert _fit(run, _cfg(workers=0))["steps_this_run"] == 0
    assert list(_segments(run)) == ["step-0000000.yaml"]

    # A longer budget is an ordinary resume: a second segment, logged as allowed.
    assert _fit(run, _cfg(steps=4))["step"] == 4
    seg = _segments(run)
    assert [s["steps"] for s in seg.values()] == [2, 4] and list(seg)[1] == "step-0000002.yaml"
    assert "steps: 2 -> 4" in logs.text

    # Another lr would make config.yaml describe weights it did not train: refused, nothing written.
    before = (run / "config.yaml").read_text()
    with pytest.raises(RunFolderError, match=r"another config \(lr: 0.01 -> 0.02\).*--force") as err:
        _fit(run, _cfg(steps=6, lr=2e-2))
    assert isinstance(err.value, UserError) and "\n" not in str(err.value)
    assert (run / "config.yaml").read_text() == before and len(_segments(run)) == 2

    # Forced: trains on, the new config beside the old ones, the difference logged.
    logs.clear()
    assert _fit(run, _cfg(steps=6, lr=2e-2), force=True)["step"] == 6
    seg = _segments(run)
    assert [(s["steps"], s["lr"]) for s in seg.values()] == [(2, 1e-2), (4, 1e-2), (6, 2e-2)]
    assert yaml.safe_load((run / "config.yaml").read_text())["lr"] == 2e-2
    assert "(--force)" in logs.text and "lr: 0.01 -> 0.02" in logs.text

    # A budget below what the run has trained cannot describe it either.
    with pytest.raises(RunFolderError, match="has trained 6 steps, more than train.steps=3"):
        _fit(run, _cfg(steps=3, lr=2e-2))


def test_fresh_start_replaces_old_segments(tmp_path):
    run = tmp_path / "run"
    _fit(run, _cfg())
    _fit(run, _cfg(steps=4))
    assert len(_segments(run)) == 2
    # resume off: a new run in the same folder, whatever its config; the old segments go.
    _fit(run, _cfg(steps=3, lr=5e-3, resume=False))
    assert [(s["steps"], s["lr"]) for s in _segments(run).values()] == [(3, 5e-3)]


def test_differences_are_by_dotted_key():
    old = {"train": {"lr": 1.0, "betas": [0.9, 0.95]}, "data": {"manifest": "a.csv"}}
    new = {"train": {"lr": 2.0, "betas": [0.9, 0.95]}, "data": {"manifest": "b.csv"}, "extra": 1}
    assert differences(old, new) == {
        "data.manifest": ("a.csv", "b.csv"),
        "extra": (None, 1),
        "train.lr": (1.0, 2.0),
    }
