"""Multi-head attention pooling (MAP): learned queries attend over a token sequence.

Used by the attentive probe (VideoGLUE's frozen-backbone protocol) and by VideoPrism's video-text pooler.
Two published forms are configuration, not copies:

- big_vision ``MAPHead`` (``big_vision/models/vit.py``; also SigLIP's pooling head): attention, then a
  residual MLP on the pre-normed result: ``y = attn(q, x); y = y + mlp(norm(y))``  -> ``mlp_ratio=4``.
- VideoPrism ``AttenTokenPoolingLayer`` (official ``videoprism/layers.py``): attention with a learned
  per-dimension query scale, then a LayerNorm  -> ``mlp_ratio=None, out_norm=True, per_dim_scale=True``.

The queries are parameters, not functions of the input, so the key projection can be folded into them:
``q·(W_k x + b_k) = x·(W_kᵀ q) + const`` (the constant cancels in the softmax) and, because the attention
weights of a query sum to one, ``Σ a_n (W_v x_n + b_v) = W_v (Σ a_n x_n) + b_v``. The layer therefore never
projects the N tokens: it costs O(N·D·Q·heads) instead of O(N·D²) — 16-64x less for one query — which is
what lets many probe heads train in one pass over cached features. The weights keep the usual q/k/v/proj
layout (equality with ``nn.MultiheadAttention`` is tested).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vidfm.layers.block import Mlp

# softplus(0) · 1/ln(2) = 1: Praxis ``PerDimScale`` starts exactly at the usual 1/sqrt(head_dim).
_R_SOFTPLUS_0 = 1.442695041


class AttentionPool(nn.Module):
    """Learned queries [Q,D] attend over tokens [B,N,D] -> pooled [B,Q,D].

    Args:
        dim: token width D.
        num_heads: attention heads; D must divide evenly.
        num_queries: Q, the number of pooled outputs (1 for a clip embedding).
        mlp_ratio: hidden width of the residual MLP (big_vision MAPHead: 4); None for no MLP.
        out_norm: LayerNorm on the output (VideoPrism).
        per_dim_scale: learned per-dimension query scaling (VideoPrism / Praxis ``PerDimScale``) instead of
            the fixed 1/sqrt(head_dim).
        qkv_bias: biases on the q, k, v and output projections.
        norm_eps: epsilon of the LayerNorms.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        num_queries: int = 1,
        mlp_ratio: float | None = 4.0,
        out_norm: bool = False,
        per_dim_scale: bool = False,
        qkv_bias: bool = True,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        if num_queries < 1:
            raise ValueError(f"num_queries must be >= 1, got {num_queries}")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.query = nn.Parameter(torch.empty(num_queries, dim))
        nn.init.xavier_uniform_(self.query)  # big_vision/VideoPrism initialise the probe xavier-uniform
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.k = nn.Linear(dim, dim, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=qkv_bias)
        for lin in (self.q, self.k, self.v, self.proj):
            nn.init.xavier_uniform_(lin.weight)
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)
        self.per_dim_scale = nn.Parameter(torch.zeros(self.head_dim)) if per_dim_scale else None
        self.norm = nn.LayerNorm(dim, eps=norm_eps) if mlp_ratio else None
        self.mlp = Mlp(dim, int(dim * mlp_ratio)) if mlp_ratio else None
        self.out_norm = nn.LayerNorm(dim, eps=norm_eps) if out_norm else None

    def no_weight_decay(self) -> set[str]:
        return {"query", "per_dim_scale"}

    def queries(self) -> torch.Tensor:
        """Projected, scaled queries [Q, heads, head_dim]."""
        q = self.q(self.query).view(-1, self.num_heads, self.head_dim)
        if self.per_dim_scale is None:
            return q / math.sqrt(self.head_dim)
        return q * (_R_SOFTPLUS_0 / math.sqrt(self.head_dim)) * F.softplus(self.per_dim_scale)

    def attention(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attention weights [B, Q, heads, N] of each query and head over the tokens x [B,N,D].

        mask: optional bool [B,N], True for tokens to attend to (padding False).
        """
        q = self.queries()  # [Q,H,hd]
        # W_kᵀ q per (query, head): [D, Q·H]; the logits never need the projected keys.
        w_k = self.k.weight.view(self.num_heads, self.head_dim, self.dim)  # [H,hd,D]
        k_eff = torch.einsum("qhj,hjd->dqh", q, w_k).flatten(1).to(x.dtype)
        logits = (x @ k_eff).transpose(1, 2)  # [B,Q·H,N]
        if mask is not None:
            logits = logits.masked_fill(~mask[:, None, :], float("-inf"))
        attn = logits.float().softmax(-1).to(x.dtype)
        return attn.view(x.shape[0], *q.shape[:2], -1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [B,N,D] (mask: optional bool [B,N], True = attend) -> [B,Q,D]."""
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"AttentionPool expects tokens [B,N,{self.dim}], got {tuple(x.shape)}")
        b = x.shape[0]
        attn = self.attention(x, mask)  # [B,Q,H,N]
        mixed = torch.einsum("bqhn,bnd->bqhd", attn, x)  # attention-weighted raw tokens per head
        w_v = self.v.weight.view(self.num_heads, self.head_dim, self.dim)  # [H,hd,D]
        heads = torch.einsum("bqhd,hjd->bqhj", mixed, w_v.to(x.dtype))  # [B,Q,H,hd] = W_v,h · mixed
        y = heads.reshape(b, -1, self.dim)
        if self.v.bias is not None:
            y = y + self.v.bias.to(y.dtype)  # weights sum to 1, so the value bias passes through once
        y = self.proj(y)
        if self.mlp is not None:
            y = y + self.mlp(self.norm(y))
        if self.out_norm is not None:
            y = self.out_norm(y)
        return y


class MeanQueryPool(nn.Module):
    """One query, the mean of the tokens, attends over them: tokens [B,N,D] -> [B,out_dim] and the attention.

    InternVideo2's ``clip_projector`` (official ``single_modality/models/internvideo2_pretrain.py``
    ``AttentionPoolingBlock``; InternVL's pooler in ``models/internvl_clip_vision.py``): q = LN_q(mean(x)),
    k = LN_k(x), v = LN_v(x), each through its own linear (with bias), single cross-attention, output projection
    to ``out_dim``; LayerNorm eps 1e-5. The head-averaged attention of the query over the tokens is what the
    official teacher hands to semantic masking (``attn[:, 0, 1:]``).

    Args:
        dim: token width D. num_heads: heads. out_dim: output width (768 in the 1B/6B models).
    """

    def __init__(self, dim: int, num_heads: int, out_dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.norm1_q, self.norm1_k, self.norm1_v = (nn.LayerNorm(dim, eps=eps) for _ in range(3))
        self.q, self.k, self.v = (nn.Linear(dim, dim) for _ in range(3))
        self.proj = nn.Linear(dim, out_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B,N,D] -> (pooled [B,out_dim], attention [B,N] averaged over heads)."""
        b, n, d = x.shape
        h = self.num_heads
        q = self.q(self.norm1_q(x.mean(1, keepdim=True))).view(b, 1, h, -1).transpose(1, 2)  # [B,h,1,hd]
        k = self.k(self.norm1_k(x)).view(b, n, h, -1).transpose(1, 2)  # [B,h,N,hd]
        v = self.v(self.norm1_v(x)).view(b, n, h, -1).transpose(1, 2)
        attn = ((q.float() @ k.float().transpose(-1, -2)) * (d // h) ** -0.5).softmax(-1)  # [B,h,1,N]
        out = (attn.to(v.dtype) @ v).transpose(1, 2).reshape(b, d)
        return self.proj(out), attn.mean(1)[:, 0]
