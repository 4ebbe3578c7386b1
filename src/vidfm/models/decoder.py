"""Shallow MAE-style decoder: encoder tokens + learnable mask tokens -> predictions at masked positions.

Used by VideoMAE (normalised pixels), MVD (teacher features, two decoders of equal shape) and V-JEPA (the
predictor of the target encoder's tokens: 3-D sincos positions, a biased input projection and one zero-init
mask token per mask kind, as official V-JEPA ``src/models/predictor.py``). The layout
follows official VideoMAE ``modeling_pretrain.py`` (``PretrainVisionTransformer``): a bias-free linear
``encoder_to_decoder``, fixed 1-D sincos position embeddings, the visible tokens first and the mask tokens
after them, and the head applied to the mask tokens only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from vidfm.layers.attention import QkvBias
from vidfm.layers.block import Block
from vidfm.layers.pos_embed import sincos_1d, sincos_3d
from vidfm.models.encoder import _init_weights, gather_tokens

# Encoder size name -> (decoder width, heads). S/B/L/H from official VideoMAE ``modeling_pretrain.py``
# (``pretrain_videomae_{small,base,large,huge}_patch16_224``); T is vidfm's, following the same half-width rule.
DECODER_SIZES: dict[str, tuple[int, int]] = {
    "T": (96, 3),
    "S": (192, 3),
    "B": (384, 6),
    "L": (512, 8),
    "H": (640, 8),
}


@dataclass
class DecoderConfig:
    """depth: blocks (4 in VideoMAE, 2 in MVD); width/heads: None = the encoder size's default
    (:data:`DECODER_SIZES`); qkv_bias as :class:`vidfm.layers.Attention`; final_norm_eps: epsilon of the
    last norm when it differs from the blocks' (HF VideoMAE); in_bias: a bias on the input projection (off
    in VideoMAE's ``encoder_to_decoder``, on in MVD's ``down_img``/``down_vid``, official
    ``modeling_student.py``, and in V-JEPA's ``predictor_embed``); pos_embed: the fixed position table
    (``sincos_3d_mvd``: 3-D with MVD's channel order, see :func:`~vidfm.layers.pos_embed.sincos_3d`);
    mask_tokens: how many learned mask tokens (V-JEPA: one per mask kind, chosen by ``mask_index``);
    zero_mask_token: start them at zero (V-JEPA ``zero_init_mask_tokens``) instead of N(0, 0.02²)."""

    depth: int = 4
    width: int | None = None
    heads: int | None = None
    mlp_ratio: float = 4.0
    qkv_bias: QkvBias = "qv"
    norm_eps: float = 1e-6
    final_norm_eps: float | None = None  # None = norm_eps; HF VideoMAE's decoder norm always uses 1e-5
    drop_path: float = 0.0
    in_bias: bool = False
    pos_embed: Literal["sincos_1d", "sincos_3d", "sincos_3d_mvd"] = "sincos_1d"
    mask_tokens: int = 1
    zero_mask_token: bool = False


def sincos_3d_like(encoder_pos_embed: str) -> Literal["sincos_3d", "sincos_3d_mvd"]:
    """The 3-D decoder table in the channel order of the encoder's: MVD's order (official
    ``get_3d_sincos_pos_embed``, time channels first) unless the encoder uses vidfm's own ``sincos_3d``."""
    return "sincos_3d" if encoder_pos_embed == "sincos_3d" else "sincos_3d_mvd"


def decoder_dims(cfg: DecoderConfig, encoder_size: str) -> tuple[int, int]:
    name = encoder_size.split("/")[0]
    width, heads = DECODER_SIZES.get(name, (None, None))
    width, heads = cfg.width or width, cfg.heads or heads
    if width is None or heads is None:
        raise ValueError(
            f"no default decoder width for encoder size {encoder_size!r}; set decoder.width/heads"
        )
    return width, heads


class MaskedDecoder(nn.Module):
    """Predicts ``out_dim`` values for every masked token.

    Args:
        in_dim: encoder width.
        cfg: decoder hyper-parameters.
        width, heads: resolved decoder width and heads (see :func:`decoder_dims`).
        out_dim: prediction size per token (3·t·p·p for pixels, the teacher width for features).
        grid: token grid (T', H', W') the position table is built for.
    """

    def __init__(
        self,
        in_dim: int,
        cfg: DecoderConfig,
        width: int,
        heads: int,
        out_dim: int,
        grid: tuple[int, int, int],
    ) -> None:
        super().__init__()
        self.grid = tuple(grid)
        if cfg.mask_tokens < 1:
            raise ValueError(f"DecoderConfig.mask_tokens must be >= 1, got {cfg.mask_tokens}")
        self.encoder_to_decoder = nn.Linear(in_dim, width, bias=cfg.in_bias)
        # [K,1,width]: with K = 1 the shape every VideoMAE/MVD checkpoint has.
        self.mask_token = nn.Parameter(torch.zeros(cfg.mask_tokens, 1, width))
        if cfg.pos_embed == "sincos_1d":
            table = sincos_1d(math.prod(grid), width)
        else:
            table = sincos_3d(self.grid, width, time_first=cfg.pos_embed == "sincos_3d_mvd")
        self.register_buffer("pos_embed", table[None], persistent=False)
        rates = [cfg.drop_path * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]
        self.blocks = nn.ModuleList(
            Block(width, heads, cfg.mlp_ratio, cfg.qkv_bias, "layernorm", cfg.norm_eps, drop_path=r)
            for r in rates
        )
        self.norm = nn.LayerNorm(width, eps=cfg.final_norm_eps or cfg.norm_eps)
        self.head = nn.Linear(width, out_dim)
        self.apply(_init_weights)
        if not cfg.zero_mask_token:
            nn.init.trunc_normal_(self.mask_token, std=0.02)

    def no_weight_decay(self) -> set[str]:
        return {"mask_token"}

    def forward(
        self,
        tokens: torch.Tensor,
        visible: torch.Tensor,
        masked: torch.Tensor,
        all_slots: bool = False,
        mask_index: int = 0,
    ) -> torch.Tensor:
        """tokens [B,Nv,Din] (encoder output at ``visible`` [B,Nv]); masked [B,Nm] -> [B,Nm,out_dim], or with
        ``all_slots`` [B,Nv+Nm,out_dim] for every slot, visible ones first (VideoPrism predicts all tokens).
        Each token takes the position of its slot in ``visible``, whatever it holds (shuffled tokens too).
        ``mask_index`` picks the mask token (one per mask kind when ``cfg.mask_tokens`` > 1)."""
        b = tokens.shape[0]
        pos = self.pos_embed.to(tokens.dtype).expand(b, -1, -1)  # [B,N,Dd]
        pos_vis, pos_mask = gather_tokens(pos, visible), gather_tokens(pos, masked)
        x = torch.cat(
            [
                self.encoder_to_decoder(tokens) + pos_vis,
                self.mask_token[mask_index].to(tokens.dtype) + pos_mask,
            ],
            1,
        )
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x if all_slots else x[:, -masked.shape[1] :]))
