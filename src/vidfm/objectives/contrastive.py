"""Video(image)-text contrastive loss (VTC): symmetric InfoNCE with a learnable temperature across ranks.

Official UMT ``multi_modality/models/criterions.py`` (``VTC_VTM_Loss.vtc_loss``): L2-normalised embeddings,
similarities divided by the temperature, targets from ``idx`` (every pair sharing an id is a positive; each
row's targets sum to one), ``(CE_v2t + CE_t2v) / 2``; embeddings are all-gathered with gradients. Here each
rank scores its own rows against every rank's columns (:func:`vidfm.train.distributed.gather_with_grad`),
which with DDP's gradient averaging gives the update of the whole global batch in one process. The
temperature is clamped to [0.001, 0.5] before each step by the task (``clip_contrastive_temperature``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vidfm.train.distributed import gather_with_grad, is_distributed


def positive_targets(idx: torch.Tensor, idx_all: torch.Tensor) -> torch.Tensor:
    """idx [B] (rows), idx_all [M] (columns) -> [B,M] targets: 1/k on the k columns sharing the row's id."""
    match = (idx[:, None] == idx_all[None, :]).float()
    if bool((match.sum(1) == 0).any()):
        raise ValueError("a row has no positive column: its own pair must be among the columns")
    return match / match.sum(1, keepdim=True)


def vtc_loss(
    video: torch.Tensor,
    text: torch.Tensor,
    temperature: torch.Tensor | float,
    idx: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE between video [B,E] and text [B,E] embeddings (normalised here).

    Args:
        video, text: row i of each is a pair.
        temperature: τ (a learnable scalar tensor in UMT, initialised at 0.07).
        idx: [B] integer ids; rows with equal ids are positives of each other (several frames or
            captions of one video). None: only the diagonal pairs are positives.
    """
    if video.shape != text.shape or video.ndim != 2:
        raise ValueError(f"video {tuple(video.shape)} and text {tuple(text.shape)} must both be [B, E]")
    v = F.normalize(video.float(), dim=-1)
    t = F.normalize(text.float(), dim=-1)
    v_all, t_all = gather_with_grad(v), gather_with_grad(t)  # [M,E], M = world · B
    if idx is None:  # the local rows are a contiguous block of the gathered ones
        idx = torch.arange(v.shape[0], device=v.device) + _rank() * v.shape[0]
    idx = idx.to(v.device).long()
    targets = positive_targets(idx, gather_with_grad(idx))
    v2t = v @ t_all.t() / temperature  # [B,M]
    t2v = t @ v_all.t() / temperature
    loss_v2t = -(F.log_softmax(v2t, dim=1) * targets).sum(1).mean()
    loss_t2v = -(F.log_softmax(t2v, dim=1) * targets).sum(1).mean()
    return (loss_v2t + loss_t2v) / 2


def _rank() -> int:
    return torch.distributed.get_rank() if is_distributed() else 0


def similarity(
    video: torch.Tensor, text: torch.Tensor, temperature: torch.Tensor | float = 1.0
) -> torch.Tensor:
    """Cosine similarities / τ: video [B,E], text [M,E] -> [B,M] (the local matrix VTM samples from)."""
    return F.normalize(video.float(), dim=-1) @ F.normalize(text.float(), dim=-1).t() / temperature


@torch.no_grad()
def clamp_temperature_(temperature: torch.Tensor, low: float = 0.001, high: float = 0.5) -> None:
    """Keep a learnable τ in [low, high], in place (official ``UMT.clip_contrastive_temperature``, called
    at the start of every forward)."""
    temperature.clamp_(low, high)
