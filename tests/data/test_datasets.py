"""Manifests, folder trees, VideoDataset (failures, determinism, views) and the DataLoader glue."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vidfm.data.datasets import (
    DataError,
    VideoDataset,
    VideoRecord,
    build_loader,
    collate,
    folder_records,
    group_captions,
    read_manifest,
)
from vidfm.data.sampling import SamplingConfig
from vidfm.utils import log

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from videos import encode_video, moving_square  # noqa: E402

SURV = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "surv_fight"


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """Six tiny H.264 clips (24 frames, 48x64) and two corrupt files, in one folder."""
    root = tmp_path_factory.mktemp("clips")
    for i in range(6):
        frames = moving_square(24, 64, step=1 + i, seed=i)[:, 8:56]  # [24, 48, 64, 3]
        encode_video(root / f"v{i}.mp4", frames, 12, "libx264", options={"g": "6"})
    for name in ("bad0.mp4", "bad1.mp4"):
        (root / name).write_bytes(np.random.default_rng(len(name)).integers(0, 256, 3000, np.uint8).tobytes())
    return root


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def logs():
    handler = Collect()
    log.addHandler(handler)
    old = log.level
    log.setLevel(logging.INFO)
    yield handler.messages
    log.removeHandler(handler)
    log.setLevel(old)


def test_read_manifest_labels_captions_splits(tmp_path):
    m = write_csv(
        tmp_path / "m.csv",
        "path,label,digit,caption,split",
        [
            "a.mp4,cat,10,a cat,train",
            "b.mp4,dog,2,,test",
            f"{tmp_path / 'sub' / 'c.mp4'},cat,,c one,train",
            f"{tmp_path / 'sub' / 'c.mp4'},cat,,c two,train",
        ],
    )
    every = read_manifest(m)
    assert every.classes == {"label": ["cat", "dog"], "digit": ["2", "10"]}  # numeric order for integers
    assert every[0] == VideoRecord(str(tmp_path / "a.mp4"), {"label": 0, "digit": 1}, "a cat", "train")
    assert every[1].caption is None and every[2].labels["digit"] == -1  # empty cell = unlabelled
    assert every[2].path == str(tmp_path / "sub" / "c.mp4")
    test = read_manifest(m, split="test")
    assert [r.labels for r in test] == [{"label": 1, "digit": 0}]  # ids from the whole manifest
    assert test.classes == every.classes
    only = read_manifest(m, label_columns=["label"], caption_column="none")
    assert list(only[0].labels) == ["label"] and only[0].caption is None
    videos, captions = group_captions(every)
    assert [Path(v.path).name for v in videos] == ["a.mp4", "b.mp4", "c.mp4"]
    assert captions == [["a cat"], [], ["c one", "c two"]]
    with pytest.raises(DataError, match="'path' column"):
        read_manifest(write_csv(tmp_path / "x.csv", "file,label", ["a.mp4,cat"]))
    with pytest.raises(DataError, match="no 'split' column"):
        read_manifest(write_csv(tmp_path / "y.csv", "path,label", ["a.mp4,cat"]), split="train")
    with pytest.raises(DataError, match="not in"):
        read_manifest(m, label_columns=["colour"])
    with pytest.raises(DataError, match="not found"):
        read_manifest(tmp_path / "missing.csv")


def test_folder_records(tmp_path):
    for cls, names in {"walk": ["1.mp4", "deep/2.avi"], "run": ["3.webm", "notes.txt"]}.items():
        for n in names:
            (tmp_path / cls / n).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / cls / n).write_bytes(b"x")
    recs = folder_records(tmp_path)
    assert recs.classes == {"label": ["run", "walk"]}
    assert sorted((Path(r.path).name, r.labels["label"]) for r in recs) == [
        ("1.mp4", 1),
        ("2.avi", 1),
        ("3.webm", 0),
    ]
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    (tmp_path / "empty" / "cls" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no videos"):
        folder_records(tmp_path / "empty")


def test_items_views_and_collate(clips):
    recs = [VideoRecord(str(clips / f"v{i}.mp4"), {"y": i}) for i in range(3)]
    ds = VideoDataset(recs, SamplingConfig("dense", 4, 2), short_side=32, seed=1)
    item = ds[1]
    assert item["video"].dtype == torch.uint8 and item["video"].shape == (4, 32, 32, 3)
    assert item["labels"] == {"y": 1} and item["index"] == 1 and item["path"].endswith("v1.mp4")
    assert torch.equal(ds[1]["video"], item["video"])  # same (seed, epoch, index) -> same clip
    ds.set_epoch(1)
    assert torch.equal(ds[(0, 1)]["video"], item["video"])  # (epoch, index) keys override set_epoch
    firsts = {ds[(e, 1)]["video"][0].float().mean().item() for e in range(6)}
    assert len(firsts) > 1  # other epochs, other clips
    multi = VideoDataset(recs, SamplingConfig("segment", 4), short_side=24, views=3, crop_square=False)
    assert not multi.train
    v = multi[0]["video"]
    assert v.shape == (3, 4, 24, 32, 3)  # [V, T, H, W, C], 48x64 resized to short side 24, no crop
    assert torch.equal(multi[0]["video"], v)  # test views are deterministic
    batch = collate([ds[0], ds[2]])
    assert batch["video"].shape == (2, 4, 32, 32, 3)
    assert batch["labels"]["y"].tolist() == [0, 2] and batch["labels"]["y"].dtype == torch.int64
    assert batch["index"].tolist() == [0, 2] and batch["caption"] == [None, None] and len(batch["path"]) == 2


def test_corrupt_file_is_logged_once_replaced_and_summarised(clips, logs):
    recs = [VideoRecord(str(clips / f"v{i}.mp4"), {"y": i}) for i in range(6)]
    recs.insert(2, VideoRecord(str(clips / "bad0.mp4"), {"y": 99}))
    ds = VideoDataset(
        recs, SamplingConfig("dense", 4, 2), short_side=32, max_failure_fraction=0.5, min_seen=1
    )
    for epoch in range(2):
        ds.set_epoch(epoch)
        items = [ds[i] for i in range(len(ds))]
        replaced = items[2]
        assert (
            replaced["index"] != 2
            and replaced["labels"]["y"] != 99
            and not replaced["path"].endswith("bad0.mp4")
        )
    assert sum("bad0.mp4" in m for m in logs) == 1  # once, although it failed in both epochs
    assert ds.failure_counts() == (1, 7) and ds.failed_paths() == [str(clips / "bad0.mp4")]
    text = ds.summary()
    assert text.startswith("1 of 7 files failed") and "bad0.mp4" in text
    assert ds[2]["index"] == ds[2]["index"]  # the replacement is deterministic


def test_too_many_failures_raise_data_error(clips):
    recs = [VideoRecord(str(clips / f"v{i}.mp4"), {"y": i}) for i in range(4)]
    recs += [VideoRecord(str(clips / "bad0.mp4"), {"y": 0}), VideoRecord(str(clips / "bad1.mp4"), {"y": 0})]
    ds = VideoDataset(recs, SamplingConfig("dense", 4, 2), short_side=32, min_seen=6)
    with pytest.raises(DataError, match="bad0.mp4"):
        for i in range(len(ds)):
            ds[i]
    failed, tried = ds.failure_counts()
    assert failed == 2 and tried == 6
    fresh = VideoDataset(recs, SamplingConfig("dense", 4, 2), short_side=32, min_seen=6)
    message = first_data_error(build_loader(fresh, batch_size=2, workers=2))
    assert "above max_failure_fraction" in message and "bad0.mp4" in message  # raised in a worker


def first_data_error(loader) -> str:
    """Iterate ``loader`` and return the DataError text. The traceback is dropped so the loader is freed
    at once: left to the cyclic GC (the re-raising frame holds its exception), PyTorch's worker shutdown
    stalls 5 s per worker."""
    try:
        for _ in loader:
            pass
    except DataError as e:
        e.__traceback__ = None
        return str(e)
    return ""


def test_loader_with_workers_is_deterministic_and_shares_failure_counts(clips):
    recs = [VideoRecord(str(clips / f"v{i}.mp4"), {"y": i}) for i in range(6)]
    recs.append(VideoRecord(str(clips / "bad1.mp4"), {"y": 6}))

    def run(workers: int) -> tuple[list[dict], VideoDataset]:
        ds = VideoDataset(
            recs, SamplingConfig("dense", 4, 2), short_side=32, seed=3, max_failure_fraction=0.5
        )
        loader = build_loader(ds, batch_size=3, shuffle=True, workers=workers, seed=5)
        epochs = [list(loader) for _ in range(2)]  # the sampler advances the epoch by itself
        return [b for e in epochs for b in e], ds

    a, ds_a = run(2)
    b, _ = run(2)
    c, _ = run(0)
    assert len(a) == 6 and a[0]["video"].shape == (3, 4, 32, 32, 3)
    for x, y, z in zip(a, b, c, strict=True):
        assert torch.equal(x["video"], y["video"]) and torch.equal(x["index"], y["index"])
        assert torch.equal(x["video"], z["video"])  # workers or not, the same batches
    assert not torch.equal(a[0]["index"], a[3]["index"]) or not torch.equal(a[0]["video"], a[3]["video"])
    assert ds_a.failure_counts() == (1, 7)  # counted in the workers, visible in the main process
    assert "bad1.mp4" in ds_a.summary()


@pytest.mark.skipif(not SURV.is_dir(), reason="../shared/data/surv_fight not present")
def test_real_manifest():
    recs = read_manifest(SURV / "manifest.csv", split="test", label_columns=["label"])
    assert len(recs) == 91 and recs.classes == {"label": ["fight", "noFight"]}
    ds = VideoDataset(recs[:2], SamplingConfig("dense", 16, 4), short_side=112, train=False)
    item = ds[0]
    assert item["video"].shape == (16, 112, 112, 3) and item["labels"]["label"] in (0, 1)
