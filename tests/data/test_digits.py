"""digits-motion: real H.264 files, determinism, split by source, motion geometry, and the property the set
exists for: one middle frame tells the digit but not the motion, two frames tell the motion.

Videos are decoded with a plain PyAV loop (not vidfm's reader) so these tests stand on their own.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

av = pytest.importorskip("av")
pytest.importorskip("sklearn")

from vidfm.data import digits as D  # noqa: E402


def decode(path: Path) -> tuple[list[np.ndarray], str, str]:
    """All frames of ``path`` as uint8 RGB [H,W,3], the codec name and the pixel format."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1  # tiny clips: threads cost more than they save
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        return frames, stream.codec_context.name, stream.codec_context.pix_fmt


def read_rows(manifest: Path) -> list[dict[str, str]]:
    with open(manifest, newline="") as f:
        return list(csv.DictReader(f))


def test_writes_real_h264_clips_with_a_full_manifest(digits_manifest: Path):
    rows = read_rows(digits_manifest)
    meta = json.loads((digits_manifest.parent / "meta.json").read_text())
    assert list(rows[0]) == list(D.MANIFEST_COLUMNS)
    assert len(rows) == meta["n"] and meta["num_train"] + meta["num_test"] == len(rows)
    for row in rows[:5]:
        frames, codec, pix_fmt = decode(digits_manifest.parent / row["path"])
        assert (codec, pix_fmt, len(frames)) == ("h264", "yuv420p", meta["num_frames"])
        assert frames[0].shape == (meta["size"], meta["size"], 3)
        assert not np.array_equal(frames[0], frames[-1])  # the digit moves
        assert row["digit"] in row["caption"]
    assert {r["motion"] for r in rows} == set(D.MOTIONS)
    assert {int(r["digit"]) for r in rows} == set(range(10))
    counts = np.bincount([D.MOTIONS.index(r["motion"]) for r in rows if r["split"] == "test"])
    assert counts.max() - counts.min() <= 10  # motions balanced inside (split, digit) groups


def test_split_by_source_stratified_by_digit(digits_manifest: Path):
    rows = read_rows(digits_manifest)
    train = {r["source"] for r in rows if r["split"] == "train"}
    test = {r["source"] for r in rows if r["split"] == "test"}
    assert train and test and not train & test
    digit_of = {r["source"]: r["digit"] for r in rows}
    assert all(digit_of[r["source"]] == r["digit"] for r in rows)  # one digit per source
    for d in map(str, range(10)):
        n_test = sum(r["digit"] == d for r in rows if r["split"] == "test")
        n_all = sum(r["digit"] == d for r in rows)
        assert 0.15 < n_test / n_all < 0.25


def test_same_seed_same_bytes_whatever_the_workers(tmp_path: Path):
    # 70 clips = two render chunks, so the worker pool really splits the work.
    kwargs = dict(n=70, num_frames=6, size=32, seed=5)
    a = D.make_digits_motion(tmp_path / "a", workers=0, **kwargs)
    b = D.make_digits_motion(tmp_path / "b", workers=2, **kwargs)
    c = D.make_digits_motion(tmp_path / "c", workers=0, **{**kwargs, "seed": 6})
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    for row in read_rows(a):
        assert (a.parent / row["path"]).read_bytes() == (b.parent / row["path"]).read_bytes()
    first = read_rows(a)[0]["path"]
    frames_a, _, _ = decode(a.parent / first)
    frames_b, _, _ = decode(b.parent / first)
    assert all(np.array_equal(x, y) for x, y in zip(frames_a, frames_b, strict=True))


def test_middle_frame_is_the_same_for_every_motion_and_motions_go_their_way():
    """Render one sprite with a dot above the digit centre, same middle state, all eight motions."""
    t, size = 9, 64
    sprite = torch.zeros(1, 1, 40, 40)
    sprite[..., 8:12, 18:22] = 1.0  # a dot above the sprite centre
    k = len(D.MOTIONS)
    params = D.ClipParams(
        source=np.zeros(k, dtype=np.int64),
        motion=np.arange(k),
        center=np.zeros((k, 2)),
        angle=np.zeros(k),
        scale=np.ones(k),
        tint=np.ones((k, 3)),
        noise=np.zeros((k, 3, 8, 8)),
        template=np.zeros(k, dtype=np.int64),
    )
    center, angle, scale = D.trajectories(params, t, size)
    clips = D.render_clips(
        sprite.expand(k, -1, -1, -1), center, angle, scale, params.tint, params.noise, size, 0.0
    )
    mid = t // 2
    assert all(torch.equal(clips[0, mid], clips[i, mid]) for i in range(k))  # no motion information

    def dot(clip: torch.Tensor, i: int) -> torch.Tensor:
        """(x, y) centroid of the bright dot in frame i, relative to the frame centre."""
        mass = clip[i].float().mean(-1) - clip[i].float().mean(-1).min()
        ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
        return torch.stack([(mass * xs).sum(), (mass * ys).sum()]) / mass.sum() - size / 2

    move = {m: dot(clips[i], t - 1) - dot(clips[i], 0) for i, m in enumerate(D.MOTIONS)}
    step = D.SHIFT * size  # whole-clip translation in px
    torch.testing.assert_close(move["left"], torch.tensor([-step, 0.0]), atol=0.5, rtol=0)
    torch.testing.assert_close(move["right"], torch.tensor([step, 0.0]), atol=0.5, rtol=0)
    torch.testing.assert_close(move["up"], torch.tensor([0.0, -step]), atol=0.5, rtol=0)
    torch.testing.assert_close(move["down"], torch.tensor([0.0, step]), atol=0.5, rtol=0)
    # The dot starts above the centre: clockwise on screen swings it right, counterclockwise left.
    assert dot(clips[4], t - 1)[0] > 3 > -3 > dot(clips[5], t - 1)[0]
    # Zooming in pushes the dot away from the centre, zooming out pulls it in.
    r = {
        m: [dot(clips[D.MOTIONS.index(m)], i).norm().item() for i in (0, t - 1)]
        for m in ("zoom_in", "zoom_out")
    }
    assert r["zoom_in"][1] / r["zoom_in"][0] == pytest.approx(D.ZOOM, rel=0.1)
    assert r["zoom_out"][0] / r["zoom_out"][1] == pytest.approx(D.ZOOM, rel=0.1)


def test_bad_arguments_and_missing_scikit_learn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for bad in (dict(size=33), dict(size=8), dict(num_frames=1), dict(n=0), dict(contrast=2.0)):
        with pytest.raises(ValueError):
            D.make_digits_motion(tmp_path, **bad)
    with pytest.raises(ValueError, match="even"):
        D.encode_mp4(tmp_path / "odd.mp4", np.zeros((2, 31, 32, 3), np.uint8))
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"pip install vidfm\[eval\]"):
        D.load_digit_images()


class SmallCNN(nn.Module):
    """Three conv blocks, global average pool, one linear head per label."""

    def __init__(self, in_channels: int, classes: list[int]) -> None:
        super().__init__()

        def block(i: int, o: int) -> list[nn.Module]:
            return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]

        self.body = nn.Sequential(
            *block(in_channels, 16), nn.MaxPool2d(2), *block(16, 32), nn.MaxPool2d(2), *block(32, 64)
        )
        self.heads = nn.ModuleList(nn.Linear(64, c) for c in classes)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f = self.body(x).mean((2, 3))
        return [h(f) for h in self.heads]


def train_and_test(
    x: torch.Tensor, labels: list[torch.Tensor], train: torch.Tensor, epochs: int, seed: int = 0
) -> list[float]:
    """Fit SmallCNN on x[train] (all labels at once), return test accuracy per label."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x = x.contiguous(memory_format=torch.channels_last)
    model = SmallCNN(x.shape[1], [int(y.max()) + 1 for y in labels]).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=1e-4)
    xt, yt = x[train], [y[train] for y in labels]
    batch = 64
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 5e-3, total_steps=epochs * -(-len(xt) // batch))
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), batch):
            idx = perm[i : i + batch]
            loss = sum(F.cross_entropy(o, y[idx]) for o, y in zip(model(xt[idx]), yt, strict=True))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        out = model(x[~train])
    return [(o.argmax(1) == y[~train]).float().mean().item() for o, y in zip(out, labels, strict=True)]


@pytest.fixture
def one_thread():
    # Small convs on a shared 2-core machine: a second intra-op thread mostly waits at barriers.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_one_frame_tells_the_digit_not_the_motion_two_frames_tell_the_motion(digits_manifest, one_thread):
    rows = read_rows(digits_manifest)
    picked = []  # [N, 3 frames (first, middle, last), H, W, 3]
    for row in rows:
        with av.open(str(digits_manifest.parent / row["path"])) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            frames = list(container.decode(stream))
        picked.append([frames[i].to_ndarray(format="rgb24") for i in (0, len(frames) // 2, len(frames) - 1)])
    x = torch.from_numpy(np.asarray(picked)).permute(0, 1, 4, 2, 3).float().div_(255)
    x = F.avg_pool2d(x.flatten(0, 1), 2).unflatten(0, x.shape[:2])  # 64 -> 32 px: [N,3,C,32,32]
    digit = torch.tensor([int(r["digit"]) for r in rows])
    motion = torch.tensor([D.MOTIONS.index(r["motion"]) for r in rows])
    train = torch.tensor([r["split"] == "train" for r in rows])
    assert (~train).sum() >= 500  # enough test clips for a +-5 point chance check

    digit_acc, motion_acc = train_and_test(x[:, 1], [digit, motion], train, epochs=12)
    assert digit_acc >= 0.90, digit_acc
    assert abs(motion_acc - 1 / 8) <= 0.05, motion_acc  # the middle frame carries no motion

    (motion_acc_2,) = train_and_test(torch.cat([x[:, 0], x[:, 2]], 1), [motion], train, epochs=3)
    assert motion_acc_2 >= 0.60, motion_acc_2


def test_parse_caption_inverts_every_template():
    import itertools

    from vidfm.data.digits import MOTIONS, caption_for, parse_caption

    for digit, motion, template in itertools.product(range(10), MOTIONS, range(5)):
        assert parse_caption(caption_for(digit, motion, template)) == (digit, motion)
    assert parse_caption("a 3 moving to the left moving up") == (3, None)  # two motions: none
    assert parse_caption("the digit rotating counterclockwise") == (None, "rotate_ccw")
    assert parse_caption("") == (None, None)
