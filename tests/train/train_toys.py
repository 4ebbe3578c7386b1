"""Tiny datasets and tasks for the trainer tests (CPU, fp32, milliseconds per step)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

from vidfm.layers.frozen import FrozenModule

T, H, W, C = 2, 4, 4, 3
TOKENS, DIM = T * H * W, C


class ToyVideos(Dataset):
    """Deterministic clips: item ``i`` in epoch ``e`` depends only on ``(e, i)`` (like a real dataset's
    per-epoch temporal jitter), so any fetch order or process gives the same data."""

    def __init__(self, n: int = 24) -> None:
        self.n, self.epoch, self.epochs_seen, self.fetched = n, 0, [], []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.epochs_seen.append(epoch)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        self.fetched.append((self.epoch, index))
        g = torch.Generator().manual_seed(1000 * self.epoch + index)
        video = torch.randint(0, 256, (T, H, W, C), generator=g, dtype=torch.uint8)
        return {
            "video": video,
            "labels": {"y": index % 3},
            "caption": None,
            "index": index,
            "path": f"{index}.mp4",
        }


def collate(items: list[dict]) -> dict:
    return {
        "video": torch.stack([it["video"] for it in items]),
        "labels": {"y": torch.tensor([it["labels"]["y"] for it in items], dtype=torch.int64)},
        "caption": [it["caption"] for it in items],
        "index": torch.tensor([it["index"] for it in items]),
        "path": [it["path"] for it in items],
    }


def tokens(batch: dict) -> torch.Tensor:
    """uint8 ``[B,T,H,W,C]`` -> float tokens ``[B,N,C]`` in [0, 1]."""
    return batch["video"].float().div(255).flatten(1, 3)


class MaskedToyTask(nn.Module):
    """Masked reconstruction: random masking from the generator, dropout, a frozen teacher target.

    Its state dict has ``teacher.*`` keys that must never reach a checkpoint or the optimizer.
    """

    def __init__(self, dropout: float = 0.2, hidden: int = 16) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.randn(1, TOKENS, DIM) * 0.02)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, DIM))
        self.net = nn.Sequential(
            nn.Linear(DIM, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.LayerNorm(hidden),
            nn.Linear(hidden, DIM),
        )
        self.teacher = FrozenModule(nn.Linear(DIM, DIM))

    def forward(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        x = tokens(batch)  # [B, N, C]
        b, n, _ = x.shape
        # Random 50% masking drawn from the step's generator (as a real task's mask generator).
        noise = torch.rand(b, n, generator=generator, device=x.device)
        masked = noise < 0.5  # [B, N]
        inp = torch.where(masked[..., None], self.mask_token.expand(b, n, -1), x) + self.pos_embed
        pred = self.net(inp)
        with torch.no_grad():
            target = self.teacher(x)
        err = (pred - target).pow(2).mean(-1)  # [B, N]
        pixel = (err * masked).sum() / masked.sum().clamp(min=1)
        visible = (err * ~masked).sum() / (~masked).sum().clamp(min=1)
        return {"loss": pixel + 0.1 * visible, "pixel": pixel, "visible": visible}


class LinearToyTask(nn.Module):
    """Deterministic per-sample regression (no batch statistics, no randomness): the mean loss of a
    batch of 8 equals the mean of two batches of 4, so accumulation must give the same update."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(DIM, 1)

    def forward(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        x = tokens(batch).mean(1)  # [B, C]
        y = batch["labels"]["y"].float()[:, None]  # [B, 1]
        return {"loss": (self.proj(x) - y).pow(2).mean()}


class NanOnStepsTask(nn.Module):
    """A linear task whose loss is NaN at the given 0-based steps (counted by calls)."""

    def __init__(self, bad_calls: set[int]) -> None:
        super().__init__()
        self.proj = nn.Linear(DIM, 1)
        self.bad_calls, self.calls = bad_calls, 0

    def forward(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        loss = self.proj(tokens(batch)).pow(2).mean()
        if self.calls in self.bad_calls:
            loss = loss * float("nan")
        self.calls += 1
        return {"loss": loss, "aux": loss.detach() * 2}
