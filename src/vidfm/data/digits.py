"""Digits-motion: an embedded video dataset built from the 1,797 real handwritten digits of scikit-learn.

Each clip shows one real 8x8 handwritten digit (upscaled smoothly, tinted, alpha-composited) on a smooth
random textured background, moving with one of eight motions. Labels: ``digit`` (appearance) and
``motion`` (dynamics), plus a caption for video-text objectives.

The property that makes it useful for video encoders: the digit's position, angle and scale in the
**middle frame** (index ``num_frames // 2``) are drawn from one distribution shared by all motions, and the
motion moves the digit around that middle state. A single middle frame therefore carries no information
about the motion class (a frame classifier sits at chance, 1/8), while two frames reveal it. The
background is static (no camera motion), so every temporal change belongs to the digit.

Clips and sources are split by source digit: every clip of one of the 1,797 source images lands in the
same split (80/20, stratified by digit), so a test clip never shows a handwriting sample seen in training.
"""

from __future__ import annotations

import csv
import io
import json
import math
import multiprocessing
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

MOTIONS: tuple[str, ...] = ("left", "right", "up", "down", "rotate_cw", "rotate_ccw", "zoom_in", "zoom_out")
MANIFEST_COLUMNS: tuple[str, ...] = ("path", "digit", "motion", "caption", "split", "source")

# Middle-frame state distribution, shared by all motions.
CENTER_RANGE = 0.125  # centre offset from the frame centre, uniform in +-CENTER_RANGE * size px
ANGLE_RANGE = 15.0  # degrees, uniform in +-ANGLE_RANGE
SCALE_RANGE = (0.9, 1.1)
DIGIT_SIZE = 0.375  # the 8x8 digit spans DIGIT_SIZE * size px at scale 1 (24 px in a 64 px frame)
# Motion amplitudes over the whole clip (first frame to last frame).
SHIFT = 0.25  # translation, fraction of the frame size
ROTATION = 90.0  # degrees
ZOOM = 1.8  # ratio of the scales of the last and first frames
FPS = 8
# Audio track (``audio=True``): one of four tones per clip, independent of digit and motion, so ``sound`` is
# recoverable from the audio alone, ``digit``/``motion`` from the frames alone, and ``motion_sound`` only from
# both. Pitches (Hz) of the classes; AAC mono at 16 kHz, the rate InternVideo2's audio input uses.
SOUNDS: dict[str, float] = {"low": 262.0, "middle": 392.0, "high": 587.0, "highest": 880.0}
AUDIO_RATE = 16_000
TEST_FRACTION = 0.2
CHUNK = 64  # clips rendered per torch batch; fixed so the bytes do not depend on ``workers``

_PHRASES = {
    "left": "moving to the left",
    "right": "moving to the right",
    "up": "moving up",
    "down": "moving down",
    "rotate_cw": "rotating clockwise",
    "rotate_ccw": "rotating counterclockwise",
    "zoom_in": "zooming in",
    "zoom_out": "zooming out",
}
_TEMPLATES = (
    "a handwritten {digit} {phrase}",
    "the digit {digit} {phrase}",
    "{article} {digit} {phrase}",
    "a video of the number {digit} {phrase}",
    "a handwritten digit {digit} {phrase} over a textured background",
)


def load_digit_images() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 real 8x8 handwritten digits of scikit-learn: images float [N,8,8] in [0,1], labels [N]."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # scikit-learn is the optional ``eval`` extra
        raise ImportError(
            "the digits-motion dataset needs scikit-learn (it ships the handwritten digits): "
            "pip install vidfm[eval]"
        ) from exc
    data = load_digits()
    # Pixel values are counts 0..16 (4x4 blocks of a 32x32 bitmap, UCI optdigits).
    return data.images.astype(np.float32) / 16.0, data.target.astype(np.int64)


def split_sources(labels: np.ndarray, test_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean [N] ``is_test`` per source image, stratified by digit (round(fraction * count) per digit)."""
    is_test = np.zeros(len(labels), dtype=bool)
    for d in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == d))
        is_test[idx[: int(round(test_fraction * len(idx)))]] = True
    return is_test


@dataclass
class ClipParams:
    """Everything random about a set of clips, drawn up front from one seed (arrays over clips)."""

    source: np.ndarray  # [n] int, index into the 1,797 source digits
    motion: np.ndarray  # [n] int, index into MOTIONS
    center: np.ndarray  # [n,2] float, middle-frame centre (x, y) in px from the frame centre
    angle: np.ndarray  # [n] float, middle-frame angle in degrees, clockwise on screen
    scale: np.ndarray  # [n] float, middle-frame scale
    tint: np.ndarray  # [n,3] float in [0,1], digit colour
    noise: np.ndarray  # [n,3,8,8] float, background noise (a coarse 4x4 and a finer 8x8 octave summed)
    template: np.ndarray  # [n] int, caption template

    def take(self, index: np.ndarray | slice) -> ClipParams:
        return ClipParams(**{k: v[index] for k, v in self.__dict__.items()})


def sample_params(
    n: int, labels: np.ndarray, is_test: np.ndarray, rng: np.random.Generator, size: int
) -> ClipParams:
    """Draw the parameters of ``n`` clips from sources with digit ``labels`` [S] and split ``is_test`` [S].

    Sources cycle through seeded permutations (each used evenly). Motions are balanced inside every
    (split, digit) group of clips (counts differ by at most one, the extra ones on a random motion), so
    the motion label is independent of the digit and equally frequent in both splits.
    """
    num_sources = len(labels)
    source = np.concatenate([rng.permutation(num_sources) for _ in range(math.ceil(n / num_sources))])[:n]
    motion = np.empty(n, dtype=np.int64)
    group = labels[source] * 2 + is_test[source]  # (digit, split) of each clip
    for g in range(20):
        idx = np.flatnonzero(group == g)
        motion[idx] = rng.permutation((np.arange(len(idx)) + rng.integers(len(MOTIONS))) % len(MOTIONS))
    center = rng.uniform(-CENTER_RANGE * size, CENTER_RANGE * size, size=(n, 2))
    angle = rng.uniform(-ANGLE_RANGE, ANGLE_RANGE, size=n)
    scale = rng.uniform(*SCALE_RANGE, size=n)
    tint = rng.uniform(0.35, 1.0, size=(n, 3))
    tint /= tint.max(axis=1, keepdims=True)  # brightest channel at 1: bright strokes of a random hue
    coarse = rng.standard_normal((n, 3, 4, 4))
    fine = rng.standard_normal((n, 3, 8, 8))
    # Upsample the coarse octave to 8x8 by repetition; the final bicubic resize smooths both.
    noise = np.repeat(np.repeat(coarse, 2, axis=2), 2, axis=3) + 0.5 * fine
    template = rng.integers(len(_TEMPLATES), size=n)
    return ClipParams(source, motion, center, angle, scale, tint, noise, template)


def trajectories(params: ClipParams, num_frames: int, size: int) -> tuple[np.ndarray, ...]:
    """Per-frame state of each clip: centre [n,T,2] px, angle [n,T] degrees, scale [n,T].

    Time runs u_t = (t - T//2) / (T - 1), so u = 0 exactly at the middle frame T//2 (where the state is
    the drawn middle state, whatever the motion) and the clip spans one unit of u from first to last frame.
    """
    u = (np.arange(num_frames) - num_frames // 2) / (num_frames - 1)  # [T]
    names = np.array(MOTIONS)[params.motion]  # [n]
    dx = (names == "right").astype(float) - (names == "left")
    dy = (names == "down").astype(float) - (names == "up")  # image y grows downwards
    rot = (names == "rotate_cw").astype(float) - (names == "rotate_ccw")
    zoom = (names == "zoom_in").astype(float) - (names == "zoom_out")
    shift = SHIFT * size * u  # [T]
    center = params.center[:, None, :] + np.stack([dx[:, None] * shift, dy[:, None] * shift], axis=-1)
    angle = params.angle[:, None] + rot[:, None] * ROTATION * u
    scale = params.scale[:, None] * ZOOM ** (zoom[:, None] * u)
    return center, angle, scale


def make_sprites(images: np.ndarray) -> torch.Tensor:
    """8x8 digits [n,8,8] in [0,1] -> smooth alpha sprites [n,1,40,40]: 1 px zero border, bicubic x4."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    x = F.pad(x, (1, 1, 1, 1))  # a zero border so strokes touching the 8x8 edge fade out
    return F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False).clamp_(0, 1)


def render_clips(
    sprites: torch.Tensor,
    center: np.ndarray,
    angle: np.ndarray,
    scale: np.ndarray,
    tint: np.ndarray,
    noise: np.ndarray,
    size: int,
    contrast: float,
) -> torch.Tensor:
    """Render clips as uint8 [n,T,size,size,3].

    sprites [n,1,h,w] alpha in [0,1] (the digit spans the central 8/10 of the sprite); center [n,T,2] px
    from the frame centre; angle [n,T] degrees clockwise on screen; scale [n,T]; tint [n,3]; noise
    [n,3,g,g] background noise, upsampled bicubically to a smooth texture of amplitude ``contrast``.
    """
    n, t = angle.shape
    # Forward map, normalised coords (x right, y down, [-1,1] spans the frame/sprite):
    # p_frame = c + k * R(a) p_sprite, R(a) = [[cos, -sin], [sin, cos]] turns clockwise on screen
    # because y points down. grid_sample wants the inverse: p_sprite = R(-a) (p_frame - c) / k.
    # The grid is built with elementwise ops only (no matmul as in affine_grid): BLAS kernels may round
    # differently with memory alignment, and one flipped rounding changes the encoded bytes.
    k = scale * (DIGIT_SIZE * 10 / 8)  # [n,T] sprite width / frame width (digit = 8/10 of the sprite)
    a = np.deg2rad(angle)
    cos, sin = np.cos(a) / k, np.sin(a) / k
    c = center / (size / 2)  # [n,T,2]
    coef = np.stack(
        [cos, sin, -(cos * c[..., 0] + sin * c[..., 1]), -sin, cos, sin * c[..., 0] - cos * c[..., 1]]
    )
    coef = torch.from_numpy(coef.reshape(6, n * t, 1, 1)).float()  # rows of R(-a)/k and its offset
    xs = (torch.arange(size, dtype=torch.float32) * 2 + 1) / size - 1  # pixel centres (align_corners=False)
    x, y = xs.view(1, 1, size), xs.view(1, size, 1)
    gx = coef[0] * x + coef[1] * y + coef[2]  # [n*T,S,S]
    gy = coef[3] * x + coef[4] * y + coef[5]
    src = sprites.repeat_interleave(t, dim=0)  # [n*T,1,h,w]
    alpha = F.grid_sample(
        src, torch.stack([gx, gy], -1), mode="bilinear", padding_mode="zeros", align_corners=False
    )
    alpha = alpha.view(n, t, size, size, 1)

    bg = F.interpolate(torch.from_numpy(noise).float(), size=(size, size), mode="bicubic", align_corners=True)
    # Dark-grey base so that bright strokes stand out at any contrast; contrast 0 gives plain grey.
    bg = (0.3 + 0.12 * contrast * bg).clamp_(0, 1).permute(0, 2, 3, 1)[:, None] * 255  # [n,1,S,S,3]
    color = torch.from_numpy(tint).float()[:, None, None, None, :] * 255  # [n,1,1,1,3]
    frames = torch.lerp(bg, color, alpha)  # alpha compositing, [n,T,S,S,3] channels-last like PyAV
    return frames.round_().clamp_(0, 255).to(torch.uint8)


def rgb_to_yuv420p(frames: torch.Tensor) -> torch.Tensor:
    """uint8 RGB [..., H, W, 3] (H, W even) -> uint8 yuv420p planes [..., H * 3 // 2, W] in PyAV's layout.

    BT.601 limited range (what decoders assume for untagged streams) in 8-bit integer arithmetic (the
    integer approximation libyuv uses); chroma from the rounded mean RGB of each 2x2 block. One batched
    call per chunk of clips is cheaper than a swscale call per frame, and integer maths gives the same
    values on every machine.
    """
    *lead, h, w, _ = frames.shape
    x = frames.to(torch.int32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16  # [..., H, W] in [16, 235]
    quad = x[..., 0::2, 0::2, :] + x[..., 0::2, 1::2, :] + x[..., 1::2, 0::2, :] + x[..., 1::2, 1::2, :]
    quad = (quad + 2) >> 2  # rounded 2x2 mean, [..., H/2, W/2, 3]
    r, g, b = quad[..., 0], quad[..., 1], quad[..., 2]
    u = ((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128  # in [16, 240]
    v = ((112 * r - 94 * g - 18 * b + 128) >> 8) + 128
    planes = [p.reshape(*lead, -1) for p in (y, u, v)]
    return torch.cat(planes, dim=-1).to(torch.uint8).reshape(*lead, h * 3 // 2, w)


def encode_mp4(path: str | Path, frames: np.ndarray | torch.Tensor, fps: int = FPS) -> None:
    """Write uint8 RGB frames [T,H,W,3] (H, W even) as H.264 (yuv420p, crf 18, preset fast) in MP4,
    atomically; the parent folder is created."""
    frames = torch.as_tensor(frames)
    if frames.dtype != torch.uint8 or frames.dim() != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"expected uint8 RGB frames [T,H,W,3], got {frames.dtype} {tuple(frames.shape)}")
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"H.264 4:2:0 needs an even height and width, got {tuple(frames.shape[1:3])}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    encode_yuv420p(Path(path), rgb_to_yuv420p(frames).numpy(), fps)


def tone(name: str, seconds: float, rng: np.random.Generator, rate: int = AUDIO_RATE) -> np.ndarray:
    """Mono float32 [rate·seconds] in [-1, 1]: the class's pitch with its second harmonic, a 4 Hz tremolo
    and a little noise (a real encoder then has something non-trivial to code)."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = SOUNDS[name] * (1 + rng.uniform(-0.02, 0.02))  # slight detuning: not one waveform per class
    wave = np.sin(2 * np.pi * f0 * t) + 0.3 * np.sin(4 * np.pi * f0 * t + rng.uniform(0, 2 * np.pi))
    wave *= 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t + rng.uniform(0, 2 * np.pi))
    wave += 0.02 * rng.standard_normal(len(t))
    return (0.3 * wave).astype(np.float32)


def encode_yuv420p(path: Path, yuv: np.ndarray, fps: int = FPS, audio: np.ndarray | None = None) -> None:
    """Write yuv420p frames [T, H*3/2, W] (from :func:`rgb_to_yuv420p`) as H.264 in MP4, atomically; with
    ``audio`` (mono float32 [S] at 16 kHz) also an AAC track.

    One encoder thread: clips are tiny, and x264 then writes the same bytes on every run (its settings
    SEI records the thread count).
    """
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        # mbtree off: on these tiny frames x264's macroblock-tree rate control gave different bytes for
        # equal input now and then (seen on x264 core 165); it buys nothing on 16-frame clips anyway.
        options = {"crf": "18", "preset": "fast", "x264-params": "mbtree=0"}
        stream = container.add_stream("libx264", rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = yuv.shape[2], yuv.shape[1] * 2 // 3, "yuv420p"
        stream.codec_context.thread_count = 1
        sound = None
        if audio is not None:
            sound = container.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        for i, frame in enumerate(yuv):
            vf = av.VideoFrame.from_ndarray(frame, format="yuv420p")
            # Explicit timestamps: x264's rate control reads them, and left unset they are not
            # guaranteed to be the same from run to run.
            vf.pts, vf.time_base = i, Fraction(1, fps)
            container.mux(stream.encode(vf))
        container.mux(stream.encode())
        if sound is not None:
            _encode_audio(container, sound, audio)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)


def _encode_audio(container, stream, audio: np.ndarray) -> None:  # noqa: ANN001 - PyAV objects
    """Mux mono float32 ``audio`` into ``stream`` in the encoder's frame size (AAC: 1024 samples)."""
    import av

    step = stream.codec_context.frame_size or 1024
    planar = stream.codec_context.format.name  # "fltp" for FFmpeg's AAC encoder
    for i, start in enumerate(range(0, len(audio), step)):
        chunk = np.zeros((1, step), dtype=np.float32)
        part = audio[start : start + step]
        chunk[0, : len(part)] = part
        frame = av.AudioFrame.from_ndarray(chunk, format=planar, layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = AUDIO_RATE, i * step, Fraction(1, AUDIO_RATE)
        container.mux(stream.encode(frame))
    container.mux(stream.encode())


def _render_and_encode(job: tuple) -> None:
    """Worker body: render one chunk of clips and encode each to its mp4 path (with its tone, if any)."""
    images, params, paths, num_frames, size, contrast, sounds = job
    center, angle, scale = trajectories(params, num_frames, size)
    clips = render_clips(
        make_sprites(images), center, angle, scale, params.tint, params.noise, size, contrast
    )
    for i, (yuv, path) in enumerate(zip(rgb_to_yuv420p(clips).numpy(), paths, strict=True)):
        audio = (
            None
            if sounds is None
            else tone(sounds[i][0], num_frames / FPS, np.random.default_rng(sounds[i][1]))
        )
        encode_yuv420p(Path(path), yuv, audio=audio)


def caption_for(digit: int, motion: str, template: int) -> str:
    """Caption of a clip from template number ``template`` ("a handwritten 7 moving to the left")."""
    article = "an" if digit == 8 else "a"
    return _TEMPLATES[template].format(digit=digit, phrase=_PHRASES[motion], article=article)


def parse_caption(text: str) -> tuple[int | None, str | None]:
    """(digit, motion) named by a caption, None where it names none or several (the inverse of
    :func:`caption_for`, for scoring generated captions): the first digit word, and the one motion whose
    phrase occurs."""
    words = text.lower().split()
    digit = next((int(w) for w in words if len(w) == 1 and w.isdigit()), None)
    joined = " ".join(words)
    found = [m for m, p in _PHRASES.items() if f" {p} " in f" {joined} "]  # whole words: "clockwise" is
    # not found in "counterclockwise"
    return digit, (found[0] if len(found) == 1 else None)


def make_digits_motion(
    out_dir: str | Path,
    n: int = 3000,
    num_frames: int = 16,
    size: int = 64,
    contrast: float = 0.5,
    seed: int = 0,
    workers: int = 0,
    audio: bool = False,
) -> Path:
    """Generate the digits-motion dataset; returns the path of ``out_dir/manifest.csv``.

    Args:
        out_dir: output folder; clips go to ``out_dir/videos/NNNNNN.mp4``, the manifest (columns
            path,digit,motion,caption,split,source; path relative to ``out_dir``) and ``meta.json``
            (generation parameters) beside them. The manifest is written last, atomically.
        n: number of clips.
        num_frames: frames per clip (>= 2), 8 fps nominal.
        size: frame height = width in pixels (even, >= 16: H.264 4:2:0 needs even sizes).
        contrast: background texture amplitude, 0 = plain dark grey, 1 = strong texture.
        seed: everything random comes from this seed; the same arguments give the same bytes,
            whatever ``workers`` is.
        workers: encoder processes (0 = render and encode in this process).
        audio: add an AAC track with one of four tones per clip (:data:`SOUNDS`) and the label columns
            ``sound`` (audio alone) and ``motion_sound`` (needs both); the frames and the other columns are
            those of ``audio=False`` (the tones come from their own random stream).
    """
    if n < 1 or num_frames < 2:
        raise ValueError(f"need n >= 1 and num_frames >= 2, got n={n}, num_frames={num_frames}")
    if size < 16 or size % 2:
        raise ValueError(f"size must be even and >= 16 (H.264 4:2:0), got {size}")
    if not 0 <= contrast <= 1:
        raise ValueError(f"contrast must lie in [0, 1], got {contrast}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    images, labels = load_digit_images()
    rng = np.random.default_rng(seed)
    is_test = split_sources(labels, TEST_FRACTION, rng)
    params = sample_params(n, labels, is_test, rng, size)

    out_dir = Path(out_dir)
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    rel_paths = [f"videos/{i:06d}.mp4" for i in range(n)]
    sounds = None
    if audio:  # a separate stream: the video parameters stay those of audio=False
        audio_rng = np.random.default_rng([seed, 0xA0D10])
        names = list(SOUNDS)
        sounds = [(names[k], [seed, 0xA0D10, i]) for i, k in enumerate(audio_rng.integers(0, len(names), n))]
    jobs = []
    for start in range(0, n, CHUNK):
        sl = slice(start, min(start + CHUNK, n))
        chunk = params.take(sl)
        paths = [str(out_dir / p) for p in rel_paths[sl]]
        jobs.append((images[chunk.source], chunk, paths, num_frames, size, contrast, sounds and sounds[sl]))
    if workers == 0:
        for job in jobs:
            _render_and_encode(job)
    else:
        # spawn, not fork: forking a process whose torch thread pool is live can deadlock.
        with multiprocessing.get_context("spawn").Pool(
            min(workers, len(jobs)), initializer=torch.set_num_threads, initargs=(1,)
        ) as pool:
            for _ in pool.imap_unordered(_render_and_encode, jobs):
                pass

    rows = []
    for i in range(n):
        src = int(params.source[i])
        digit, motion = int(labels[src]), MOTIONS[params.motion[i]]
        split = "test" if is_test[src] else "train"
        rows.append([rel_paths[i], digit, motion, caption_for(digit, motion, params.template[i]), split, src])
        if sounds is not None:
            rows[-1] += [sounds[i][0], f"{motion}+{sounds[i][0]}"]
    meta = {
        "dataset": "digits-motion",
        "source": "scikit-learn load_digits (UCI optdigits test set, 1,797 8x8 handwritten digits)",
        "n": n,
        "num_frames": num_frames,
        "size": size,
        "contrast": contrast,
        "seed": seed,
        "fps": FPS,
        "codec": "h264 (libx264, yuv420p, crf 18, preset fast, mbtree off)",
        "motions": list(MOTIONS),
        "middle_frame": num_frames // 2,
        "center_range_px": CENTER_RANGE * size,
        "angle_range_deg": ANGLE_RANGE,
        "scale_range": list(SCALE_RANGE),
        "digit_size_px": DIGIT_SIZE * size,
        "shift_px": SHIFT * size,
        "rotation_deg": ROTATION,
        "zoom": ZOOM,
        "background": "static smooth noise",
        "test_fraction": TEST_FRACTION,
        "num_train": sum(r[4] == "train" for r in rows),
        "num_test": sum(r[4] == "test" for r in rows),
    }
    if audio:
        meta["audio"] = {"codec": "aac", "rate": AUDIO_RATE, "tones_hz": SOUNDS}
    from vidfm.io import atomic_write_text

    atomic_write_text(out_dir / "meta.json", json.dumps(meta, indent=2) + "\n")
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS + (("sound", "motion_sound") if audio else ()))
    writer.writerows(rows)
    manifest = out_dir / "manifest.csv"
    atomic_write_text(manifest, text.getvalue())
    return manifest
