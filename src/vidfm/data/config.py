"""The data section of a recipe config, and the one function that turns it into a dataset."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class DataConfig:
    """manifest: a CSV manifest or a class-per-folder root. split: rows of that split (None = all).
    sampling: ``"dense"`` (num_frames at ``stride`` from a random start, VideoMAE) or ``"segment"`` (one frame
    per equal segment, TSN/UMT). short_side: resize on decode, then a centre square crop.
    """

    manifest: str = ""
    split: str | None = "train"
    sampling: Literal["dense", "segment"] = "dense"
    num_frames: int = 16
    stride: int = 4
    short_side: int = 256
    max_failure_fraction: float = 0.1


def build_dataset(
    cfg: DataConfig,
    seed: int = 0,
    split: str | None = None,
    views: int = 1,
    train: bool = True,
    crop_square: bool = True,
):
    """A :class:`vidfm.data.datasets.VideoDataset` over ``cfg.manifest`` (``split`` overrides ``cfg.split``).

    ``train``: random clips (pre-training) or deterministic, evenly spaced test clips (features, probes);
    ``crop_square=False`` keeps the full frame for multi-crop testing.
    """
    from vidfm.data.datasets import VideoDataset, folder_records, read_manifest
    from vidfm.data.sampling import SamplingConfig

    if not cfg.manifest:
        raise ValueError("data.manifest is not set: give a CSV manifest or a class-per-folder root")
    split = cfg.split if split is None else split
    if cfg.manifest.endswith(".csv"):
        records = read_manifest(cfg.manifest, split=split)
    else:
        records = folder_records(cfg.manifest)
    sampling = SamplingConfig(mode=cfg.sampling, num_frames=cfg.num_frames, stride=cfg.stride)
    return VideoDataset(
        records,
        sampling,
        short_side=cfg.short_side,
        views=views,
        seed=seed,
        max_failure_fraction=cfg.max_failure_fraction,
        crop_square=crop_square,
        train=train,
    )
