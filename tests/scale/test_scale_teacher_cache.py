"""Cached teacher targets: the cached loss equals the live one on the same view, a task built from the cache
never builds its teachers, the trainer picks views per epoch, and the CLI builds a cache for the MVD recipe
and trains from it."""

from __future__ import annotations

import json

import pytest
import torch
from scale_toys import mvd_task
from torch.utils.data import Dataset

from vidfm.cli import main
from vidfm.errors import UserError
from vidfm.teachers.cache import CachedProvider, TeacherCache, build_teacher_cache, view_of
from vidfm.teachers.targets import LiveTargets
from vidfm.train.checkpoint import trainable_state_dict
from vidfm.train.trainer import TrainConfig, Trainer
from vidfm.utils import log, make_generator


class Clips(Dataset):
    """uint8 clips [4,40,48,3]; item i of epoch e depends only on (e, i), like a dataset's frame jitter."""

    def __init__(self, n: int = 6) -> None:
        self.n, self.epoch, self.epochs = n, 0, []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.epochs.append(epoch)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        g = torch.Generator().manual_seed(1000 * self.epoch + index)
        return {
            "video": torch.randint(0, 256, (4, 40, 48, 3), generator=g, dtype=torch.uint8),
            "index": index,
        }


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    index = build_teacher_cache(mvd_task, Clips(), root, views=3, batch_size=4, max_bytes=30_000, seed=2)
    return root, index


def test_cache_index_and_storage_cost(cache_dir):
    root, index = cache_dir
    assert index["views"] == 3 and index["num_clips"] == 6 and len(index["shards"]) >= 2
    assert sorted(index["teachers"]) == ["teacher_image", "teacher_video"]
    # fp16 tokens + pooled of both teachers (image: 2 frames x 16 patches x 32; video: 2x4x4 x 48) per view.
    per_view = 2 * (2 * 16 * 32 + 32) + 2 * (2 * 16 * 48 + 48) + 4 * 4 + 1
    assert index["bytes_per_clip"] == 3 * per_view
    files = sum((root / s["name"]).stat().st_size for s in index["shards"])
    assert index["bytes_per_clip"] * 6 <= files < index["bytes_per_clip"] * 6 + 4096 * len(index["shards"])
    assert json.loads((root / "cache.json").read_text())["shards"] == index["shards"]
    assert TeacherCache(root).read(5, 2)["teacher_video.tokens"].dtype == torch.float16
    assert json.loads((root / "cache.json").read_text())["teachers"]["teacher_video"]["spec"] == {
        "dim": 48,
        "layers": [],
        "per_frame": False,
        "embed_dim": None,
    }


def test_bf16_storage_and_bad_arguments(tmp_path):
    index = build_teacher_cache(mvd_task, Clips(n=2), tmp_path, views=1, dtype="bf16", batch_size=2)
    read = TeacherCache(tmp_path).read(1, 0)
    assert read["teacher_image.tokens"].dtype == torch.bfloat16 and read["box"].shape == (4,)
    assert index["bytes_per_clip"] == 2 * (2 * 16 * 32 + 32) + 2 * (2 * 16 * 48 + 48) + 4 * 4 + 1
    with pytest.raises(ValueError, match="dtype"):
        build_teacher_cache(mvd_task, Clips(n=2), tmp_path / "x", dtype="fp8")
    with pytest.raises(FileNotFoundError, match="not a teacher cache"):
        TeacherCache(tmp_path / "missing")
    old = json.loads((tmp_path / "cache.json").read_text())
    (tmp_path / "cache.json").write_text(json.dumps({**old, "version": 1}))
    with pytest.raises(UserError, match="version 1.*rebuild it"):
        TeacherCache(tmp_path)


def test_cached_loss_equals_the_live_teachers_on_the_same_view(cache_dir):
    root, _ = cache_dir
    cache = TeacherCache(root)
    data, collate = cache.wrap_dataset(Clips(), None, seed=7)
    data.set_epoch(4)
    batch = collate([data[i] for i in range(5)])
    views = [view_of(7, 4, i, 3) for i in range(5)]
    assert len(set(views)) > 1
    # A clip's view v has the frames of the dataset's item at "epoch" v.
    inner = Clips()
    inner.set_epoch(views[1])
    assert torch.equal(batch["video"][1], inner[1]["video"])

    live, cached = mvd_task(), mvd_task(cache.targets())
    assert isinstance(cached.teacher_image, CachedProvider) and not list(cached.teacher_image.parameters())
    assert cached.teacher_image.spec.per_frame and cached.teacher_video.spec.dim == 48  # what tasks read
    assert cached.teacher_image.spec == live.teacher_image.spec
    # Teachers are built under a forked RNG: the cached task's student starts from the live one's weights.
    want_sd, got_sd = trainable_state_dict(live), trainable_state_dict(cached)
    assert want_sd.keys() == got_sd.keys() and all(torch.equal(want_sd[k], got_sd[k]) for k in want_sd)
    with torch.no_grad():  # same crops (batch["view"]), live teachers
        want = live(batch, make_generator(0, 1))
        got = cached(batch, make_generator(0, 1))
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=2e-3, atol=1e-4)  # fp16 storage
    # A batch whose crops differ from the cached view's would not match: the crop is really applied.
    other = dict(batch, view=dict(batch["view"], box=batch["view"]["box"].flip(0)))
    with torch.no_grad():
        assert not torch.allclose(cached(other, make_generator(0, 1))["loss"], want["loss"])


def test_a_task_built_from_the_cache_never_builds_its_teachers(cache_dir):
    root, _ = cache_dir
    targets = TeacherCache(root).targets()

    def build():  # noqa: ANN202
        raise AssertionError("a teacher was built")

    provider = targets.teacher("teacher_image", build)
    assert isinstance(provider, CachedProvider) and provider.spec.dim == 32
    with pytest.raises(UserError, match="teacher_video.*which this task does not use"):
        targets.check_all_used()
    targets.teacher("teacher_video", build)
    targets.check_all_used()
    with pytest.raises(UserError, match="holds no targets of 'teacher'"):
        targets.teacher("teacher", build)


def test_trainer_uses_cached_views_and_never_runs_teachers(cache_dir, tmp_path):
    root, _ = cache_dir
    task = mvd_task(TeacherCache(root).targets())
    assert not any(isinstance(m, LiveTargets) for m in task.modules())  # no teacher to run
    c = TrainConfig(
        steps=4, batch_size=3, lr=1e-3, warmup_steps=0, log_every=1, ckpt_every=0, workers=0, device="cpu",
        precision="fp32", progress=False, seed=7, teacher_cache=str(root),
    )  # fmt: skip
    clips = Clips()
    trainer = Trainer(task, c, tmp_path / "run", clips, None)
    trainer.fit()
    assert all(r["loss"] is not None for r in trainer.history) and len(trainer.history) == 4
    assert set(clips.epochs) <= {0, 1, 2}  # the dataset is only ever asked for cached views
    with pytest.raises(ValueError, match=r"another dataset \(len: cache \d+, this run 7\)"):
        Trainer(mvd_task(), c, tmp_path / "other", Clips(n=7), None)


@pytest.fixture(autouse=True)
def _drop_cli_log_handlers():
    before = list(log.handlers)
    yield
    for handler in log.handlers[:]:
        if handler not in before:
            log.removeHandler(handler)


def test_cache_targets_command_then_pretrain_from_the_cache(tmp_path, capsys):
    pytest.importorskip("sklearn")  # digits-motion ships scikit-learn's digits
    from vidfm.data.digits import make_digits_motion

    manifest = make_digits_motion(tmp_path / "digits", n=6, size=32, seed=0)
    small = [
        "encoder.depth=1",
        "encoder.width=32",
        "encoder.heads=2",
        "encoder.img_size=32",
        "augment.size=32",
    ]
    small += ["data.short_side=32", "decoder.depth=1", f"data.manifest={manifest}"]
    train = ["train.batch_size=2", "train.warmup_steps=0", "train.workers=0", "train.progress=false"]
    train += ["train.ckpt_every=0", "train.steps=1"]

    def sets(*items: str) -> list[str]:
        return [a for item in items for a in ("--set", item)]

    for recipe, out in (("mae_image:tiny", "img"), ("videomae:tiny", "vid")):
        args = ["pretrain", "--recipe", recipe, "--out", str(tmp_path / out)]
        assert main(args + sets(*small, "decoder.width=32", "decoder.heads=2", *train)) == 0
    mvd = sets(*small, *train, f"teachers.image={tmp_path / 'img'}", f"teachers.video={tmp_path / 'vid'}")
    args = ["data", "cache-targets", "--recipe", "mvd:tiny", "--out", str(tmp_path / "cache"), "--views", "2"]
    assert main(args + ["--workers", "0", "--batch", "3"] + mvd) == 0
    assert "MiB per clip (fp16)" in capsys.readouterr().out
    # Training from the cache never loads a teacher: their runs can be gone.
    (tmp_path / "img").rename(tmp_path / "img-moved")
    (tmp_path / "vid").rename(tmp_path / "vid-moved")
    run = ["pretrain", "--recipe", "mvd:tiny", "--out", str(tmp_path / "mvd")]
    assert main(run + mvd + sets("train.steps=2", f"train.teacher_cache={tmp_path / 'cache'}")) == 0
    last = json.loads((tmp_path / "mvd" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 2 and last["loss_image"] > 0 and last["loss_video"] > 0
