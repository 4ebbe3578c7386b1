"""A video's own audio stream: PyAV decoding to 16 kHz mono, Kaldi-style 64-bin log-mel filterbanks.

InternVideo2's audio input (official ``multi_modality/dataset/av_utils.py`` ``load_audio_av``): the first audio
stream, channels averaged to mono, resampled to 16 kHz, at most 10 s, scaled to the int16 range (``× 2**15``),
``torchaudio.compliance.kaldi.fbank(num_mel_bins=64, frame_length=25, frame_shift=10)``, normalised with
BEATs' AudioSet statistics ``(fbank - 15.41663) / (2 · 6.55582)``, zero-padded to a fixed number of frames
(998 for 10 s) with a padding mask. A video without audio is skipped there; here it gives zeros and
``present=False``, so a batch can mix both (:func:`audio_features`).

The filterbank is computed here in torch (torchaudio is not a dependency), following Kaldi's
``compute-fbank-feats`` defaults as torchaudio implements them: frames with ``snip_edges`` (1 + (S - 400) // 160
for 16 kHz), per-frame DC removal, pre-emphasis 0.97, the Povey window (Hann^0.85), FFT padded to 512 points,
power spectrum, 64 triangular filters equally spaced on the mel scale 1127·ln(1 + f/700) from 20 Hz to
Nyquist, natural log floored at float32 epsilon; no dither.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vidfm.utils import log

SAMPLE_RATE = 16_000
FBANK_MEAN, FBANK_STD = 15.41663, 6.55582  # BEATs / InternVideo2 normalisation constants


@dataclass
class AudioConfig:
    """sample_rate: Hz after resampling. seconds: the window read from the clip's start (and the fbank length
    it pads to). n_mels: filterbank bins (64 in InternVideo2)."""

    sample_rate: int = SAMPLE_RATE
    seconds: float = 10.0
    n_mels: int = 64

    def num_frames(self) -> int:
        """fbank frames of a full window (25 ms frames every 10 ms, Kaldi ``snip_edges``)."""
        window, shift = self.sample_rate * 25 // 1000, self.sample_rate * 10 // 1000
        return 1 + (int(self.seconds * self.sample_rate) - window) // shift


def read_audio(
    path: str | Path, sample_rate: int = SAMPLE_RATE, seconds: float | None = None
) -> torch.Tensor | None:
    """The first audio stream of ``path`` as float mono [S] (the mean of its channels) at ``sample_rate`` (the first ``seconds``
    only, when given); None when the file has no audio stream or its audio cannot be decoded (logged)."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            # Keep the channels and average them (official ``audio.mean(0)``): FFmpeg's own downmix sums
            # channels with gains and can leave [-1, 1].
            resampler = av.AudioResampler(format="fltp", layout=None, rate=sample_rate)
            chunks, limit = [], None if seconds is None else int(seconds * sample_rate)
            for frame in container.decode(stream):
                frame.pts = None  # the resampler keeps its own clock
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().mean(axis=0))  # [channels, n] -> [n]
                if limit is not None and sum(len(c) for c in chunks) >= limit:
                    break
            for out in resampler.resample(None):  # flush
                chunks.append(out.to_ndarray().mean(axis=0))
    except (av.error.FFmpegError, OSError) as e:  # a damaged audio track must not lose the clip
        log.warning("%s: audio not decodable (%s); using silence", path, e)
        return None
    if not chunks:
        return None
    wave = torch.from_numpy(np.concatenate(chunks).astype(np.float32))
    return wave if seconds is None else wave[: int(seconds * sample_rate)]


def _mel(freq: torch.Tensor) -> torch.Tensor:
    return 1127.0 * torch.log1p(freq / 700.0)


def mel_banks(n_mels: int, n_fft: int, sample_rate: int, low: float = 20.0) -> torch.Tensor:
    """[n_mels, n_fft // 2 + 1] Kaldi triangular filters (the Nyquist column zero, as torchaudio pads it)."""
    half = n_fft // 2
    lo, hi = _mel(torch.tensor(low)), _mel(torch.tensor(sample_rate / 2))
    delta = (hi - lo) / (n_mels + 1)
    left = lo + torch.arange(n_mels)[:, None] * delta  # [M,1] mel edges of each filter
    center, right = left + delta, left + 2 * delta
    mel = _mel(torch.arange(half) * sample_rate / n_fft)[None, :]  # [1,half] mel of each FFT bin
    up, down = (mel - left) / (center - left), (right - mel) / (right - center)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    return torch.cat([banks, torch.zeros(n_mels, 1)], dim=1).double()


def log_mel(wave: torch.Tensor, sample_rate: int = SAMPLE_RATE, n_mels: int = 64) -> torch.Tensor:
    """Kaldi fbank of a mono waveform [S] in [-1, 1] -> [frames, n_mels] (before normalisation); see the module
    docstring. Fewer samples than one frame give [0, n_mels]."""
    x = wave.double() * 2**15  # Kaldi works on the int16 scale
    size, shift = sample_rate * 25 // 1000, sample_rate * 10 // 1000
    if x.numel() < size:
        return torch.zeros(0, n_mels)
    frames = x.unfold(0, size, shift)  # [F,size]
    frames = frames - frames.mean(dim=1, keepdim=True)  # DC removal
    prev = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
    frames = frames - 0.97 * prev  # pre-emphasis (the first sample against itself)
    n = torch.arange(size, dtype=torch.float64)
    frames = frames * (0.5 - 0.5 * torch.cos(2 * math.pi * n / (size - 1))) ** 0.85  # Povey window
    n_fft = 1 << (size - 1).bit_length()  # 512 at 16 kHz
    power = torch.fft.rfft(frames, n=n_fft).abs() ** 2  # [F, n_fft/2 + 1]
    energy = power @ mel_banks(n_mels, n_fft, sample_rate).t()
    return torch.log(energy.clamp_min(torch.finfo(torch.float32).eps)).float()


def audio_features(path: str | Path, cfg: AudioConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalised fbank of ``path``'s audio padded to the window, and its mask.

    Returns fbank float [F, n_mels] (F = ``cfg.num_frames()``; zeros where there is no sound) and valid bool
    [F] (True on frames computed from the file's audio; all False for a video without audio).
    """
    total = cfg.num_frames()
    out = torch.zeros(total, cfg.n_mels)
    valid = torch.zeros(total, dtype=torch.bool)
    wave = read_audio(path, cfg.sample_rate, cfg.seconds)
    if wave is None:
        return out, valid
    fbank = log_mel(wave, cfg.sample_rate, cfg.n_mels)[:total]
    out[: len(fbank)] = (fbank - FBANK_MEAN) / (2 * FBANK_STD)
    valid[: len(fbank)] = True
    return out, valid


class AudioVideoDataset(torch.utils.data.Dataset):
    """Items of a video dataset plus their audio: ``audio`` [F, n_mels], ``audio_valid`` [F] and ``av_caption``.

    ``av_caption``: the caption of video and sound together (InternVideo2's "text of video + audio + speech"
    pairs); for digits-motion with audio, the caption plus the tone's name from the manifest's ``sound``
    column (``"a 7 moving up, with a high tone"``); the plain caption where the row has no sound.

    Args:
        dataset: a :class:`vidfm.data.datasets.VideoDataset` (its items carry ``path`` and ``caption``).
        cfg: the audio window and filterbank.
        sounds: path -> sound name (None: none known).
    """

    def __init__(
        self, dataset: torch.utils.data.Dataset, cfg: AudioConfig, sounds: dict[str, str] | None = None
    ):
        self.dataset, self.cfg, self.sounds = dataset, cfg, sounds or {}

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key):  # noqa: ANN001, ANN204 - the wrapped dataset's keys
        item = dict(self.dataset[key])
        item["audio"], item["audio_valid"] = audio_features(item["path"], self.cfg)
        sound = self.sounds.get(str(item["path"]))
        caption = item.get("caption") or ""
        item["av_caption"] = f"{caption}, with a {sound} tone" if sound else caption
        return item


def sounds_of(manifest: str | Path) -> dict[str, str]:
    """{clip path as the dataset records it: sound name} from a manifest's ``sound`` column (empty without
    one)."""
    import csv

    manifest = Path(manifest)
    with manifest.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "sound" not in rows[0]:
        return {}
    return {
        str(Path(r["path"]) if Path(r["path"]).is_absolute() else manifest.parent / r["path"]): r["sound"]
        for r in rows
    }


def collate_av(items: list[dict]) -> dict:
    """:func:`vidfm.data.datasets.collate` plus ``audio`` [B,F,M], ``audio_valid`` [B,F], ``av_caption``."""
    from vidfm.data.datasets import collate

    batch = collate(items)
    batch["audio"] = torch.stack([it["audio"] for it in items])
    batch["audio_valid"] = torch.stack([it["audio_valid"] for it in items])
    batch["av_caption"] = [it["av_caption"] for it in items]
    return batch
