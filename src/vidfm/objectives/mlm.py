"""Masked language modelling (MLM) from text and video: BERT masking and the token cross-entropy.

Official UMT ``multi_modality/models/criterions.py`` (``MLMLoss.mask``): each token is selected with
probability ``mlm_masking_prob`` (0.5 in UMT pre-training), never padding or [CLS]; of the selected, 80%
become [MASK], half of the rest a random word, the rest stay; the loss is the cross-entropy on the selected
tokens only (label -100 elsewhere).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100


def mask_tokens(
    ids: torch.Tensor,
    prob: float,
    mask_id: int,
    vocab_size: int,
    keep_ids: tuple[int, ...],
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ids [B,L] -> (masked input ids [B,L], labels [B,L] with the original id on selected tokens, -100
    elsewhere). ``keep_ids``: ids never selected (padding and [CLS], as official UMT)."""
    if not 0.0 < prob < 1.0:
        raise ValueError(f"MLM masking probability must be in (0, 1), got {prob}")
    device = ids.device

    def coin(p: float) -> torch.Tensor:
        return torch.rand(ids.shape, generator=generator, device=device) < p

    selected = coin(prob)
    for k in keep_ids:
        selected &= ids != k
    labels = torch.where(selected, ids, torch.full_like(ids, IGNORE))
    to_mask = coin(0.8) & selected
    to_random = coin(0.5) & selected & ~to_mask
    random_words = torch.randint(vocab_size, ids.shape, generator=generator, device=device)
    out = torch.where(to_mask, torch.full_like(ids, mask_id), ids)
    return torch.where(to_random, random_words, out), labels


def mlm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over selected tokens: logits [..., V], labels [...] (-100 = not selected), e.g.
    [B,L,V] and [B,L], or only the selected rows [M,V] and [M]. Zero (with a gradient path) when nothing was
    selected."""
    if not bool((labels != IGNORE).any()):
        return logits.sum() * 0.0
    v = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, v).float(), labels.reshape(-1), ignore_index=IGNORE)
