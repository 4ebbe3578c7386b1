"""``vidfm eval``: checkpoints × tasks -> one table and a report; one encoder pass per manifest; results
reused on a re-run; n/a and failed cells; the retrieval wiring (with a stand-in retrieval result)."""

from __future__ import annotations

import csv
import dataclasses
import importlib.machinery
import sys
import types

import pytest

from vidfm.cli import main
from vidfm.eval import suite


def test_parse_specs(tiny_run) -> None:
    tasks = suite.parse_tasks(["probe:digits-motion:digit", "retrieval:/x/m.csv", "finetune:/a/b.csv:label"])
    assert [(t.kind, t.data, t.column) for t in tasks] == [
        ("probe", "digits-motion", "digit"),
        ("retrieval", "/x/m.csv", None),
        ("finetune", "/a/b.csv", "label"),
    ]
    for bad in ("probe:digits-motion", "linear:x:y", "probe"):
        with pytest.raises(ValueError):
            suite.parse_tasks([bad])
    ckpts = suite.parse_checkpoints([f"mae={tiny_run}", "random", "baseline"])
    assert [(c.name, c.random_init, c.baseline) for c in ckpts] == [
        ("mae", False, False),
        ("random init", True, False),
        ("trivial baseline", False, True),
    ]
    assert ckpts[1].run == ckpts[0].run
    with pytest.raises(FileNotFoundError):
        suite.parse_checkpoints(["/no/such/run"])
    with pytest.raises(ValueError, match="random"):
        suite.parse_checkpoints(["random"])


def test_eval_table_report_and_reuse(tiny_run, digits, tmp_path, monkeypatch, capsys) -> None:
    import vidfm.eval.attentive as attentive
    import vidfm.eval.frozen as frozen

    calls = {"tokens": 0, "pooled": 0}

    def counted(fn, key):  # noqa: ANN001, ANN202
        def wrapper(*a, **k):  # noqa: ANN002, ANN003, ANN202
            calls[key] += 1
            return fn(*a, **k)

        return wrapper

    monkeypatch.setattr(attentive, "split_tokens", counted(attentive.split_tokens, "tokens"))
    monkeypatch.setattr(frozen, "split_features", counted(frozen.split_features, "pooled"))
    out = tmp_path / "report"
    args = ["eval", "--checkpoints", f"pre={tiny_run}", "random", "baseline", "--tasks"]
    args += [f"probe:{digits}:digit", f"probe:{digits}:motion", f"attentive:{digits}:motion"]
    args += [
        "--out",
        str(out),
        "--workers",
        "0",
        "--attentive-epochs",
        "1",
        "--attentive-lrs",
        "1e-3",
        "--no-progress",
    ]
    assert main(args) == 0
    # one pass per checkpoint: tokens for the two encoders (pooled features derived), pooled for the baseline
    assert calls == {"tokens": 2, "pooled": 1}
    with open(out / "results.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["task", "metric", "chance", "pre", "random init", "trivial baseline"]
    table = {(r[0].split(":")[0] + ":" + r[0].split(":")[-1], r[1]): r[2:] for r in rows[1:]}
    assert set(table) == {
        ("probe:digit", "linear top-1"),
        ("probe:digit", "kNN top-1"),
        ("probe:motion", "linear top-1"),
        ("probe:motion", "kNN top-1"),
        ("attentive:motion", "attentive top-1"),
    }
    assert table[("attentive:motion", "attentive top-1")][3] == "n/a"  # the baseline has no tokens
    for values in table.values():
        assert all(v == "n/a" or 0.0 <= float(v) <= 1.0 for v in values)
    for name in ("results.md", "report.md", "report.html", "accuracy.png", "loss.png"):
        assert (out / name).is_file(), name
    html = (out / "report.html").read_text()
    assert '<img src="accuracy.png"' in html and '<img src="loss.png"' in html and "trivial baseline" in html
    first = (out / "results.md").read_text()
    assert first.strip() in capsys.readouterr().out

    # a second run reuses every stored result: no encoder pass at all
    def fail(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("recomputed")

    monkeypatch.setattr(attentive, "split_tokens", fail)
    monkeypatch.setattr(frozen, "split_features", fail)
    assert main(args) == 0
    assert (out / "results.md").read_text() == first


def test_a_failed_task_is_reported_and_the_rest_goes_on(tiny_run, digits, tmp_path, monkeypatch) -> None:
    import vidfm.eval.attentive as attentive

    def broken(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("boom")

    monkeypatch.setattr(attentive, "attentive_probe", broken)
    out = tmp_path / "r"
    args = [
        "eval",
        "--checkpoints",
        str(tiny_run),
        "--tasks",
        f"attentive:{digits}:digit",
        f"probe:{digits}:digit",
    ]
    assert main(args + ["--out", str(out), "--workers", "0", "--no-progress"]) == 1
    md = (out / "results.md").read_text()
    assert "| error |" in md and "linear top-1" in md
    assert "RuntimeError: boom" in (out / "report.md").read_text()
    assert not list((out / "results").glob("*attentive*"))  # an error is retried next time, not stored


@dataclasses.dataclass
class _FakeRetrieval:  # the fields of vidfm.eval.retrieval.RetrievalResult
    t2v: dict
    v2t: dict
    num_videos: int
    num_captions: int
    examples: list


def test_retrieval_wiring(tiny_run, digits, tmp_path, monkeypatch) -> None:
    out = tmp_path / "ret"
    args = ["eval", "retrieval", "--checkpoint", str(tiny_run), "--data", str(digits)]
    args += ["--out", str(out), "--workers", "0", "--no-progress"]
    # a pre-training run has no text side: a clear error, not a crash
    assert main(args) == 1
    assert "needs a video-language run" in (out / "report.md").read_text()

    videos = sorted((digits.parent / "videos").glob("*.mp4"))[:3]
    seen = {}

    def evaluate_retrieval(
        run_dir, manifest, split="test", batch_size=16, workers=0, device="cpu", progress=True
    ):  # noqa: ANN001, ANN202
        seen.update(run_dir=run_dir, manifest=manifest, split=split)
        return _FakeRetrieval(
            t2v={"R@1": 50.0, "R@5": 75.0, "R@10": 100.0, "MdR": 2.0, "MnR": 2.5},
            v2t={"R@1": 25.0, "R@5": 50.0, "R@10": 100.0, "MdR": 3.0, "MnR": 3.5},
            num_videos=3,
            num_captions=3,
            examples=[
                (str(v), f"a handwritten digit {i} moving", i + 1, str(videos[0]))
                for i, v in enumerate(videos)
            ],
        )

    fake = types.ModuleType("vidfm.eval.retrieval")
    fake.__spec__ = importlib.machinery.ModuleSpec("vidfm.eval.retrieval", None)
    fake.evaluate_retrieval = evaluate_retrieval  # stands in for a trained video-language run
    monkeypatch.setitem(sys.modules, "vidfm.eval.retrieval", fake)
    monkeypatch.setattr(suite, "is_video_language", lambda cfg: True)
    assert main(args) == 0
    assert seen == {"run_dir": tiny_run, "manifest": str(digits), "split": "test"}
    md = (out / "results.md").read_text()
    assert "| t2v R@1 (%) | — | 50.000 |" in md and "| v2t MdR | — | 3.000 |" in md
    pictures = list(out.glob("retrieval_*.png"))
    assert len(pictures) == 1 and "![Retrieval examples" in (out / "report.md").read_text()
