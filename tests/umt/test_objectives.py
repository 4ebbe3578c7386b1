"""VTC, VTM negatives and loss, MLM masking: against hand computations and official rules."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vidfm.objectives.contrastive import clamp_temperature_, vtc_loss
from vidfm.objectives.matching import matching_loss, sample_negatives
from vidfm.objectives.mlm import IGNORE, mask_tokens, mlm_loss


def test_vtc_is_symmetric_infonce_with_shared_ids() -> None:
    torch.manual_seed(0)
    v, t = torch.randn(4, 8), torch.randn(4, 8)
    temp = torch.tensor(0.1, requires_grad=True)
    loss = vtc_loss(v, t, temp)
    s = F.normalize(v, dim=-1) @ F.normalize(t, dim=-1).t() / 0.1
    expected = (F.cross_entropy(s, torch.arange(4)) + F.cross_entropy(s.t(), torch.arange(4))) / 2
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert temp.grad is not None and temp.grad != 0  # the temperature is learned
    # rows 0 and 1 share an id (two frames of one clip): each has two positives of weight 1/2
    idx = torch.tensor([7, 7, 3, 5])
    target = torch.tensor([[0.5, 0.5, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
    manual = (
        -(F.log_softmax(s, 1) * target).sum(1).mean() / 2
        - (F.log_softmax(s.t(), 1) * target).sum(1).mean() / 2
    )
    torch.testing.assert_close(vtc_loss(v, t, 0.1, idx), manual)
    # a perfect alignment at a low temperature costs almost nothing
    assert vtc_loss(v, v, 0.01) < 1e-3
    with pytest.raises(ValueError):
        vtc_loss(v, t[:3], 0.1)
    p = torch.nn.Parameter(torch.tensor(0.9))
    clamp_temperature_(p)
    assert p.item() == 0.5


def test_negatives_are_never_positives_and_hard_ones_are_similar() -> None:
    g = torch.Generator().manual_seed(0)
    idx = torch.tensor([0, 0, 1, 2, 3, 4])  # 0 and 1 are the same video
    sim = torch.zeros(6, 6)
    sim[:, 4] = 20.0  # text 4 looks like every video
    sim[4, :] = 20.0  # video 4 looks like every text
    counts = torch.zeros(6)
    for _ in range(50):
        video_for_text, text_for_video = sample_negatives(sim, idx, g, hard=True)
        assert (idx[video_for_text] != idx).all() and (idx[text_for_video] != idx).all()
        counts += torch.bincount(text_for_video, minlength=6)
    assert counts[4] >= 0.95 * 5 * 50  # the 5 other videos pick the hard text 4 (video 4 cannot)
    uniform = torch.zeros(6)
    for _ in range(50):
        uniform += torch.bincount(sample_negatives(sim, idx, g, hard=False)[1], minlength=6)
    assert uniform[4] < 0.4 * uniform.sum()
    with pytest.raises(ValueError, match="no negative"):
        sample_negatives(torch.zeros(2, 2), torch.tensor([1, 1]), g)


def test_matching_loss_labels() -> None:
    pos, neg = torch.tensor([[0.0, 5.0]]), torch.tensor([[5.0, 0.0], [5.0, 0.0]])
    assert matching_loss(pos, neg) < 0.01 and matching_loss(neg[:1], pos.repeat(2, 1)) > 4


def test_mlm_masking_follows_bert_rules() -> None:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 100, (64, 40))
    ids[:, 0] = 101  # [CLS]
    ids[:, 30:] = 0  # padding
    out, labels = mask_tokens(ids, 0.5, mask_id=103, vocab_size=100, keep_ids=(0, 101), generator=g)
    chosen = labels != IGNORE
    assert not chosen[:, 0].any() and not chosen[:, 30:].any()
    assert torch.equal(labels[chosen], ids[chosen]) and torch.equal(out[~chosen], ids[~chosen])
    frac = chosen[:, 1:30].float().mean().item()
    assert abs(frac - 0.5) < 0.03
    masked = (out[chosen] == 103).float().mean().item()
    kept = (out[chosen] == ids[chosen]).float().mean().item()
    assert abs(masked - 0.8) < 0.03 and 0.06 < kept < 0.14  # 10% random, 10% (plus random hits) kept
    logits = torch.zeros(64, 40, 100)
    assert math.isclose(mlm_loss(logits, labels).item(), math.log(100), rel_tol=1e-5)
    assert mlm_loss(logits, torch.full_like(labels, IGNORE)).item() == 0.0
