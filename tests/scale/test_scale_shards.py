"""``vidfm data shard`` on real clips, and the streaming dataset: rank/worker split, resume, trainer."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import tarfile
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from vidfm.cli import main
from vidfm.data.datasets import collate
from vidfm.data.decode import VideoReader
from vidfm.data.sampling import SamplingConfig
from vidfm.data.shards import ShardDataset, parse_size
from vidfm.train.trainer import TrainConfig, Trainer
from vidfm.utils import log

FIGHT = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "surv_fight"
N = 10
pytestmark = pytest.mark.skipif(not FIGHT.is_dir(), reason="../shared/data/surv_fight not present")


@pytest.fixture(autouse=True)
def _drop_cli_log_handlers():
    before = list(log.handlers)
    yield
    for handler in log.handlers[:]:
        if handler not in before:
            log.removeHandler(handler)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """N real clips (both classes) and one broken file, sharded at 32 px into ~40 KB tars."""
    root = tmp_path_factory.mktemp("shards")
    rows = list(csv.DictReader(open(FIGHT / "manifest.csv")))
    rows = rows[: N // 2] + rows[-(N // 2) :]
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with open(root / "m.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "caption"])
        for r in rows:
            w.writerow([str(FIGHT / r["path"]), r["label"], f"clip {r['path']}"])
        w.writerow([str(root / "broken.mp4"), "fight", "broken"])
    args = ["data", "shard", str(root / "m.csv"), str(root / "out"), "--size", "40KB", "--short-side", "32"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(args + ["--crf", "30"]) == 0
    return root, rows, printed.getvalue()


def test_shard_command_writes_resized_videos_with_labels_and_skips_broken(shards):
    root, rows, out = shards
    index = json.loads((root / "out" / "index.json").read_text())
    assert index["total"] == N and len(index["shards"]) >= 2
    assert [f["path"] for f in index["failed"]] == [
        str(root / "broken.mp4")
    ] and "1 of 11 videos failed" in out
    assert index["classes"] == {"label": ["fight", "noFight"]}
    keys = set()
    for s in index["shards"]:
        path = root / "out" / s["name"]
        assert s["bytes"] == path.stat().st_size <= parse_size("40KB") or s["count"] == 1
        with tarfile.open(path) as tar:
            names = tar.getnames()
            assert len(names) == 2 * s["count"]
            keys |= {n.split(".")[0] for n in names}
            meta = json.loads(tar.extractfile(names[0]).read())
            clip = tar.extractfile(names[1]).read()
        (root / "one.mp4").write_bytes(clip)
        with VideoReader(root / "one.mp4") as reader, VideoReader(meta["source"]) as source:
            # Still a video, resized to a 32 px short side, every frame kept.
            assert min(reader.info.width, reader.info.height) == 32 and reader.info.codec == "h264"
            assert reader.info.num_frames == source.info.num_frames == meta["frames"]
        row = next(r for r in rows if meta["source"].endswith(r["path"]))
        assert meta["labels"] == {"label": ["fight", "noFight"].index(row["label"])}
        assert meta["caption"] == f"clip {row['path']}"
    assert len(keys) == N
    assert parse_size("1GB") == 2**30 and parse_size("512 MB") == 2**29 and parse_size("1.5k") == 1536
    with pytest.raises(ValueError, match="size"):
        parse_size("a lot")


def _indices(ds: ShardDataset, epoch: int, start: int = 0, workers: int = 0) -> list[int]:
    ds.set_epoch(epoch, start)
    loader = DataLoader(ds, batch_size=ds.batch_size, collate_fn=collate, num_workers=workers)
    return [i for batch in loader for i in batch["index"].tolist()]


def test_stream_splits_by_rank_and_worker_and_resumes(shards):
    root = shards[0]
    ranks = [ShardDataset(root / "out", SamplingConfig(num_frames=4, stride=2), seed=5) for _ in range(2)]
    assert [ds.plan(2, rank, 2) for rank, ds in enumerate(ranks)] == [2, 2]  # (10 // 2) // 2
    per_rank = [_indices(ds, epoch=0) for ds in ranks]
    assert all(len(p) == 4 for p in per_rank) and not set(per_rank[0]) & set(per_rank[1])
    # Workers produce alternate batches; the loader's round-robin gives back the same order.
    assert _indices(ranks[0], epoch=0, workers=2) == per_rank[0]
    assert _indices(ranks[0], epoch=0, start=1) == per_rank[0][2:]  # resume skips whole batches
    assert _indices(ranks[0], epoch=1) != per_rank[0]  # a new order each epoch
    item = next(iter(ranks[0]))
    assert item["video"].shape == (4, 32, 32, 3) and item["video"].dtype == torch.uint8
    assert item["path"].startswith("shard-") and set(item["labels"]) == {"label"}


class _MeanTask(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(3, 1)

    def forward(self, batch: dict, generator: torch.Generator) -> dict:
        x = batch["video"].float().div(255).mean((1, 2, 3))  # [B,3]
        return {"loss": (self.proj(x)[:, 0] - batch["labels"]["label"].float()).pow(2).mean()}


def test_trainer_streams_shards_and_resumes_mid_epoch(shards, tmp_path):
    root = shards[0]

    def fit(run: Path, steps: int) -> list[float]:
        torch.manual_seed(0)
        ds = ShardDataset(root / "out", SamplingConfig(num_frames=2, stride=2), seed=1)
        c = TrainConfig(
            steps=steps, batch_size=3, lr=1e-2, min_lr=1e-2, warmup_steps=0, log_every=1, ckpt_every=0, workers=0,
            device="cpu", precision="fp32", progress=False,
        )  # fmt: skip
        trainer = Trainer(_MeanTask(), c, run, ds, collate)
        trainer.fit()
        return [r["loss"] for r in trainer.history]

    # Constant lr: a cosine depends on the run length. 3 batches of 3 per epoch: steps 4-5 in epoch 1.
    full = fit(tmp_path / "full", 5)
    assert fit(tmp_path / "part", 2) == full[:2]
    assert fit(tmp_path / "part", 5) == full[2:]
