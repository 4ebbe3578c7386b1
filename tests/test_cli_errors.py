"""Every user mistake a new user made in trying vidfm gives one line on stderr and exit code 2; bugs keep
their traceback; ``--debug`` shows it for mistakes too."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vidfm.cli import main
from vidfm.utils import log

# A 1-block, 32-wide VideoMAE on 8-frame 32² clips: building it costs nothing, so the tests time the errors.
SMALL = [
    "--set=encoder.depth=1", "--set=encoder.width=32", "--set=encoder.heads=2", "--set=encoder.img_size=32",
    "--set=encoder.num_frames=8", "--set=augment.size=32", "--set=data.num_frames=8",
    "--set=data.short_side=32", "--set=decoder.depth=1", "--set=decoder.width=32", "--set=decoder.heads=2",
    "--set=train.progress=false", "--set=train.ckpt_every=0",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _drop_cli_log_handlers():
    """``main`` adds a stderr handler bound to pytest's capture stream, closed after the test."""
    before = list(log.handlers)
    yield
    log.handlers[:] = before


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """8 digits-motion clips (8 frames, 32²); the train split has fewer than 16."""
    pytest.importorskip("sklearn")
    from vidfm.data.digits import make_digits_motion

    return make_digits_motion(tmp_path_factory.mktemp("digits"), n=8, num_frames=8, size=32, seed=0)


def one_line_error(capsys, argv: list[str]) -> str:
    """Run the CLI, assert exit 2 and a single stderr line without a traceback; return that line."""
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and " INFO " not in line]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_unknown_recipe(capsys, tmp_path):
    line = one_line_error(capsys, ["pretrain", "--recipe", "videomea:tiny", "--out", str(tmp_path)])
    assert line.startswith("vidfm pretrain: error: unknown recipe 'videomea'; did you mean videomae:tiny?")
    assert "recipes: videomae, mae_image, mvd" in line


def test_unknown_variant(capsys, tmp_path):
    line = one_line_error(capsys, ["pretrain", "--recipe", "videomae:tyni", "--out", str(tmp_path)])
    assert (
        "recipe videomae has no variant 'tyni'; did you mean videomae:tiny? (variants: videomae, videomae:tiny"
        in line
    )


def test_missing_run_folder(capsys, tmp_path, manifest):
    nothing = tmp_path / "no-such-run"
    for argv in (
        ["probe", "--checkpoint", str(nothing), "--data", str(manifest), "--label", "digit"],
        ["embed", str(manifest), "--checkpoint", str(nothing), "--out", str(tmp_path / "e.npy")],
        ["eval", "--checkpoints", str(nothing), "--tasks", f"probe:{manifest}:digit", "--out", str(tmp_path)],
    ):
        line = one_line_error(capsys, argv)
        assert str(nothing) in line and "does not exist" in line, line
    (tmp_path / "empty").mkdir()
    line = one_line_error(capsys, ["probe", "--checkpoint", str(tmp_path / "empty"), "--data", str(manifest),
                                   "--label", "digit"])  # fmt: skip
    assert line.endswith("is not a vidfm run folder (no config.yaml)")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.yaml").write_text("recipe: videomea\n")
    line = one_line_error(capsys, ["probe", "--checkpoint", str(tmp_path / "other"), "--data", str(manifest),
                                   "--label", "digit"])  # fmt: skip
    assert str(tmp_path / "other") in line and "'videomea'" in line, line


def test_misspelt_set_key(capsys, tmp_path):
    line = one_line_error(
        capsys, ["pretrain", "--recipe", "videomae:tiny", "--set", "train.step=5", "--out", str(tmp_path)]
    )
    assert line.startswith("vidfm pretrain: error: unknown key train.step; did you mean train.steps?")
    line = one_line_error(
        capsys, ["pretrain", "--recipe", "videomae:tiny", "--set", "steps=5", "--out", str(tmp_path)]
    )
    assert "unknown key steps; did you mean train.steps?" in line


def test_non_integer_set_value(capsys, tmp_path):
    line = one_line_error(
        capsys, ["pretrain", "--recipe", "videomae:tiny", "--set", "train.steps=abc", "--out", str(tmp_path)]
    )
    assert line == "vidfm pretrain: error: train.steps=abc: expected an integer"


def test_steps_below_warmup_names_the_setting(capsys, tmp_path, manifest):
    argv = ["pretrain", "--recipe", "videomae:tiny", *SMALL, f"--set=data.manifest={manifest}",
            "--set=data.split=none", "--set=train.batch_size=2", "--set=train.steps=5", "--out", str(tmp_path / "r")]  # fmt: skip
    line = one_line_error(capsys, argv)
    # the tiny recipe warms up for a tenth of its 500 steps
    assert (
        "train.warmup_steps=50 is more than train.steps=5: set it too, e.g. --set train.warmup_steps=0"
        in line
    )
    assert main([*argv, "--set=train.warmup_steps=0"]) == 0  # what the message says works


def test_umt_without_a_teacher_path(capsys, tmp_path, manifest):
    line = one_line_error(capsys, ["pretrain", "--recipe", "umt:tiny", f"--set=data.manifest={manifest}",
                                   "--out", str(tmp_path)])  # fmt: skip
    assert "teacher.path is not set" in line and "--set teacher.path=PATH" in line


def test_dataset_smaller_than_the_batch(capsys, tmp_path, manifest):
    line = one_line_error(capsys, ["pretrain", "--recipe", "videomae:tiny", *SMALL, f"--set=data.manifest={manifest}",
                                   "--set=train.steps=1", "--set=train.warmup_steps=0", "--out", str(tmp_path)])  # fmt: skip
    assert "fewer than one batch (train.batch_size=16): lower train.batch_size or give more videos" in line


def test_too_many_unreadable_videos_in_a_decoding_worker(capsys, tmp_path, manifest):
    """The DataLoader re-raises a worker's DataError with the worker's whole traceback in its message (74
    lines); the CLI keeps its last line."""
    rows = manifest.read_text().splitlines()
    for i in range(20):
        (tmp_path / f"broken{i}.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video" * 20)
    videos = [str(manifest.parent / r.split(",")[0]) for r in rows[1:3]] + [
        str(tmp_path / f"broken{i}.mp4") for i in range(20)
    ]
    bad = tmp_path / "bad.csv"
    bad.write_text("path\n" + "\n".join(videos) + "\n")
    line = one_line_error(capsys, ["pretrain", "--recipe", "videomae:tiny", *SMALL, f"--set=data.manifest={bad}",
                                   "--set=data.split=none", "--set=train.workers=1", "--set=train.batch_size=2",
                                   "--set=train.steps=4", "--set=train.warmup_steps=0", "--out", str(tmp_path / "r")])  # fmt: skip
    # Whichever the worker hit first: the failed fraction or an item whose replacements all failed.
    assert re.match(
        r"vidfm pretrain: error: .*(failed to decode, above max_failure_fraction|replacement videos failed too)",
        line,
    )
    assert "broken" in line
    assert "Original Traceback" not in line and "DataError:" not in line


def test_resume_with_another_config_refuses_then_force(capsys, tmp_path, manifest):
    run = tmp_path / "run"
    base = ["pretrain", "--recipe", "videomae:tiny", *SMALL, f"--set=data.manifest={manifest}", "--set=data.split=none",
            "--set=train.batch_size=2", "--set=train.steps=1", "--set=train.warmup_steps=0", "--out", str(run)]  # fmt: skip
    assert main(base) == 0
    capsys.readouterr()
    line = one_line_error(capsys, [*base, "--set=train.lr=0.01"])
    assert "was trained with another config (train.lr: 0.001 -> 0.01)" in line and "--force" in line
    assert main([*base, "--set=train.lr=0.01", "--set=train.steps=2", "--force"]) == 0
    assert sorted(p.name for p in (run / "configs").iterdir()) == ["step-0000000.yaml", "step-0000001.yaml"]


def test_debug_shows_the_traceback_and_bugs_keep_theirs(capsys, tmp_path, monkeypatch):
    for argv in (["--debug", "pretrain", "--recipe", "nope", "--out", str(tmp_path)],
                 ["pretrain", "--recipe", "nope", "--out", str(tmp_path), "--debug"]):  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith(
            "vidfm pretrain: error: unknown recipe"
        )

    import vidfm.commands.data as data

    def bug(*args, **kwargs):
        raise RuntimeError("an internal error")

    (tmp_path / "clip.mp4").write_bytes(b"")
    monkeypatch.setattr(data, "_inspect_one", bug)  # called by the handler of `vidfm data inspect`
    with pytest.raises(RuntimeError, match="an internal error"):  # not turned into a one-liner
        main(["data", "inspect", str(tmp_path)])


def test_one_line_keeps_the_last_line_of_a_worker_traceback():
    from vidfm.data.datasets import DataError
    from vidfm.errors import one_line

    text = (
        "Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n    raise DataError(...)\nvidfm.data.datasets.DataError: 3 of 4 videos failed'
    )
    assert one_line(DataError(text)) == "3 of 4 videos failed"
    assert one_line(ValueError("a\nb")) == "a | b"
