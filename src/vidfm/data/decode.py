"""Video decoding with PyAV: exact frame indices, keyframe seeking, rotation, motion vectors.

Frame index rule. Frame ``i`` is the ``i``-th frame a plain full decode (``for f in container.decode(s)``)
returns, 0-based. For containers that store presentation timestamps (mp4/mov, mkv/webm, ...) that is the
rank of the frame's pts among all packet pts, so a frame found after a seek is identified by its pts; a
variable frame rate therefore never matters (no ``pts * fps`` arithmetic anywhere). Where the pts are
guessed by the demuxer (AVI with B-frames, e.g. packed MPEG-4 ASP, whose decoder output pts are not even
monotonic) or missing, the reader falls back to counting decoder output from the start of the stream
("sequential mode"); it switches to that mode by itself if the pts turn out inconsistent while decoding.

``num_frames`` is the number of non-empty, non-discarded video packets found by demuxing the whole file
(no decoding; a few ms for a short clip). That equals the full-decode count for an intact stream; the
container header's count (``stream.frames``) is kept as ``declared_frames`` and a mismatch is reported in
``problems`` (e.g. an AVI whose index lists dropped frames).

Indices ``>= num_frames`` are clamped to the last frame ("repeat last"); negative indices are an error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from vidfm.errors import UserError

# Containers whose demuxer invents pts from the decode order (no pts field in the format): with frame
# reordering their pts cannot be trusted to identify frames after a seek.
_GUESSED_PTS_FORMATS = {"avi", "h264", "hevc", "m4v", "mpegvideo", "rawvideo"}
# Seek forward instead of decoding through when the target's keyframe is this many frames ahead.
_SEEK_AHEAD = 8
_MB = 16  # macroblock size of the motion-vector grid
# PyAV < 19 decodes container metadata strictly unless told to ignore bad bytes (a file with Latin-1 tags
# then fails to open with UnicodeDecodeError); PyAV 19 removed the argument and always decodes with
# "surrogateescape" (av/utils.py ``_decode``), which never raises.
_OPEN_OPTIONS = {"metadata_errors": "ignore"} if int(av.__version__.split(".")[0]) < 19 else {}


class VideoDecodeError(UserError, RuntimeError):
    """A video that cannot be opened or decoded (wholly, or at the frames asked for)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        """Args:
        path: the video file.
        reason: a human-readable reason, e.g. ``"frames [400] could not be decoded (...)"``.
        """
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass
class VideoInfo:
    """What :func:`probe` learns about a video (its first video stream).

    ``width``/``height`` are the displayed size after rotation (pixels taken as square: the sample aspect
    ratio is not applied). ``rotation`` is the counter-clockwise display rotation in degrees (FFmpeg display
    matrix; frames are returned already rotated upright). ``keyframes`` are frame indices, when asked for.
    ``seekable`` is False when frames are found by counting from the start (timestamps unusable).
    ``problems`` lists what is wrong with the file (e.g. fewer frames stored than declared).
    """

    path: str
    format: str
    codec: str
    width: int
    height: int
    fps: float
    num_frames: int
    duration: float
    rotation: int = 0
    keyframes: list[int] | None = None
    declared_frames: int = 0
    seekable: bool = True
    problems: list[str] = field(default_factory=list)


@dataclass
class MotionField:
    """Codec motion vectors on the 16x16 macroblock grid of the coded (unrotated) frame.

    ``vectors[t, i, j] = (dx, dy)`` in pixels is the forward motion of the content of cell ``(i, j)``: the
    block at the current position came from ``(x - dx, y - dy)`` in the past reference frame (FFmpeg
    ``AVMotionVector`` with ``source < 0``; ``dx = dst_x - src_x = -motion_x / motion_scale``), so an object
    moving right has ``dx > 0`` and one moving down has ``dy > 0``. Blocks smaller than 16x16 are combined by
    keeping the vector of largest magnitude in each cell (first one on ties), as Video-LaVIT max-pools its
    motion input. Intra blocks, I-frames and backward-only (``source > 0``) blocks give zeros.
    """

    vectors: np.ndarray  # float32 [T, ceil(H/16), ceil(W/16), 2]
    keyframe: np.ndarray  # bool [T]
    pict_type: list[str]  # "I" / "P" / "B" / ... per frame
    frame_size: tuple[int, int]  # coded (H, W)
    indices: np.ndarray  # int64 [T] frame indices read


@dataclass
class _Table:
    """Demuxed packet facts, in presentation order."""

    pts: np.ndarray  # int64 [N] sorted pts (pts mode) or empty
    keyframes: np.ndarray  # int64 [K] frame indices of keyframes, ascending
    seek_ts: np.ndarray  # int64 [K] timestamp to seek to for each keyframe
    by_pts: bool
    num_frames: int
    declared: int
    problems: list[str]


def _open(
    path: str, threads: int = 0, codec_options: dict[str, str] | None = None, thread_type: str = "AUTO"
) -> tuple[Any, Any]:
    if not Path(path).is_file():
        raise VideoDecodeError(path, "file not found")
    try:
        container = av.open(path, **_OPEN_OPTIONS)
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise VideoDecodeError(path, f"cannot open: {e}") from e
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(path, "no video stream")
    stream = container.streams.video[0]
    if stream.codec_context is None:  # PyAV 19: a codec id FFmpeg has no decoder for (often a damaged header)
        container.close()
        raise VideoDecodeError(path, "no decoder for its video stream (unknown or damaged codec id)")
    try:
        # "AUTO" = frame + slice threads: pixels are bit-exact with single-threaded decoding.
        stream.thread_type = thread_type
        stream.codec_context.thread_count = threads
        if codec_options:
            stream.codec_context.options = dict(codec_options)
    except (av.error.FFmpegError, ValueError) as e:
        container.close()
        raise VideoDecodeError(path, f"cannot set up its decoder: {e}") from e
    return container, stream


def _scan(path: str, container: Any, stream: Any) -> _Table:
    """Demux every packet of the stream (no decoding) to count frames and find keyframes."""
    pts, dts, key = [], [], []
    problems: list[str] = []
    try:
        for p in container.demux(stream):
            if p.size == 0 or p.is_discard:  # flush packets; edit-list discards are never output
                continue
            pts.append(p.pts)
            dts.append(p.dts)
            key.append(p.is_keyframe)
    except (av.error.FFmpegError, OSError) as e:
        problems.append(f"demuxing stopped after {len(pts)} packets: {e}")
    if not pts:
        raise VideoDecodeError(path, problems[0] if problems else "no video packets")
    n = len(pts)
    has_pts = all(p is not None for p in pts) and len(set(pts)) == n
    reordered = has_pts and any(d is not None and p != d for p, d in zip(pts, dts, strict=True))
    by_pts = has_pts and not (reordered and container.format.name in _GUESSED_PTS_FORMATS)
    if has_pts:
        order = np.argsort(np.asarray(pts, np.int64), kind="stable")
        rank = np.empty(n, np.int64)
        rank[order] = np.arange(n)
        sorted_pts = np.asarray(pts, np.int64)[order]
    else:  # no usable pts: packet order stands in for the keyframe positions
        rank, sorted_pts = np.arange(n), np.empty(0, np.int64)
    kpos = [i for i in range(n) if key[i]] or [0]
    keyframes = rank[kpos]
    seek_ts = np.asarray([dts[i] if dts[i] is not None else (pts[i] or 0) for i in kpos], np.int64)
    by_frame = np.argsort(keyframes, kind="stable")
    declared = int(stream.frames or 0)
    if declared and declared != n:
        problems.append(f"container declares {declared} frames but stores {n}")
    return _Table(
        sorted_pts if by_pts else np.empty(0, np.int64),
        keyframes[by_frame],
        seek_ts[by_frame],
        by_pts,
        n,
        declared,
        problems,
    )


class _Untrusted(Exception):
    """The pts seen while decoding contradict the packet table: fall back to sequential mode."""


class VideoReader:
    """Random access to the frames of one video, reusing the open container across calls.

    ``read(indices)`` seeks to the keyframe at or before the first needed frame, decodes forward only as
    far as the last needed one, and seeks again only when a later index lies behind the decode position or
    beyond a keyframe more than a few frames ahead. Frames are byte-identical to a plain full decode.
    Use as a context manager (or call :meth:`close`).
    """

    def __init__(
        self,
        path: str | Path,
        short_side: int | None = None,
        threads: int = 0,
        codec_options: dict[str, str] | None = None,
        thread_type: str = "AUTO",
        resize_threads: int | None = None,
    ) -> None:
        """Args:
        path: the video file.
        short_side: resize on decode (swscale, in C) so the shorter displayed side has this many pixels;
            ``None`` keeps the coded size (what byte-exact comparisons need).
        threads: decoder threads; 0 lets FFmpeg choose (one per core). In DataLoader workers 1 is usually
            best, the workers already being the parallelism.
        codec_options: FFmpeg decoder options, e.g. ``{"flags2": "+export_mvs"}``.
        thread_type: FFmpeg threading, ``"AUTO"`` (frame + slice), ``"SLICE"``, ``"FRAME"`` or ``"NONE"``.
        resize_threads: swscale threads of the RGB conversion + resize (None = ``threads``). PyAV's default
            is one thread per CPU in every process: N loader workers each starting a pool as large as the
            machine oversubscribe it N-fold (a single-threaded resize measured half the CPU time per clip;
            ``benchmarks/loader_stages.py``).
        """
        if short_side is not None and short_side < 1:
            raise ValueError(f"short_side must be positive, got {short_side}")
        self.path = str(path)
        self._short_side = short_side
        self._threads = threads
        self._resize_threads = threads if resize_threads is None else resize_threads
        self._options = codec_options
        self._thread_type = thread_type
        # The reader's own colour converter. PyAV 19 keeps one per thread for every frame.to_ndarray(...),
        # with swscale slice threads made where it was first used: a DataLoader worker forked after the main
        # process had converted a frame inherits it without those threads and hangs in its first resize.
        self._reformatter: VideoReformatter | None = VideoReformatter()
        self._container, self._stream = _open(self.path, threads, codec_options, thread_type)
        try:
            self._table = _scan(self.path, self._container, self._stream)
            self._pts_index = {int(p): i for i, p in enumerate(self._table.pts)}
            self._errors: list[str] = []
            first = self._first_frame()  # decoded now for rotation and size; kept for the first read
        except VideoDecodeError:
            self.close()
            raise
        except (av.error.FFmpegError, OSError) as e:
            self.close()
            raise VideoDecodeError(self.path, f"cannot decode: {e}") from e
        if first is None:
            self.close()
            raise VideoDecodeError(self.path, "no frame could be decoded" + self._error_note())
        self._pending = first
        frame = first[1]
        self._coded_hw = (frame.height, frame.width)
        rotation = _rotation(frame)
        h, w = (frame.width, frame.height) if rotation % 180 else (frame.height, frame.width)
        s = self._stream
        fps = float(s.average_rate or s.guessed_rate or 0.0)
        duration = float(s.duration * s.time_base) if s.duration and s.time_base else 0.0
        duration = (
            duration or (self._container.duration or 0) / 1e6 or (self._table.num_frames / fps if fps else 0)
        )
        self.info = VideoInfo(
            path=self.path,
            format=self._container.format.name,
            codec=s.codec_context.name,
            width=w,
            height=h,
            fps=fps or (self._table.num_frames / duration if duration else 0.0),
            num_frames=self._table.num_frames,
            duration=duration,
            rotation=rotation,
            keyframes=[int(k) for k in self._table.keyframes],
            declared_frames=self._table.declared,
            seekable=self._table.by_pts,
            problems=list(self._table.problems),
        )

    # ----------------------------------------------------------------- public
    def read(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """uint8 RGB frames ``[T, H, W, 3]`` at ``indices`` (any order, repeats allowed), upright.

        Raises :class:`VideoDecodeError` naming the frames that could not be decoded, if any.
        """
        if len(indices) == 0:
            w, h = self._output_size()
            return np.empty((0, w, h, 3) if self.info.rotation % 180 else (0, h, w, 3), np.uint8)
        return self.gather(indices, self._to_rgb, self._stack)

    def gather(
        self,
        indices: Sequence[int] | np.ndarray,
        convert: Callable[[Any], Any],
        combine: Callable[[list[Any]], Any] = list,
    ) -> Any:
        """Apply ``convert(av.VideoFrame)`` to the frames at ``indices`` and ``combine`` the results in the
        order asked for (the engine of :meth:`read`; also used for motion vectors)."""
        if self._container is None:
            raise ValueError(f"{self.path}: reader is closed")
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and idx.min() < 0:
            raise ValueError(f"negative frame index {int(idx.min())} for {self.path}")
        idx = np.minimum(idx, self.info.num_frames - 1)  # documented rule: repeat the last frame
        wanted = np.unique(idx)
        try:
            try:
                got = self._collect(wanted, convert)
            except _Untrusted:
                self._distrust_pts()
                got = self._collect(wanted, convert)
        except (av.error.FFmpegError, OSError) as e:
            raise VideoDecodeError(self.path, f"decoding failed: {e}") from e
        missing = [int(i) for i in wanted if int(i) not in got]
        if missing:
            raise VideoDecodeError(
                self.path,
                f"{len(missing)} of {len(wanted)} requested frames could not be decoded "
                f"(first {missing[:5]}){self._error_note()}",
            )
        return combine([got[int(i)] for i in idx])

    def close(self) -> None:
        """Close the file and free the decoder now. The frame generator refers back to the reader, so
        without this the decoder (and its threads) would live until the cyclic GC runs, possibly in a
        forked DataLoader worker, where freeing it joins threads that do not exist there (crash)."""
        self._frames = self._pending = self._reformatter = None
        if getattr(self, "_container", None) is not None:
            self._container.close()
        self._container = self._stream = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    # ---------------------------------------------------------------- decoding
    def _first_frame(self) -> tuple[int, Any] | None:
        self._restart(0)
        try:
            self._pending = next(self._frames, None)
        except _Untrusted:
            self._distrust_pts()
            self._pending = next(self._frames, None)
        return self._pending

    def _distrust_pts(self) -> None:
        """The pts contradicted the packet table: count decoder output from the start instead."""
        self._table.by_pts = False
        if hasattr(self, "info"):
            self.info.seekable = False
        self._restart(0)

    def _collect(self, wanted: np.ndarray, convert: Callable[[Any], Any]) -> dict[int, Any]:
        got: dict[int, Any] = {}
        want = set(int(i) for i in wanted)
        for t in (int(i) for i in wanted):
            if t in got:
                continue
            k = int(np.searchsorted(self._table.keyframes, t, "right")) - 1  # keyframe at or before t
            if not self._table.by_pts:
                if t <= self._pos:
                    self._restart(0)
            elif t <= self._pos or k < 0 or self._table.keyframes[k] > self._pos + _SEEK_AHEAD:
                self._restart(max(k, 0))
            self._decode_until(t, want, got, convert)
            # The target never came out (the decoder dropped frames after the keyframe, or the frame is
            # damaged): retry once from the previous keyframe, then from the very start.
            for retry in sorted({max(k - 1, 0), 0}, reverse=True) if self._table.by_pts else ():
                if t in got:
                    break
                self._restart(max(retry, 0))
                self._decode_until(t, want, got, convert)
        return got

    def _restart(self, k: int) -> None:
        """Position the decoder at keyframe ``k`` (index into the keyframe list; 0 = start of stream)."""
        if k > 0 or (self._table.by_pts and self._table.keyframes[0] == 0):
            self._container.seek(int(self._table.seek_ts[k]), stream=self._stream, backward=True)
            trusted_from = int(self._table.keyframes[k])
        else:  # reopening (~1 ms) is exact for every format, whatever its timestamps
            self._container.close()
            self._container, self._stream = _open(self.path, self._threads, self._options, self._thread_type)
            trusted_from = 0
        self._pending = None
        self._pos = trusted_from - 1  # index of the last frame output
        self._last = -1  # last index seen since the restart (pts must increase)
        self._count = 0  # frames output since the start (sequential mode)
        self._trusted_from = trusted_from  # frames before the keyframe may be leading pictures: skip
        self._frames = self._decoded()

    def _decoded(self) -> Iterator[tuple[int, Any]]:
        """(index, frame) from the current decode position on; packets that fail are noted and skipped."""
        for packet in self._container.demux(self._stream):
            try:
                frames = packet.decode()
            except av.error.EOFError:
                return
            except av.error.FFmpegError as e:
                self._errors.append(str(e))
                continue
            for frame in frames:
                if self._table.by_pts:
                    i = self._pts_index.get(frame.pts) if frame.pts is not None else None
                    if i is None or i <= self._last:
                        raise _Untrusted()
                    self._last = i
                else:
                    i = self._count
                    self._count += 1
                yield i, frame

    def _decode_until(self, t: int, want: set[int], got: dict[int, Any], convert: Callable) -> None:
        while self._pos < t:
            if self._pending is not None:
                item, self._pending = self._pending, None
            else:
                item = next(self._frames, None)
            if item is None:
                return  # end of stream
            i, frame = item
            self._pos = i
            if i >= self._trusted_from and i in want and i not in got:
                got[i] = convert(frame)

    def _error_note(self) -> str:
        return f"; decoder said: {self._errors[0]}" if self._errors else ""

    def _output_size(self) -> tuple[int, int]:
        """(width, height) of the converted, not yet rotated frame."""
        h, w = self._coded_hw
        if self._short_side is None:
            return w, h
        scale = self._short_side / min(h, w)
        return max(1, round(w * scale)), max(1, round(h * scale))

    def _stack(self, frames: list[np.ndarray]) -> np.ndarray:
        shapes = sorted({f.shape for f in frames})
        if len(shapes) > 1:  # frames are resized to one size, so only a rotation change can do this
            raise VideoDecodeError(self.path, f"the display rotation changes mid-stream (frames {shapes})")
        return np.stack(frames)

    def _to_rgb(self, frame: Any) -> np.ndarray:
        w, h = self._output_size()
        # Colour conversion and resize in one swscale pass; a mid-stream size change is resized too.
        rgb = self._reformatter.reformat(  # type: ignore[union-attr]
            frame, width=w, height=h, format="rgb24", threads=self._resize_threads
        ).to_ndarray()  # [h, w, 3]
        k = _rotation(frame) // 90
        return np.rot90(rgb, k) if k else rgb  # np.rot90 turns counter-clockwise, like the display matrix


def _rotation(frame: Any) -> int:
    """Counter-clockwise display rotation of a frame, snapped to a multiple of 90 degrees in [0, 360)."""
    r = frame.rotation or 0
    return int(round(r / 90.0)) % 4 * 90


def probe(path: str | Path, keyframes: bool = False) -> VideoInfo:
    """Open, demux and decode the first frame of ``path``; raise :class:`VideoDecodeError` on failure."""
    with VideoReader(path) as reader:
        info = reader.info
    if not keyframes:
        info.keyframes = None
    return info


@dataclass
class DecodeCheck:
    """Outcome of a full decode: frames out vs. frames stored, and what the decoder complained about."""

    decoded: int
    stored: int
    errors: list[str]
    warnings: list[str]


def check_decode(path: str | Path) -> DecodeCheck:
    """Decode every frame of ``path`` (no colour conversion) and collect FFmpeg's errors and warnings."""
    path = str(path)
    container, stream = _open(path)
    decoded, errors = 0, []
    level, skip = av.logging.get_level(), av.logging.get_skip_repeated()
    av.logging.set_level(av.logging.WARNING)
    av.logging.set_skip_repeated(False)  # else a message seen before (another file, earlier) is dropped
    try:
        with av.logging.Capture(local=False) as logs:
            stored = 0
            try:
                for packet in container.demux(stream):
                    stored += packet.size > 0 and not packet.is_discard
                    try:
                        decoded += len(packet.decode())
                    except av.error.EOFError:
                        break
                    except av.error.FFmpegError as e:
                        errors.append(str(e))
            except (av.error.FFmpegError, OSError) as e:  # the container itself is broken further on
                errors.append(f"demuxing stopped: {e}")
    finally:
        av.logging.set_level(level)
        av.logging.set_skip_repeated(skip)
        container.close()
    warnings = sorted({m.strip() for lvl, _, m in logs if lvl <= av.logging.WARNING and m.strip()})
    return DecodeCheck(decoded=decoded, stored=stored, errors=errors, warnings=warnings)


def motion_grid(vectors: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scatter FFmpeg ``AVMotionVector`` records (PyAV ``MotionVectors.to_ndarray()``) onto the 16x16 grid.

    Returns float32 ``[ceil(H/16), ceil(W/16), 2]`` of forward motion ``(dx, dy) = dst - src`` (see
    :class:`MotionField`); each cell keeps the largest-magnitude vector among the blocks covering it.
    """
    gh, gw = math.ceil(height / _MB), math.ceil(width / _MB)
    out = np.zeros((gh, gw, 2), np.float32)
    mv = vectors[vectors["source"] < 0]
    if mv.size == 0:
        return out
    w, h = mv["w"].astype(np.int64), mv["h"].astype(np.int64)
    x0 = mv["dst_x"].astype(np.int64) - w // 2  # dst_x/dst_y are block centres
    y0 = mv["dst_y"].astype(np.int64) - h // 2
    cx0, cx1 = np.clip(x0 // _MB, 0, gw - 1), np.clip((x0 + w - 1) // _MB, 0, gw - 1)
    cy0, cy1 = np.clip(y0 // _MB, 0, gh - 1), np.clip((y0 + h - 1) // _MB, 0, gh - 1)
    inside = (x0 + w > 0) & (x0 < width) & (y0 + h > 0) & (y0 < height)
    scale = np.maximum(mv["motion_scale"].astype(np.float32), 1.0)
    d = -np.stack([mv["motion_x"], mv["motion_y"]], -1).astype(np.float32) / scale[:, None]  # [M, 2]
    mag = np.hypot(d[:, 0], d[:, 1])
    cells, owners = [], []  # (cell id, vector id) for every cell a block covers
    for oy in range(int((cy1 - cy0).max()) + 1):
        for ox in range(int((cx1 - cx0).max()) + 1):
            ok = inside & (cy0 + oy <= cy1) & (cx0 + ox <= cx1)
            cells.append(((cy0 + oy) * gw + cx0 + ox)[ok])
            owners.append(np.nonzero(ok)[0])
    cell, owner = np.concatenate(cells), np.concatenate(owners)
    # Per cell: largest magnitude first, ties by side-data order; keep the first of each cell.
    order = np.lexsort((owner, -mag[owner], cell))
    cell, owner = cell[order], owner[order]
    first = np.r_[True, cell[1:] != cell[:-1]]
    out.reshape(-1, 2)[cell[first]] = d[owner[first]]
    return out


def _pict_name(frame: Any) -> str:
    try:
        return av.video.frame.PictureType(frame.pict_type).name
    except ValueError:
        return "?"


def read_motion_vectors(path: str | Path, indices: Sequence[int] | np.ndarray | None = None) -> MotionField:
    """The codec's motion vectors of ``path`` at ``indices`` (all frames when ``None``) as a
    :class:`MotionField`; decoding is exported-motion-vector decoding (``flags2=+export_mvs``)."""
    # Frame threading races with motion-vector export in FFmpeg (vectors differ run to run on H.264):
    # slice threads only.
    with VideoReader(path, codec_options={"flags2": "+export_mvs"}, thread_type="SLICE") as reader:
        idx = np.arange(reader.info.num_frames) if indices is None else np.asarray(indices, np.int64)
        h, w = reader._coded_hw
        no_motion = np.zeros((math.ceil(h / _MB), math.ceil(w / _MB), 2), np.float32)  # I-frames

        def convert(frame: Any) -> tuple[np.ndarray, bool, str]:
            side = frame.side_data.get("MOTION_VECTORS")
            grid = motion_grid(side.to_ndarray(), h, w) if side is not None else no_motion
            return grid, bool(frame.key_frame), _pict_name(frame)

        items = reader.gather(idx, convert)
    return MotionField(
        vectors=np.stack([g for g, _, _ in items]) if items else no_motion[None][:0],
        keyframe=np.asarray([k for _, k, _ in items], bool),
        pict_type=[p for _, _, p in items],
        frame_size=(h, w),
        indices=np.minimum(idx, reader.info.num_frames - 1),
    )
