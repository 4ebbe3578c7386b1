"""The cross-modal decoder of video-language training: text tokens attend to video tokens.

Official UMT stage 2 fuses with the top BERT layers in ``mode="fusion"`` (``multi_modality/models/
backbones/bert``, the ALBEF design): each layer is self-attention over the text (padding masked),
cross-attention from text queries to the video tokens (keys/values projected from the video width), and an
MLP, each followed by a residual LayerNorm (post-norm, as BERT). Here these layers sit on top of the text
encoder as their own module, so any text encoder (MiniLM) can be paired with a new decoder; VTM reads its
[CLS] state, MLM its every token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vidfm.layers.attention import Attention
from vidfm.layers.block import Mlp
from vidfm.models.text import padding_bias


class CrossAttention(nn.Module):
    """Queries from x [B,L,D], keys/values from context [B,N,Dc] (SDPA). Args: dim, context_dim, heads."""

    def __init__(self, dim: int, context_dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads, self.head_dim = heads, dim // heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, n = context.shape[:2]
        q = self.q(x).view(b, -1, self.heads, self.head_dim).transpose(1, 2)  # [B,h,L,hd]
        kv = self.kv(context).view(b, n, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1])  # [B,h,L,hd]
        return self.proj(out.transpose(1, 2).flatten(2))


class FusionLayer(nn.Module):
    """Post-norm layer: self-attention (text), cross-attention (video), MLP."""

    def __init__(self, dim: int, context_dim: int, heads: int, mlp_ratio: float, eps: float) -> None:
        super().__init__()
        self.attn = Attention(dim, heads, qkv_bias="fused")
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.cross = CrossAttention(dim, context_dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm3 = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        q, k, v = self.attn.qkv_heads(x)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        x = self.norm1(x + self.attn.proj(y.transpose(1, 2).flatten(2)))
        x = self.norm2(x + self.cross(x, video))
        return self.norm3(x + self.mlp(x))


class CrossModalDecoder(nn.Module):
    """A stack of :class:`FusionLayer`.

    Args:
        dim: text width (the decoder's width). video_dim: width of the video tokens.
        depth: layers (3 in UMT: BERT-base's last 3 of 12). heads: attention heads.
        mlp_ratio: MLP width / dim. eps: LayerNorm epsilon (BERT's 1e-12).
    """

    def __init__(
        self,
        dim: int,
        video_dim: int,
        depth: int = 2,
        heads: int = 6,
        mlp_ratio: float = 4.0,
        eps: float = 1e-12,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"the cross-modal decoder needs depth >= 1, got {depth}")
        self.layers = nn.ModuleList(FusionLayer(dim, video_dim, heads, mlp_ratio, eps) for _ in range(depth))
        for m in self.modules():  # BERT init
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, text: torch.Tensor, mask: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        """text [B,L,D] states, mask [B,L] bool (True = token), video [B,N,Dv] -> fused text states [B,L,D]."""
        bias = padding_bias(mask.bool(), text.dtype)
        for layer in self.layers:
            text = layer(text, bias, video)
        return text
