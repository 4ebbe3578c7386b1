"""Frozen-encoder evaluation over a manifest's train and test splits: one feature pass, many probes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from vidfm.data.config import DataConfig, build_dataset
from vidfm.data.transforms import AugmentConfig
from vidfm.eval.features import Features, Pool, extract_features
from vidfm.eval.probes import knn_probe, linear_probe


@dataclass
class ProbeRow:
    label: str
    linear: float
    knn: float
    detail: str = ""


def split_features(
    encoder: torch.nn.Module | None,
    data: DataConfig,
    augment: AugmentConfig,
    splits: tuple[str, str] = ("train", "test"),
    views: int = 1,
    crops: int = 1,
    pool: Pool = "mean",
    workers: int = 0,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> dict[str, Features]:
    """Features of each split, decoded at the encoder's input size with deterministic test clips.

    ``encoder=None`` gives the trivial baseline (colour histogram + frame-difference energy) instead.
    """
    data = dataclasses.replace(data, short_side=augment.size)
    out = {}
    for split in splits:
        dataset = build_dataset(
            data, seed=seed, split=split, views=views, train=False, crop_square=crops == 1
        )
        if encoder is None:
            from vidfm.eval.baselines import extract_trivial

            out[split] = extract_trivial(dataset, progress=progress)
            continue
        out[split] = extract_features(
            encoder,
            dataset,
            augment,
            crops=crops,
            pool=pool,
            workers=workers,
            device=device,
            progress=progress,
        )
    return out


def probe_features(train: Features, test: Features, labels: list[str], seed: int = 0) -> list[ProbeRow]:
    """Linear probe and kNN top-1 per label column."""
    rows = []
    for col in labels:
        if col not in train.labels:
            raise KeyError(f"label column {col!r} not in the manifest (have {sorted(train.labels)})")
        lin = linear_probe(train.x, train.labels[col], test.x, test.labels[col], seed=seed)
        knn = knn_probe(train.x, train.labels[col], test.x, test.labels[col])
        rows.append(ProbeRow(col, lin.top1, knn.top1, lin.detail))
    return rows
