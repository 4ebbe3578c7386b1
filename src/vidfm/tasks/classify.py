"""Supervised video classification step (fine-tuning): clip -> encoder -> pooled feature -> class logits.

The VideoMAE fine-tuning recipe (official ``run_class_finetuning.py``, ``modeling_finetune.py``,
``mixup.py``): mean-pooled tokens through a fresh ``fc_norm`` (the pre-training encoder's final norm is
dropped), a linear head initialised small (trunc-normal 0.02 × ``init_scale`` 0.001), drop path in the
encoder, label smoothing, and mixup/cutmix applied to the whole batch with one λ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vidfm.data.transforms import AugmentConfig, VideoAugment
from vidfm.models.encoder import EncoderConfig, VideoEncoder
from vidfm.train.optim import vit_layer_id


@dataclass
class MixupConfig:
    """mixup/cutmix: Beta(α, α) parameters, 0 disables each (VideoMAE: 0.8 and 1.0). prob: chance a batch is
    mixed at all. switch_prob: chance of cutmix rather than mixup when both are on (timm ``Mixup``)."""

    mixup: float = 0.8
    cutmix: float = 1.0
    prob: float = 1.0
    switch_prob: float = 0.5

    @property
    def active(self) -> bool:
        return self.prob > 0 and (self.mixup > 0 or self.cutmix > 0)


def smooth_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """[B] int -> [B,C] targets with ``1 - s + s/C`` on the label and ``s/C`` elsewhere (timm ``one_hot``)."""
    off = smoothing / num_classes
    out = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    return out.scatter_(1, labels[:, None], 1.0 - smoothing + off)


def cutmix_box(height: int, width: int, lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A box (top, bottom, left, right) of about (1 - lam) of the frame, centred uniformly, clipped at the
    borders (timm ``rand_bbox``)."""
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
    top, bottom = np.clip([cy - cut_h // 2, cy + cut_h // 2], 0, height)
    left, right = np.clip([cx - cut_w // 2, cx + cut_w // 2], 0, width)
    return int(top), int(bottom), int(left), int(right)


def mix_batch(
    video: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    cfg: MixupConfig,
    smoothing: float,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Batch-mode mixup/cutmix (timm ``Mixup._mix_batch``): each clip is mixed with the clip at the mirrored
    batch position, one λ for the batch. Returns (video [B,C,T,H,W], soft targets [B,C], λ).

    Cutmix pastes one spatial box through every frame (a tube). The official VideoMAE ``mixup.py`` indexes
    ``x[:, :, yl:yh, xl:xh]`` on its [B,C,T,H,W] input, which cuts along T and H; the box here is on H and W,
    as cutmix intends, and λ is corrected to the pasted area as there.
    """
    device = generator.device if generator is not None else "cpu"
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=device).item())
    rng = np.random.default_rng(seed)  # Beta draws; seeded from the step's generator, so resumable
    lam = 1.0
    if cfg.active and rng.random() < cfg.prob:
        use_cutmix = cfg.cutmix > 0 and (cfg.mixup <= 0 or rng.random() < cfg.switch_prob)
        if use_cutmix:
            lam = float(rng.beta(cfg.cutmix, cfg.cutmix))
            top, bottom, left, right = cutmix_box(video.shape[-2], video.shape[-1], lam, rng)
            video = video.clone()
            video[..., top:bottom, left:right] = video.flip(0)[..., top:bottom, left:right]
            lam = 1.0 - (bottom - top) * (right - left) / (video.shape[-2] * video.shape[-1])
        else:
            lam = float(rng.beta(cfg.mixup, cfg.mixup))
            video = video * lam + video.flip(0) * (1.0 - lam)
    y = smooth_one_hot(labels, num_classes, smoothing)
    return video, y * lam + y.flip(0) * (1.0 - lam), lam


class ClassifyTask(nn.Module):
    """Encoder + pooling + head, and the batch preparation of one fine-tuning step.

    Args:
        encoder: encoder config (``drop_path`` set for fine-tuning; ``final_norm`` False with mean pooling).
        num_classes: number of classes of ``label``.
        label: the manifest's label column to learn.
        augment: crop/normalise config; its size must match ``encoder.img_size``.
        pool: ``"mean"`` (VideoMAE ``use_mean_pooling``: mean of tokens -> fc_norm) or ``"cls"``.
        label_smoothing: ε of the smoothed targets (VideoMAE 0.1).
        mixup: batch mixup/cutmix; inactive when ``mixup.prob == 0``.
        fc_drop: dropout before the head (VideoMAE ``fc_drop_rate``, 0 for K400).
        init_scale: the head's initial weights are trunc-normal(0.02) × this (VideoMAE 0.001).
    """

    def __init__(
        self,
        encoder: EncoderConfig,
        num_classes: int,
        label: str,
        augment: AugmentConfig,
        pool: Literal["mean", "cls"] = "mean",
        label_smoothing: float = 0.1,
        mixup: MixupConfig | None = None,
        fc_drop: float = 0.0,
        init_scale: float = 0.001,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"classification needs at least 2 classes, got {num_classes}")
        if pool not in ("mean", "cls"):
            raise ValueError(f"pool must be 'mean' or 'cls', got {pool!r}")
        if pool == "cls" and not encoder.cls_token:
            raise ValueError("pool='cls' needs an encoder with cls_token=True")
        self.encoder = VideoEncoder(encoder)
        self.augment = VideoAugment(augment)
        self.num_classes, self.label, self.pool = num_classes, label, pool
        self.label_smoothing = label_smoothing
        self.mixup = mixup or MixupConfig(prob=0.0)
        width = self.encoder.width
        self.fc_norm = nn.LayerNorm(width, eps=1e-6) if pool == "mean" else nn.Identity()
        self.fc_drop = nn.Dropout(fc_drop)
        self.head = nn.Linear(width, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        with torch.no_grad():
            self.head.weight.mul_(init_scale)
        # Layer-wise lr decay (the trainer reads these): embeddings 0, block i -> i + 1, head and fc_norm last.
        self.num_layers = self.encoder.depth
        self.layer_id = partial(vit_layer_id, num_layers=self.encoder.depth, prefix="encoder.")

    def no_weight_decay(self) -> set[str]:
        return {f"encoder.{n}" for n in self.encoder.no_weight_decay()}

    def logits(self, video: torch.Tensor) -> torch.Tensor:
        """Normalised video [B,C,T,H,W] -> class logits [B,num_classes]."""
        out = self.encoder(video)
        feat = self.fc_norm(out.pooled(self.pool))
        return self.head(self.fc_drop(feat))

    def forward(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        labels = batch["labels"].get(self.label)
        if labels is None:
            raise KeyError(f"batch has no label column {self.label!r} (have {sorted(batch['labels'])})")
        if bool((labels < 0).any()) or bool((labels >= self.num_classes).any()):
            raise ValueError(
                f"labels of {self.label!r} must lie in [0, {self.num_classes}): unlabelled rows?"
            )
        video = self.augment.normalize(self.augment(batch["video"], generator, view=batch.get("view")))
        video, target, _ = mix_batch(
            video, labels, self.num_classes, self.mixup, self.label_smoothing, generator
        )
        logits = self.logits(video)
        loss = torch.sum(-target * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()
        acc = (logits.argmax(-1) == labels).float().mean()  # against the unmixed labels
        return {"loss": loss, "acc": acc}
