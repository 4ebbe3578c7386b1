"""Feature-distillation losses."""

from __future__ import annotations

import pytest
import torch

from vidfm.objectives.distill import feature_loss, layer_norm_target, normalized_l2, smooth_l1


def test_smooth_l1_matches_torch_default_both_regimes() -> None:
    pred = torch.tensor([[0.0, 0.0]])
    target = torch.tensor([[0.5, 3.0]])  # |d| < 1: 0.5·d² = 0.125; |d| >= 1: |d| - 0.5 = 2.5
    assert smooth_l1(pred, target).item() == pytest.approx((0.125 + 2.5) / 2)
    torch.testing.assert_close(smooth_l1(pred, target), torch.nn.SmoothL1Loss()(pred, target))


def test_loss_is_float32_under_bf16_inputs() -> None:
    pred = torch.randn(2, 5, 8).bfloat16()
    assert smooth_l1(pred, pred.float() + 1).dtype == torch.float32


def test_named_losses() -> None:
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(3, 4, 8, generator=g), torch.randn(3, 4, 8, generator=g)
    torch.testing.assert_close(feature_loss(pred, target, "l2"), torch.nn.functional.mse_loss(pred, target))
    torch.testing.assert_close(feature_loss(pred, target, "l1"), torch.nn.functional.l1_loss(pred, target))
    unit_p = torch.nn.functional.normalize(pred, dim=-1)
    unit_t = torch.nn.functional.normalize(target, dim=-1)
    ref = (unit_p - unit_t).pow(2).sum(-1).mean()
    torch.testing.assert_close(normalized_l2(pred, target), ref)
    assert feature_loss(pred, 3 * pred, "cosine").item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="differ in shape"):
        feature_loss(pred, target[:, :2])
    with pytest.raises(ValueError, match="unknown feature loss"):
        feature_loss(pred, target, "huber")  # type: ignore[arg-type]


def test_layer_norm_target_standardises_each_token() -> None:
    x = torch.randn(2, 3, 16) * 5 + 2
    y = layer_norm_target(x)
    torch.testing.assert_close(y.mean(-1), torch.zeros(2, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(2, 3), atol=1e-3, rtol=0)
