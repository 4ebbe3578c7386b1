"""Video-text matching (VTM): binary classification of (video, text) pairs through a cross-modal decoder.

Official UMT ``multi_modality/models/criterions.py`` (``VTC_VTM_Loss.vtm_loss``): for each text a negative
video and for each video a negative text are drawn from the batch, with probability softmax(sim) over the
non-positive pairs (``vtm_hard_neg=True``: hard negatives) or uniformly; the decoder scores the B positive
and 2B negative pairs, and a two-way head is trained with cross-entropy (label 1 = match).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sample_negatives(
    sim: torch.Tensor, idx: torch.Tensor, generator: torch.Generator | None, hard: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Negative partners within a batch.

    Args:
        sim: [B,B] video-to-text similarities (row = video), no gradient needed.
        idx: [B] ids; pairs sharing an id are positives and never drawn.
        generator: randomness (on ``sim``'s device).
        hard: draw ∝ softmax(sim) (official ``vtm_hard_neg``) or uniformly among negatives.

    Returns:
        (video index for each text [B], text index for each video [B]).
    """
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1] or sim.shape[0] != idx.shape[0]:
        raise ValueError(f"sim must be [B,B] with B = len(idx), got {tuple(sim.shape)}")
    if sim.shape[0] < 2:
        raise ValueError("video-text matching needs at least 2 pairs per batch to draw negatives")
    with torch.no_grad():
        positive = idx[:, None] == idx[None, :]
        if bool(positive.all(dim=1).any()):
            raise ValueError("a pair has no negative in its batch (every id in the batch is the same)")

        def draw(s: torch.Tensor) -> torch.Tensor:
            w = F.softmax(s.float() + 1e-4, dim=1) if hard else torch.ones_like(s, dtype=torch.float)
            w = w.masked_fill(positive, 0.0)
            # An underflowed hard row falls back to uniform over its negatives.
            w = torch.where(w.sum(1, keepdim=True) > 0, w, (~positive).float())
            return torch.multinomial(w, 1, generator=generator).squeeze(1)

        return draw(sim.t()), draw(sim)


def matching_loss(pos_logits: torch.Tensor, neg_logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the two-way head: pos_logits [B,2] are matches (label 1), neg_logits [M,2] are not."""
    logits = torch.cat([pos_logits, neg_logits]).float()
    labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    labels[: pos_logits.shape[0]] = 1
    return F.cross_entropy(logits, labels)
