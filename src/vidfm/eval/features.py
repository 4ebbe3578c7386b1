"""Frozen clip features over a labelled dataset, with multi-view (clips × crops) averaging."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from tqdm import tqdm

from vidfm.models.encoder import EncoderOutput, VideoEncoder
from vidfm.utils import on_terminal

if TYPE_CHECKING:
    from vidfm.data.transforms import AugmentConfig

Pool = Literal["mean", "cls", "grid2x2"]


@dataclass
class Features:
    """x: [N, D] float32 clip features; labels: {column: [N] int64}; paths: N file paths."""

    x: np.ndarray
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    paths: list[str] = field(default_factory=list)


def pool_tokens(out: EncoderOutput, pool: Pool) -> torch.Tensor:
    """[B,N,D] tokens -> [B,D'] clip feature.

    ``mean``: average of all tokens (VideoMAE's fc_norm input); ``cls``: the class token; ``grid2x2``: the
    mean over each spatial quadrant, concatenated ([B,4D]) — keeps coarse layout, which a global mean of a
    small grid washes out.
    """
    if pool in ("mean", "cls"):
        return out.pooled(pool)
    if pool == "grid2x2":
        t, h, w = out.grid
        x = out.tokens.reshape(out.tokens.shape[0], t, h, w, -1)
        halves = [
            x[:, :, i * h // 2 : (i + 1) * h // 2, j * w // 2 : (j + 1) * w // 2]
            for i in (0, 1)
            for j in (0, 1)
        ]
        return torch.cat([q.mean(dim=(1, 2, 3)) for q in halves], dim=-1)
    raise ValueError(f"unknown pool {pool!r}; use mean, cls or grid2x2")


@torch.no_grad()
def extract_features(
    encoder: VideoEncoder,
    dataset: torch.utils.data.Dataset,
    augment: AugmentConfig,
    batch_size: int = 16,
    crops: int = 1,
    pool: Pool = "mean",
    workers: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> Features:
    """Encode every item of ``dataset``; views (the dataset's temporal clips × ``crops`` spatial crops) are
    encoded separately and their features averaged, as VideoMAE's multi-view test.

    Items hold ``video`` uint8 [T,H,W,C] or [V,T,H,W,C] already resized on decode; the crops are taken here,
    ``augment.size`` square, normalised with ``augment.mean``/``augment.std`` (the run's test transform).
    """
    from vidfm.data.datasets import collate
    from vidfm.data.transforms import multi_crop, normalize, to_float

    device = torch.device(device)
    encoder = encoder.eval().to(device)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate
    )
    mean_t, std_t = torch.tensor(augment.mean, device=device), torch.tensor(augment.std, device=device)
    feats, labels, paths = [], {}, []
    for batch in tqdm(loader, desc="features", disable=not on_terminal(progress), leave=False):
        video = batch["video"].to(device)
        if video.ndim == 5:  # one clip per item
            video = video[:, None]
        b, v = video.shape[:2]
        clips = normalize(to_float(video.flatten(0, 1)), mean_t, std_t)  # [B·V,C,T,H,W]
        views = multi_crop(clips, augment.size, crops)  # [B·V·crops,C,T,size,size]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            f = pool_tokens(encoder(views), pool).float()
        feats.append(f.view(b, v * crops, -1).mean(1).cpu())
        for col, y in batch["labels"].items():
            labels.setdefault(col, []).append(y)
        paths += list(batch["path"])
    return Features(
        x=torch.cat(feats).numpy(),
        labels={c: torch.cat(ys).numpy() for c, ys in labels.items()},
        paths=paths,
    )
