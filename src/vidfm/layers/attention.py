"""Multi-head self-attention through ``scaled_dot_product_attention`` (flash/memory-efficient kernels)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

QkvBias = Literal["fused", "qv", "none"]


class Attention(nn.Module):
    """Self-attention with a fused qkv projection.

    Args:
        dim: token width D.
        num_heads: heads; D must divide evenly.
        qkv_bias: ``"fused"`` one bias on the qkv linear (timm/CLIP); ``"qv"`` separate q and v biases with no
            k bias (official VideoMAE ``modeling_pretrain.py``: ``qkv_bias = cat(q_bias, zeros, v_bias)``,
            BEiT's convention — a k bias cancels in softmax anyway); ``"none"`` no bias.
        proj_bias: bias on the output projection.
        softcap: tanh soft-capping of the logits, ``c·tanh(logits/c)`` before the softmax (VideoPrism, official
            ``videoprism/layers.py``: ``atten_logit_cap=50``); None = plain attention through SDPA.
        qk_norm: a norm module factory applied to q and k over the full width D before the heads are split
            (InternVideo2, official ``single_modality/models/internvideo2.py`` ``Attention``: ``q_norm``/``k_norm``
            are ``norm_layer(dim)`` — RMSNorm eps 1e-6 — on ``q.flatten(-2)``, not per head); None = none.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: QkvBias = "fused",
        proj_bias: bool = True,
        softcap: float | None = None,
        qk_norm: Callable[[int], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        if qkv_bias not in ("fused", "qv", "none"):
            raise ValueError(f"unknown qkv_bias {qkv_bias!r}; use 'fused', 'qv' or 'none'")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias == "fused")
        if qkv_bias == "qv":
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = self.v_bias = None
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.softcap = softcap
        self.q_norm = qk_norm(dim) if qk_norm is not None else None
        self.k_norm = qk_norm(dim) if qk_norm is not None else None

    def qkv_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B,N,D] -> q, k, v each [B,heads,N,head_dim]."""
        bias = self.qkv.bias
        if self.q_bias is not None:
            bias = torch.cat((self.q_bias, torch.zeros_like(self.q_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias)
        b, n, _ = x.shape
        if self.q_norm is not None:  # [B,N,3D]: normalise q and k over all heads together
            q, k, v = qkv.chunk(3, dim=-1)
            qkv = torch.cat((self.q_norm(q), self.k_norm(k), v), dim=-1)
        qkv = qkv.view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B,N,D] -> [B,N,D]."""
        q, k, v = self.qkv_heads(x)
        if self.softcap is None:
            out = F.scaled_dot_product_attention(q, k, v)  # [B,h,N,hd]
        else:  # SDPA has no hook on the logits: the capped form is computed explicitly, softmax in fp32
            logits = (q @ k.transpose(-2, -1)) * self.head_dim**-0.5  # [B,h,N,N]
            logits = self.softcap * torch.tanh(logits / self.softcap)
            out = logits.float().softmax(-1).to(q.dtype) @ v
        return self.proj(out.transpose(1, 2).flatten(2))
