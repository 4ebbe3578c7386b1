"""Pieces shared by the VideoMAE-family converters (HF transformers and official VideoMAE layouts).

vidfm's own state-dict layout is the one the pre-training task saves: ``encoder.<VideoEncoder keys>`` and,
when a decoder is present, ``decoder.<MaskedDecoder keys>``. Converters produce that layout plus the
configs, and :func:`build_models` turns the three back into modules, checking every key and shape so a
layout mismatch is a clear error, never a silently half-loaded model.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from vidfm.layers.attention import QkvBias
from vidfm.models.clip_vision import CLIPVisionConfig
from vidfm.models.decoder import DecoderConfig, MaskedDecoder, decoder_dims
from vidfm.models.encoder import SIZES, EncoderConfig, VideoEncoder
from vidfm.models.text import TextConfig

StateDict = dict[str, torch.Tensor]
# What the tensors of a converted checkpoint are, named by the vidfm task whose trainable state dict they
# are (so ``train.init_from`` loads them into that recipe's task strictly):
#   videomae  encoder.*, decoder.*                              (VideoMAE, VideoMAE V2, any encoder only)
#   mvd       encoder.*, decoder_image.*, decoder_video.*       (MVD student, tasks/mvd.py)
#   umt       encoder.*, align_heads.{i}.{fc,norm}.*            (UMT stage-1 student, tasks/umt.py)
#   clip      visual.*                                          (a CLIP image tower, convert/clip.py)
#   umt_stage2  encoder.*, align_heads.*, text_encoder.*, decoder.layers.*, contrastive.*, vtm_head.*,
#               mlm_head.*                                       (UMT stage 2, tasks/umt_stage2.py)
LAYOUTS = ("videomae", "mvd", "umt", "clip", "umt_stage2")


class Converted(NamedTuple):
    """A checkpoint in vidfm's layout.

    encoder, decoder: configs (decoder None for encoder-only checkpoints).
    state_dict: ``encoder.*`` / ``decoder.*`` tensors.
    extras: tensors kept beside the model, e.g. the ``fc_norm.*`` / ``head.*`` classifier of a fine-tuned
        official checkpoint (empty when there are none).
    layout: which task's keys ``state_dict`` follows (:data:`LAYOUTS`).
    tower: the CLIP tower config of a ``clip`` layout (its ``encoder`` is ``encoder``), else None.
    text: the BERT sizes of a ``umt_stage2`` layout's text encoder (the layers below the fusion), else None.
    """

    encoder: EncoderConfig
    decoder: DecoderConfig | None
    state_dict: StateDict
    extras: StateDict
    layout: str = "videomae"
    tower: CLIPVisionConfig | None = None
    text: TextConfig | None = None


def encoder_config(
    width: int, depth: int, heads: int, mlp_hidden: int, patch: int, **fields: Any
) -> EncoderConfig:
    """EncoderConfig for given dimensions: a standard size string (``"B/16"``) when they match one, else
    ``"B/<patch>"`` with explicit width/depth/heads/mlp_ratio. ``fields``: other config fields."""
    for name, (w, d, h, mlp) in SIZES.items():
        if (w, d, h) == (width, depth, heads) and int(w * mlp) == mlp_hidden:
            return EncoderConfig(size=f"{name}/{patch}", **fields)
    ratio = mlp_hidden / width
    if int(width * ratio) != mlp_hidden:
        raise ValueError(f"MLP hidden size {mlp_hidden} is not representable as width {width} × a ratio")
    return EncoderConfig(size=f"B/{patch}", width=width, depth=depth, heads=heads, mlp_ratio=ratio, **fields)


def decoder_config(
    depth: int,
    width: int,
    heads: int,
    mlp_hidden: int,
    qkv_bias: QkvBias,
    eps: float,
    final_norm_eps: float | None = None,
) -> DecoderConfig:
    """DecoderConfig with explicit width/heads (no dependence on the encoder size name)."""
    ratio = mlp_hidden / width
    if int(width * ratio) != mlp_hidden:
        raise ValueError(
            f"decoder MLP hidden size {mlp_hidden} is not representable as width {width} × ratio"
        )
    return DecoderConfig(
        depth=depth,
        width=width,
        heads=heads,
        mlp_ratio=ratio,
        qkv_bias=qkv_bias,
        norm_eps=eps,
        final_norm_eps=final_norm_eps,
    )


def count_blocks(keys: list[str] | set[str], prefix: str) -> int:
    """Number of blocks ``{prefix}{i}.…`` (indices must run 0..n-1)."""
    idx = {int(k[len(prefix) :].split(".")[0]) for k in keys if k.startswith(prefix)}
    if idx != set(range(len(idx))):
        raise ValueError(f"block indices under {prefix!r} are not contiguous from 0: {sorted(idx)}")
    return len(idx)


def split_state_dict(state_dict: StateDict) -> tuple[StateDict, StateDict, StateDict]:
    """vidfm layout -> (encoder keys, decoder keys, other keys), prefixes removed from the first two."""
    enc, dec, other = {}, {}, {}
    for k, v in state_dict.items():
        if k.startswith("encoder."):
            enc[k[len("encoder.") :]] = v
        elif k.startswith("decoder."):
            dec[k[len("decoder.") :]] = v
        else:
            other[k] = v
    return enc, dec, other


def load_checked(module: nn.Module, state_dict: StateDict, what: str) -> None:
    """``load_state_dict(strict=True)``, with an error naming unexpected/missing keys and bad shapes."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    shapes = [
        f"{k}: {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        raise ValueError(
            f"{what} weights do not fit the model: unexpected keys {unexpected[:12]}, missing keys "
            f"{missing[:12]}, shape mismatches {shapes[:12]}"
        )
    module.load_state_dict(state_dict, strict=True)


def build_models(
    encoder_cfg: EncoderConfig, decoder_cfg: DecoderConfig | None, state_dict: StateDict
) -> tuple[VideoEncoder, MaskedDecoder | None]:
    """Instantiate the encoder (and decoder) from configs and load vidfm-layout weights (strictly)."""
    enc_sd, dec_sd, _ = split_state_dict(state_dict)
    if not enc_sd:
        raise ValueError("state dict has no 'encoder.*' keys; is it in vidfm layout?")
    encoder = VideoEncoder(encoder_cfg)
    load_checked(encoder, enc_sd, "encoder")
    decoder = None
    if decoder_cfg is not None:
        if "head.weight" not in dec_sd:
            raise ValueError("a decoder config was given but the state dict has no 'decoder.head.weight'")
        width, heads = decoder_dims(decoder_cfg, encoder_cfg.size)
        out_dim = dec_sd["head.weight"].shape[0]  # 3·t·p·p for pixels; the teacher width for features
        decoder = MaskedDecoder(encoder.width, decoder_cfg, width, heads, out_dim, encoder.grid)
        load_checked(decoder, dec_sd, "decoder")
    return encoder.eval(), (decoder.eval() if decoder is not None else None)
