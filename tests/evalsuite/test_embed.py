"""``vidfm embed``: a folder to .npy with paths; an unreadable file is listed and skipped; rows do not
depend on how the work was cut into parts; an interrupted export redoes only its missing part."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from vidfm.cli import main
from vidfm.utils import log


@pytest.fixture
def folder(digits, tmp_path):
    root = tmp_path / "videos"
    (root / "sub").mkdir(parents=True)
    for i, video in enumerate(sorted((digits.parent / "videos").glob("*.mp4"))[:5]):
        shutil.copy(video, root / ("sub" if i % 2 else "") / video.name)
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video" * 10)
    return root


def _embed(folder, run, out, *extra: str) -> int:
    args = [
        "embed",
        str(folder),
        "--checkpoint",
        str(run),
        "--out",
        str(out),
        "--workers",
        "0",
        "--no-progress",
    ]
    return main(args + list(extra))


def test_embed_folder_resumable(folder, tiny_run, tmp_path, monkeypatch, capsys, caplog) -> None:
    import vidfm.eval.features as features

    out = tmp_path / "emb.npy"
    monkeypatch.setattr(log, "handlers", [*log.handlers, caplog.handler])  # vidfm's logger does not propagate
    assert _embed(folder, tiny_run, out, "--part-size", "2") == 0
    # The log and the summary tell the same story: the broken file is skipped, never "replaced".
    printed = capsys.readouterr().out
    assert f"unreadable video, skipped: {folder / 'broken.mp4'}" in caplog.text
    assert "1 of 6 videos could not be decoded and were skipped" in caplog.text
    assert "(1 unreadable, skipped)" in printed and "replaced" not in printed + caplog.text
    x = np.load(out)
    paths = (tmp_path / "emb.npy.paths.txt").read_text().splitlines()
    failed = (tmp_path / "emb.npy.failed.txt").read_text().splitlines()
    assert x.shape == (5, 32) and x.dtype == np.float32 and np.isfinite(x).all()
    assert len(paths) == 5 and paths == sorted(paths) and all("broken" not in p for p in paths)
    assert failed == [str(folder / "broken.mp4")]

    # the same rows whatever the part size
    assert _embed(folder, tiny_run, tmp_path / "one.npy", "--part-size", "10") == 0
    np.testing.assert_allclose(np.load(tmp_path / "one.npy"), x, atol=1e-6)

    # interrupted before the last part: only that part is encoded again
    out.unlink()
    (tmp_path / "emb.npy.parts" / "part-00002.npz").unlink()
    calls = []
    real = features.extract_features
    monkeypatch.setattr(features, "extract_features", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert _embed(folder, tiny_run, out, "--part-size", "2") == 0
    assert len(calls) == 1
    np.testing.assert_allclose(np.load(out), x, atol=1e-6)


def test_embed_output_formats(folder, tiny_run, tmp_path, capsys) -> None:
    assert _embed(folder, tiny_run, tmp_path / "emb.txt") == 2
    assert "vidfm embed: error: --out must end in .npy or .parquet" in capsys.readouterr().err
    try:
        import pyarrow.parquet as pq
    except ImportError:
        assert _embed(folder, tiny_run, tmp_path / "emb.parquet") == 2
        assert "needs pyarrow" in capsys.readouterr().err
        return
    assert _embed(folder, tiny_run, tmp_path / "emb.parquet") == 0
    table = pq.read_table(tmp_path / "emb.parquet")
    assert table.num_rows == 5 and set(table.column_names) == {"path", "embedding"}
