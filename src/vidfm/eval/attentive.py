"""Attentive probe: a MAP head (multi-head attention pooling + linear classifier) trained on frozen tokens.

The frozen-backbone protocol of VideoGLUE (Yuan et al. 2023, §3 "frozen backbone") that VideoPrism and
InternVideo2 report: the encoder runs once, its output tokens [N, L, D] are cached, and a light head that
*attends* over the tokens is trained with AdamW. A linear probe on mean-pooled tokens cannot weigh tokens
by position, so it loses most of what a video encoder knows about order and motion; the attentive head
can, which is why VideoGLUE probes attentively.

Several heads (one per learning rate × weight decay) are trained together, dinov2 ``AllClassifiers``-style:
every step reads one batch of cached tokens and updates all heads, each in its own AdamW group. The
setting is chosen on a held-out stratified fold of the training split (never on test), then, as the linear
probe does, retrained on the whole training split and scored once on test.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vidfm.data.config import DataConfig, build_dataset
from vidfm.data.transforms import AugmentConfig
from vidfm.eval.features import Features, extract_features
from vidfm.layers.pooling import AttentionPool
from vidfm.models.encoder import EncoderOutput
from vidfm.train.optim import build_optimizer, param_groups, set_lr_wd
from vidfm.train.schedule import cosine_schedule
from vidfm.utils import log


@dataclass
class TokenFeatures:
    """Cached tokens of one centred clip per video.

    x: float16 [N, L, D] encoder output tokens; pooled: float32 [N, D] their mean (the ``mean`` clip
    feature of :func:`vidfm.eval.features.pool_tokens`); labels: {column: [N] int64}; paths: N files.
    """

    x: torch.Tensor
    pooled: np.ndarray
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    paths: list[str] = field(default_factory=list)

    def features(self) -> Features:
        """The mean-pooled clip features, for the linear and kNN probes (no second encoder pass)."""
        return Features(self.pooled, self.labels, self.paths)


class _TokensAsFeature(nn.Module):
    """Presents an encoder's whole token grid [B,L,D] as a single token [B,1,L·D], so
    :func:`extract_features` (batching, normalisation, crops, autocast) returns every token of a clip."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, video: torch.Tensor) -> EncoderOutput:
        out = self.encoder(video)
        self.shape = tuple(out.tokens.shape[1:])  # (L, D), to unflatten afterwards
        return EncoderOutput(tokens=out.tokens.flatten(1)[:, None], cls=None, grid=(1, 1, 1))


@torch.no_grad()
def extract_tokens(
    encoder: nn.Module,
    dataset: torch.utils.data.Dataset,
    augment: AugmentConfig,
    batch_size: int = 16,
    chunk: int = 256,
    workers: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> TokenFeatures:
    """Tokens of every item of ``dataset`` (single clip, centre crop), ``chunk`` items at a time so the
    float32 copies never exceed one chunk; the cache itself is float16."""
    wrapped = _TokensAsFeature(encoder)
    xs, pooled, labels, paths = [], [], {}, []
    for start in range(0, len(dataset), chunk):
        part = torch.utils.data.Subset(dataset, range(start, min(start + chunk, len(dataset))))
        f = extract_features(
            wrapped,
            part,
            augment,
            batch_size=batch_size,
            workers=workers,
            device=device,
            progress=progress,
        )
        tokens = torch.from_numpy(f.x).view(len(part), *wrapped.shape)  # [n,L,D] float32
        pooled.append(tokens.mean(1).numpy())
        xs.append(tokens.half())
        for col, y in f.labels.items():
            labels.setdefault(col, []).append(y)
        paths += f.paths
    return TokenFeatures(
        x=torch.cat(xs),
        pooled=np.concatenate(pooled),
        labels={c: np.concatenate(ys) for c, ys in labels.items()},
        paths=paths,
    )


def split_tokens(
    encoder: nn.Module,
    data: DataConfig,
    augment: AugmentConfig,
    splits: tuple[str, ...] = ("train", "test"),
    workers: int = 0,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> dict[str, TokenFeatures]:
    """Tokens of each split, decoded at the encoder's input size with the deterministic centred test clip
    (the decoding of :func:`vidfm.eval.frozen.split_features`)."""
    data = dataclasses.replace(data, short_side=augment.size)
    out = {}
    for split in splits:
        dataset = build_dataset(data, seed=seed, split=split, views=1, train=False, crop_square=True)
        out[split] = extract_tokens(
            encoder, dataset, augment, workers=workers, device=device, progress=progress
        )
    return out


class AttentiveHead(nn.Module):
    """MAP pooling (big_vision ``MAPHead``: one learned query, attention, residual MLP) + linear classifier.

    Args:
        dim: token width D. num_classes: outputs. num_heads: attention heads. mlp_ratio: MAP MLP width.
    """

    def __init__(self, dim: int, num_classes: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.pool = AttentionPool(dim, num_heads, num_queries=1, mlp_ratio=mlp_ratio)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.01)  # as the MAE linear probe (main_linprobe.py)
        nn.init.zeros_(self.head.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B,L,D] -> logits [B,C]."""
        return self.head(self.pool(tokens)[:, 0])


@dataclass
class AttentiveConfig:
    """lrs × weight_decays: the grid of heads trained together. epochs/batch_size/warmup_epochs: AdamW with
    a cosine schedule per head (lr × schedule). num_heads: attention heads (None = D // 64, at least 1, as a
    ViT of that width). holdout: fraction of train used to pick the setting. refit: retrain the chosen
    setting on all of train before the one test evaluation."""

    lrs: tuple[float, ...] = (3e-3, 1e-3, 3e-4)
    weight_decays: tuple[float, ...] = (0.0, 0.05)
    epochs: int = 20
    batch_size: int = 64
    warmup_epochs: float = 2.0
    num_heads: int | None = None
    mlp_ratio: float = 4.0
    holdout: float = 0.2
    refit: bool = True
    seed: int = 0


@dataclass
class AttentiveResult:
    top1: float
    detail: str = ""
    val: dict[str, float] = field(default_factory=dict)  # held-out accuracy of every setting


class _Standardize:
    """Per-channel mean/std of the training tokens, applied batch by batch (features stay float16)."""

    def __init__(self, x: torch.Tensor, chunk: int = 256) -> None:
        s = torch.zeros(x.shape[-1], dtype=torch.float64)
        s2 = torch.zeros_like(s)
        for i in range(0, len(x), chunk):
            part = x[i : i + chunk].double().flatten(0, 1)
            s += part.sum(0)
            s2 += (part * part).sum(0)
        n = x.shape[0] * x.shape[1]
        self.mean = (s / n).float()
        self.std = ((s2 / n - (s / n) ** 2).clamp_min(0).sqrt() + 1e-6).float()

    def __call__(self, x: torch.Tensor, device: torch.device) -> torch.Tensor:
        return (x.to(device).float() - self.mean.to(device)) / self.std.to(device)


def train_heads(
    x: torch.Tensor,
    y: np.ndarray,
    settings: list[tuple[float, float]],
    num_classes: int,
    cfg: AttentiveConfig,
    norm: _Standardize,
    device: torch.device,
) -> nn.ModuleList:
    """Train one :class:`AttentiveHead` per (lr, weight decay) on tokens x [N,L,D] with labels y [N], all
    heads on the same batches in one pass; returns them in eval mode."""
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    heads_n = cfg.num_heads or max(1, x.shape[-1] // 64)
    heads = nn.ModuleList(AttentiveHead(x.shape[-1], num_classes, heads_n, cfg.mlp_ratio) for _ in settings)
    heads = heads.to(device).train()
    groups = []
    for head, (lr, wd) in zip(heads, settings, strict=True):
        for g in param_groups(head, wd):  # norms, biases and the query get no weight decay
            g["lr_scale"], g["wd_scale"] = lr, g["wd_scale"] * wd
            groups.append(g)
    opt = build_optimizer(groups, lr=1.0, betas=(0.9, 0.999))
    per_epoch = max(1, -(-len(x) // cfg.batch_size))
    total = cfg.epochs * per_epoch
    schedule = cosine_schedule(1.0, 0.0, total, min(total, round(cfg.warmup_epochs * per_epoch)))
    labels = torch.as_tensor(y, dtype=torch.long)
    for step in range(total):
        if step % per_epoch == 0:
            order = torch.randperm(len(x), generator=gen)
        idx = order[(step % per_epoch) * cfg.batch_size :][: cfg.batch_size]
        xb, yb = norm(x[idx], device), labels[idx].to(device)
        set_lr_wd(opt, float(schedule[step]), 1.0)
        logits = torch.stack([h(xb) for h in heads])  # [H,B,C]
        # Sum of per-head mean losses: heads share no parameters, so each gets its own gradient.
        loss = F.cross_entropy(logits.flatten(0, 1), yb.repeat(len(heads)), reduction="sum") / len(yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return heads.eval()


@torch.no_grad()
def predict(heads: nn.ModuleList, x: torch.Tensor, norm: _Standardize, device: torch.device) -> np.ndarray:
    """Class predictions [H, N] of every head."""
    preds = []
    for i in range(0, len(x), 256):
        xb = norm(x[i : i + 256], device)
        preds.append(torch.stack([h(xb).argmax(-1) for h in heads]).cpu())
    return torch.cat(preds, dim=1).numpy()


def attentive_probe(
    train_x: torch.Tensor,
    train_y: np.ndarray,
    test_x: torch.Tensor,
    test_y: np.ndarray,
    cfg: AttentiveConfig | None = None,
    device: torch.device | str = "cpu",
) -> AttentiveResult:
    """Top-1 on test of the attentive probe whose (lr, wd) won on a held-out fold of train.

    train_x/test_x: tokens [N,L,D] (any float dtype; cached float16 is fine); *_y: int labels [N].
    """
    from sklearn.model_selection import train_test_split

    cfg = cfg or AttentiveConfig()
    device = torch.device(device)
    if train_x.ndim != 3 or test_x.ndim != 3 or train_x.shape[1:] != test_x.shape[1:]:
        raise ValueError(
            f"tokens must be [N,L,D] alike, got {tuple(train_x.shape)} and {tuple(test_x.shape)}"
        )
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    settings = [(lr, wd) for lr in cfg.lrs for wd in cfg.weight_decays]
    counts = np.bincount(train_y)
    stratify = train_y if counts[counts > 0].min() >= 2 else None
    tr, va = train_test_split(
        np.arange(len(train_y)), test_size=cfg.holdout, random_state=cfg.seed, stratify=stratify
    )
    tr, va = torch.as_tensor(np.sort(tr)), torch.as_tensor(np.sort(va))
    norm = _Standardize(train_x[tr])
    heads = train_heads(train_x[tr], train_y[tr.numpy()], settings, num_classes, cfg, norm, device)
    val_acc = (predict(heads, train_x[va], norm, device) == train_y[va.numpy()][None]).mean(1)
    best = int(np.argmax(val_acc))  # ties: the first setting in grid order
    lr, wd = settings[best]
    log.info("attentive probe: held-out top-1 %s", " ".join(f"{a:.3f}" for a in val_acc))
    if cfg.refit:
        norm = _Standardize(train_x)
        heads = train_heads(train_x, train_y, [settings[best]], num_classes, cfg, norm, device)
        acc = float((predict(heads, test_x, norm, device)[0] == test_y).mean())
    else:
        acc = float((predict(heads[best : best + 1], test_x, norm, device)[0] == test_y).mean())
    return AttentiveResult(
        top1=acc,
        detail=f"lr={lr:g} wd={wd:g} (held-out {val_acc[best]:.3f})",
        val={f"lr={a:g} wd={b:g}": float(v) for (a, b), v in zip(settings, val_acc, strict=True)},
    )
