"""The decoded-clip store: same pixels as decoding, every split and label kept, failures reported."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from videos import encode_video

from vidfm.cli import main as cli_main
from vidfm.data.clip_store import ClipStoreDataset, read_store_index, write_clip_store
from vidfm.data.config import DataConfig, build_dataset
from vidfm.data.datasets import DataError, VideoDataset, collate, read_manifest
from vidfm.data.sampling import SamplingConfig


def _manifest(tmp_path: Path, lengths: list[int], broken: bool = True) -> Path:
    rows = []
    rng = np.random.default_rng(0)
    for i, n in enumerate(lengths):
        frames = rng.integers(0, 255, (n, 24, 32, 3), dtype=np.uint8)
        encode_video(tmp_path / f"v{i}.mp4", frames)
        rows.append({"path": f"v{i}.mp4", "label": "ab"[i % 2], "caption": f"clip {i}", "split": "train"})
    rows[-1]["split"] = "test"
    if broken:
        (tmp_path / "bad.mp4").write_bytes(b"not a video")
        rows.append({"path": "bad.mp4", "label": "a", "caption": "bad", "split": "train"})
        rows.append({"path": "missing.mp4", "label": "b", "caption": "gone", "split": "train"})
    path = tmp_path / "m.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, ["path", "label", "caption", "split"])
        w.writeheader()
        w.writerows(rows)
    return path


def test_store_holds_the_decoded_pixels_and_reports_failures(tmp_path):
    manifest = _manifest(tmp_path, [20, 9, 30])
    sampling = SamplingConfig(num_frames=4, stride=2)
    records = read_manifest(manifest)
    index = write_clip_store(records, tmp_path / "store", sampling, short_side=16, clips_per_video=3)
    assert sorted(Path(f["path"]).name for f in index["failed"]) == ["bad.mp4", "missing.mp4"]
    # 9 frames at stride 2 hold 2 distinct 4-frame windows (one is the centred one), stored once each.
    assert [v["count"] for v in index["videos"]] == [3, 2, 3]
    assert index["shape"] == [8, 4, 16, 16, 3]

    test = ClipStoreDataset(tmp_path / "store", split="test")
    decoded = VideoDataset(read_manifest(manifest, split="test"), sampling, short_side=16, train=False)
    item, ref = test[0], decoded[0]
    assert item["video"].dtype == torch.uint8 and item["video"].shape == (4, 16, 16, 3)
    # The first stored clip is the centred test clip VideoDataset decodes.
    assert torch.equal(item["video"], ref["video"])
    assert item["caption"] == "clip 2" and item["labels"] == ref["labels"]

    train = ClipStoreDataset(tmp_path / "store", split="train", seed=1)
    assert len(train) == 2  # the two failed rows are dropped (logged), never fatal
    assert train.failed_paths() and train.failure_counts() == (2, 4)
    chosen = {tuple(train[(e, 0)]["video"][:, 0, 0, 0].tolist()) for e in range(12)}
    assert len(chosen) > 1  # epochs pick different stored windows
    assert torch.equal(train[(3, 1)]["video"], train[(3, 1)]["video"])  # deterministic per (epoch, index)


def test_resident_batches_equal_items(tmp_path):
    manifest = _manifest(tmp_path, [12, 12, 12, 12], broken=False)
    write_clip_store(read_manifest(manifest), tmp_path / "s", SamplingConfig(num_frames=4, stride=1), 8, 2)
    ds = ClipStoreDataset(tmp_path / "s", split=None, seed=3, resident=True)
    keys = [(2, 3), (2, 0), (5, 1)]
    items = [ds[k] for k in keys]
    ds.to_device(torch.device("cpu"))
    batch = ds.batch(keys)
    assert torch.equal(batch["video"], torch.stack([it["video"] for it in items]))
    assert batch["labels"]["label"].tolist() == [it["labels"]["label"] for it in items]
    assert batch["caption"] == [it["caption"] for it in items]
    assert batch["index"].tolist() == [3, 0, 1]


def test_data_config_picks_the_store_and_checks_it_matches(tmp_path):
    manifest = _manifest(tmp_path, [12, 12], broken=False)
    write_clip_store(read_manifest(manifest), tmp_path / "s", SamplingConfig(num_frames=4, stride=1), 8, 1)
    cfg = DataConfig(manifest=str(manifest), split=None, num_frames=4, stride=1, short_side=8)
    ds = build_dataset(DataConfig(**{**cfg.__dict__, "clip_store": str(tmp_path / "s")}))
    assert isinstance(ds, ClipStoreDataset) and len(ds) == 2
    with pytest.raises(ValueError, match="stride: store 1 != data 2"):
        build_dataset(DataConfig(**{**cfg.__dict__, "clip_store": str(tmp_path / "s"), "stride": 2}))
    with pytest.raises(ValueError, match="needs data.clip_store"):
        build_dataset(DataConfig(**{**cfg.__dict__, "resident": True}))
    (tmp_path / "s" / "clips.u8").write_bytes(b"\0" * 10)  # truncated
    with pytest.raises(DataError, match="rewrite the store"):
        read_store_index(tmp_path / "s")


def test_cli_cache_clips(tmp_path, capsys):
    manifest = _manifest(tmp_path, [10, 14])
    code = cli_main(
        ["data", "cache-clips", str(manifest), str(tmp_path / "out"), "--frames", "4", "--stride", "2",
         "--short-side", "16", "--clips-per-video", "2"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "wrote 4 clips of 2 videos" in out and "2 of 4 videos failed" in out and "bad.mp4" in out


def test_trainer_resident_store_equals_the_loader_path(tmp_path):
    """Same keys, same rows: a resident run (batches gathered on the device) repeats a worker-loader run
    step for step, and resumes like one."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "train"))
    from train_toys import MaskedToyTask

    from vidfm.train.trainer import TrainConfig, Trainer

    manifest = _manifest(tmp_path, [6] * 12, broken=False)
    write_clip_store(read_manifest(manifest), tmp_path / "s", SamplingConfig(num_frames=2, stride=1), 4, 3)
    c = dict(steps=5, batch_size=4, lr=1e-2, min_lr=1e-2, log_every=1, ckpt_every=0, device="cpu",
             precision="fp32", progress=False, seed=3)  # fmt: skip

    def run(name: str, resident: bool, workers: int, steps: int = 5) -> list[float]:
        torch.manual_seed(0)
        ds = ClipStoreDataset(tmp_path / "s", split="train", seed=3, resident=resident)
        cfg = TrainConfig(**{**c, "steps": steps, "workers": workers})
        trainer = Trainer(MaskedToyTask(), cfg, tmp_path / name, ds, collate)
        trainer.fit()
        return [r["loss"] for r in trainer.history]

    loader = run("loader", False, 1)
    assert run("resident", True, 0) == loader
    run("resumed", True, 0, steps=2)
    assert run("resumed", True, 0) == loader[2:]


def test_with_clip_store_writes_once_and_rewrites_for_other_data(tmp_path):
    from vidfm.data.config import with_clip_store

    manifest = _manifest(tmp_path, [8, 8], broken=False)
    cfg = DataConfig(manifest=str(manifest), split=None, num_frames=4, stride=1, short_side=8)
    first = with_clip_store(cfg, str(tmp_path / "s"))
    stamp = (tmp_path / "s" / "clips.u8").stat().st_mtime_ns
    assert with_clip_store(cfg, str(tmp_path / "s")) == first  # reused, not rewritten
    assert (tmp_path / "s" / "clips.u8").stat().st_mtime_ns == stamp
    with_clip_store(DataConfig(**{**cfg.__dict__, "num_frames": 2}), str(tmp_path / "s"))
    assert read_store_index(tmp_path / "s")["sampling"]["num_frames"] == 2


def test_failures_are_counted_per_split_and_the_index_parsed_once(tmp_path, monkeypatch):
    import vidfm.data.clip_store as clip_store

    manifest = _manifest(tmp_path, [8, 8, 8])  # bad.mp4 and missing.mp4 are train rows
    with open(manifest, "a", newline="") as f:  # a test row whose video is missing too
        csv.writer(f).writerow(["gone_test.mp4", "a", "lost", "test"])
    write_clip_store(read_manifest(manifest), tmp_path / "s", SamplingConfig(num_frames=4, stride=1), 8, 1)
    train = ClipStoreDataset(tmp_path / "s", split="train")
    test = ClipStoreDataset(tmp_path / "s", split="test")
    both = ClipStoreDataset(tmp_path / "s", split=None)
    assert train.failure_counts() == (2, 4)  # v0, v1 stored; bad, missing failed
    assert sorted(Path(p).name for p in train.failed_paths()) == ["bad.mp4", "missing.mp4"]
    assert test.failure_counts() == (1, 2)  # v2 stored; gone_test failed: not the train failures
    assert [Path(p).name for p in test.failed_paths()] == ["gone_test.mp4"]
    assert both.failure_counts() == (3, 6)
    assert "1 of 2 files failed" in test.summary()

    calls = []
    read = clip_store.read_store_index
    monkeypatch.setattr(clip_store, "read_store_index", lambda root: calls.append(root) or read(root))
    cfg = DataConfig(manifest=str(manifest), split="test", num_frames=4, stride=1, short_side=8)
    ds = build_dataset(DataConfig(**{**cfg.__dict__, "clip_store": str(tmp_path / "s")}))
    assert len(ds) == 1 and len(calls) == 1  # the match check and the dataset share one parse


def test_a_version_1_store_still_reads_and_is_rewritten_by_with_clip_store(tmp_path):
    import json

    from vidfm.data.config import with_clip_store

    manifest = _manifest(tmp_path, [8, 8])
    cfg = DataConfig(manifest=str(manifest), split=None, num_frames=4, stride=1, short_side=8)
    with_clip_store(cfg, str(tmp_path / "s"))
    path = tmp_path / "s" / "store.json"
    index = json.loads(path.read_text())
    index["version"] = 1  # before records named their failure
    for r in index["records"]:
        r.pop("failed", None)
    path.write_text(json.dumps(index))
    # It cannot tell which split lost which video: every failure of the store is reported.
    assert ClipStoreDataset(tmp_path / "s", split="train").failure_counts() == (2, 3)
    with_clip_store(cfg, str(tmp_path / "s"))
    assert read_store_index(tmp_path / "s")["version"] == 2
