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
    clip_store: str = ""
    resident: bool = False


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
    from vidfm.data.datasets import VideoDataset, source_records
    from vidfm.data.sampling import SamplingConfig

    if cfg.clip_store and crop_square:
        return _store_dataset(cfg, seed, split, views, train)
    if cfg.resident:
        raise ValueError("data.resident=true needs data.clip_store (vidfm data cache-clips)")
    if not cfg.manifest:
        from vidfm.errors import ConfigError

        raise ConfigError(
            "data.manifest is not set: --set data.manifest=PATH (a CSV manifest or a class-per-folder root)"
        )
    split = cfg.split if split is None else split
    records = source_records(cfg.manifest, split)
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


def _store_dataset(cfg: DataConfig, seed: int, split: str | None, views: int, train: bool):
    from vidfm.data.clip_store import ClipStoreDataset, read_store_index, store_matches
    from vidfm.data.sampling import SamplingConfig

    sampling = SamplingConfig(mode=cfg.sampling, num_frames=cfg.num_frames, stride=cfg.stride)
    index = read_store_index(cfg.clip_store)  # parsed once, for the check and the dataset
    why = store_matches(index, sampling, cfg.short_side)
    if why:
        raise ValueError(f"data.clip_store={cfg.clip_store} does not match the data config ({why})")
    split = cfg.split if split is None else split
    return ClipStoreDataset(cfg.clip_store, split, seed, views, train, resident=cfg.resident, index=index)


def with_clip_store(cfg: DataConfig, root: str, clips_per_video: int = 1, workers: int = 0) -> DataConfig:
    """``cfg`` reading a clip store at ``root`` of its manifest (every split), written there first unless a
    matching one exists: the manifest's videos are then decoded once for every run and evaluation."""
    import dataclasses
    from pathlib import Path

    from vidfm.data.clip_store import STORE_VERSION, read_store_index, store_matches, write_clip_store
    from vidfm.data.datasets import DataError, source_records
    from vidfm.data.sampling import SamplingConfig

    sampling = SamplingConfig(mode=cfg.sampling, num_frames=cfg.num_frames, stride=cfg.stride)
    records = source_records(cfg.manifest)
    try:
        index = read_store_index(root)
        stored = {v["path"] for v in index["videos"]} | {f["path"] for f in index["failed"]}
        fresh = (
            index.get("version") == STORE_VERSION
            and not store_matches(index, sampling, cfg.short_side)
            and stored == {r.path for r in records}
        )
    except DataError:
        fresh = False
    if not fresh:
        write_clip_store(records, Path(root), sampling, cfg.short_side, clips_per_video, workers)
    return dataclasses.replace(cfg, clip_store=str(root))
