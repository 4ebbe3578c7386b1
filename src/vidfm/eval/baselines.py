"""Trivial baseline features every accuracy table is read against.

Colour histogram + frame-difference energy (the baseline of ``../shared/data/README.md``, ~0.68 on
surv_fight): what a probe gets from low-level statistics alone, with no learned encoder.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from vidfm.eval.features import Features
from vidfm.utils import on_terminal


def trivial_clip_features(video: torch.Tensor, bins: int = 8) -> torch.Tensor:
    """uint8 [T,H,W,C] -> [C·bins + (T-1) + 4] float: per-channel colour histogram (normalised), the mean
    absolute difference between consecutive frames, and its mean/std/max/min."""
    v = video.float() / 255.0
    hist = [torch.histc(v[..., c], bins=bins, min=0.0, max=1.0) for c in range(v.shape[-1])]
    hist = torch.cat(hist) / v[..., 0].numel()
    diff = (v[1:] - v[:-1]).abs().mean(dim=(1, 2, 3))  # [T-1] motion energy per frame pair
    stats = torch.stack([diff.mean(), diff.std(), diff.max(), diff.min()])
    return torch.cat([hist, diff, stats])


def extract_trivial(dataset: torch.utils.data.Dataset, progress: bool = True) -> Features:
    """Trivial features for every item (its first temporal view when the dataset has several)."""
    feats, labels, paths = [], {}, []
    for i in tqdm(range(len(dataset)), desc="baseline", disable=not on_terminal(progress), leave=False):
        item = dataset[i]
        video = item["video"] if item["video"].ndim == 4 else item["video"][0]
        feats.append(trivial_clip_features(video))
        for col, y in item["labels"].items():
            labels.setdefault(col, []).append(y)
        paths.append(item["path"])
    return Features(
        x=torch.stack(feats).numpy(),
        labels={c: np.asarray(ys, dtype=np.int64) for c, ys in labels.items()},
        paths=paths,
    )
