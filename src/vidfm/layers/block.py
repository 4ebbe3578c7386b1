"""Pre-norm transformer block and its parts (MLP, drop path, LayerScale, norm factory)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from vidfm.layers.attention import Attention, QkvBias

NormKind = Literal["layernorm", "rmsnorm"]


def make_norm(kind: NormKind, dim: int, eps: float = 1e-6) -> nn.Module:
    if kind == "layernorm":
        return nn.LayerNorm(dim, eps=eps)
    if kind == "rmsnorm":
        return nn.RMSNorm(dim, eps=eps)
    raise ValueError(f"unknown norm {kind!r}; use 'layernorm' or 'rmsnorm'")


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = act()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class QuickGELU(nn.Module):
    """x·sigmoid(1.702x), the activation of OpenAI CLIP towers."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class DropPath(nn.Module):
    """Stochastic depth per sample (drops the whole residual branch of a sample)."""

    def __init__(self, prob: float = 0.0) -> None:
        super().__init__()
        self.prob = prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class LayerScale(nn.Module):
    """Per-channel learnable residual scale (CaiT), initialised small."""

    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    """x + drop_path(ls1(attn(norm1(x)))); x + drop_path(ls2(mlp(norm2(x)))).

    Args:
        dim, num_heads: width and heads.
        mlp_ratio: hidden width of the MLP as a multiple of ``dim``.
        qkv_bias: see :class:`Attention`.
        norm: ``"layernorm"`` or ``"rmsnorm"``; ``norm_eps`` its epsilon.
        drop_path: stochastic-depth probability of this block.
        layer_scale: initial LayerScale value, or None for none.
        act: MLP activation class (GELU; QuickGELU for OpenAI CLIP weights).
        attn_softcap: attention logit soft-cap (see :class:`Attention`), None for none.
        qk_norm: normalise q and k with this block's norm kind (see :class:`Attention`; InternVideo2).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: QkvBias = "fused",
        norm: NormKind = "layernorm",
        norm_eps: float = 1e-6,
        drop_path: float = 0.0,
        layer_scale: float | None = None,
        act: type[nn.Module] = nn.GELU,
        attn_softcap: float | None = None,
        qk_norm: bool = False,
    ) -> None:
        super().__init__()
        self.norm1 = make_norm(norm, dim, norm_eps)
        qk = (lambda d: make_norm(norm, d, norm_eps)) if qk_norm else None
        self.attn = Attention(dim, num_heads, qkv_bias, softcap=attn_softcap, qk_norm=qk)
        self.norm2 = make_norm(norm, dim, norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act)
        self.ls1 = LayerScale(dim, layer_scale) if layer_scale else nn.Identity()
        self.ls2 = LayerScale(dim, layer_scale) if layer_scale else nn.Identity()
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.ls1(self.attn(self.norm1(x))))
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))
