"""The attentive probe: it reads *where* things are among the tokens (what a mean-pooled linear probe
cannot), it falls to chance on unrelated labels, and its tokens come from the same pass as the pooled
features of the linear probe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidfm.eval.attentive import AttentiveConfig, attentive_probe, split_tokens
from vidfm.eval.probes import linear_probe

L, D = 8, 16
POS = torch.randn(L, D, generator=torch.Generator().manual_seed(5))  # fixed "position embeddings"


def _marker_tokens(n: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """Noise + positions; one marker token (flag channel 0); the label is whether it sits in the first
    half. The mean over tokens is the same for both classes, so mean pooling carries no label."""
    g = torch.Generator().manual_seed(seed)
    x = 0.3 * torch.randn(n, L, D, generator=g) + POS
    where = torch.randint(L, (n,), generator=g)
    x[torch.arange(n), where, 0] += 8.0
    return x.half(), (where < L // 2).long().numpy()


FAST = AttentiveConfig(lrs=(3e-3, 1e-3), weight_decays=(0.0,), epochs=20, batch_size=32, warmup_epochs=1)


def test_attentive_reads_token_positions_that_mean_pooling_loses() -> None:
    xt, yt = _marker_tokens(320, 0)
    xe, ye = _marker_tokens(200, 1)
    res = attentive_probe(xt, yt, xe, ye, FAST)
    lin = linear_probe(xt.float().mean(1).numpy(), yt, xe.float().mean(1).numpy(), ye)
    assert res.top1 > 0.9, res
    assert lin.top1 < 0.65, lin
    assert set(res.val) == {"lr=0.003 wd=0", "lr=0.001 wd=0"} and res.detail.startswith("lr=")


def test_attentive_is_at_chance_on_unrelated_labels() -> None:
    xt, _ = _marker_tokens(320, 0)
    xe, _ = _marker_tokens(200, 1)
    rng = np.random.default_rng(0)
    res = attentive_probe(xt, rng.integers(0, 2, 320), xe, rng.integers(0, 2, 200), FAST)
    assert res.top1 < 0.65


def test_attentive_rejects_mismatched_tokens() -> None:
    with pytest.raises(ValueError, match=r"\[N,L,D\]"):
        attentive_probe(torch.zeros(4, 3, 8), np.zeros(4, int), torch.zeros(4, 2, 8), np.zeros(4, int))


def test_tokens_and_pooled_features_from_one_pass(tiny_run, digits) -> None:
    import dataclasses

    from vidfm.eval.frozen import split_features
    from vidfm.recipes import load_run_encoder

    encoder, cfg = load_run_encoder(tiny_run)
    data = dataclasses.replace(cfg.data, manifest=str(digits))
    tok = split_tokens(encoder, data, cfg.augment, splits=("test",), progress=False)["test"]
    n = len(tok.paths)
    assert tok.x.dtype == torch.float16 and tok.x.shape == (n, 4 * 4 * 4, 32)  # 8 frames / 2, (32 / 8)²
    ref = split_features(encoder, data, cfg.augment, splits=("test",), progress=False)["test"]
    np.testing.assert_allclose(tok.pooled, ref.x, atol=1e-5)
    np.testing.assert_allclose(tok.x.float().mean(1).numpy(), ref.x, atol=2e-3)  # float16 cache
    assert tok.paths == ref.paths and (tok.labels["motion"] == ref.labels["motion"]).all()
