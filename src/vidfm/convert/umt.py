"""Official UMT stage-1 checkpoints (github.com/OpenGVLab/unmasked_teacher) <-> vidfm's ``umt`` layout.

``single_modality/models/modeling_pretrain_umt.py`` ``PretrainVisionTransformer.state_dict()``:

    official                                        vidfm (``tasks/umt.py`` ``UMTTask`` trainable state)
    encoder.patch_embed.proj [D,3,t,p,p] (+ bias)    encoder.patch_embed.proj
    encoder.pos_embed (only use_learnable_pos_emb)   encoder.pos_embed (``learned``; else fixed 1-D sincos)
    encoder.blocks.i.*, encoder.norm                 encoder.blocks.i.*, encoder.norm
    clip_decoder.j.head [E,D] (+ bias)               align_heads.j.fc
    clip_decoder.j.norm [E]                          align_heads.j.norm

Semantics (``PretrainVisionTransformer.forward``): the encoder keeps the outputs of blocks
``depth-1-i·interval`` (i < K), in block order, each through the shared final ``norm``; a fixed 1-D sincos
table at the decoder width (``clip_pos_embed``, not stored) is added at the visible positions; then
``clip_decoder[j]`` = LayerNorm(Linear(x)) (eps 1e-6 in the registered models) and L2 normalisation. The
j-th head therefore belongs to the j-th aligned block in ascending order, as ``UMTTask.align_heads`` does
with ``student_layers = depth-K … depth-1``; a run trained with ``clip_student_return_interval`` other than 1
aligned other blocks, which the weights cannot show (the file's ``args`` can: check them).
"""

from __future__ import annotations

import dataclasses
import re

from vidfm.convert.layouts import unwrap
from vidfm.convert.official_videomae import OFFICIAL_NORM_EPS, _encoder, _rename_block_keys
from vidfm.convert.videomae import Converted, StateDict
from vidfm.models.encoder import EncoderConfig
from vidfm.utils import log

_HEAD = re.compile(r"^clip_decoder\.(\d+)\.(head|norm)\.(weight|bias)$")


def is_official_umt(sd: StateDict) -> bool:
    """A UMT stage-1 student: ``encoder.*`` plus ``clip_decoder.*`` heads."""
    return "encoder.patch_embed.proj.weight" in sd and any(k.startswith("clip_decoder.") for k in sd)


def from_official_umt(
    obj: dict,
    heads: int | None = None,
    num_frames: int = 8,
    img_size: int = 224,
    norm_eps: float = OFFICIAL_NORM_EPS,
) -> Converted:
    """An official UMT stage-1 state dict (bare or wrapped) -> :class:`Converted` in the ``umt`` layout.

    Args:
        obj: the loaded checkpoint (``{"model": sd, ...}``, ``sd``, …).
        heads: encoder heads (default: the registered official size with these dimensions, else an error).
        num_frames, img_size: the training clip (8 × 224² in UMT's scripts; checked against a learned table).
        norm_eps: LayerNorm eps (1e-6 in ``pretrain_umt_{base,large}_patch16_224``).
    """
    sd, how = unwrap(obj, "UMT checkpoint")
    if not is_official_umt(sd):
        raise ValueError(
            f"not an official UMT stage-1 student: no encoder.* + clip_decoder.* (keys {sorted(sd)[:8]})"
        )
    enc_cfg, state, n = student_state(sd, heads, num_frames, img_size, norm_eps)
    log.info(
        "official UMT stage-1 student (%s): encoder %dx%d, %d alignment heads -> %d (teacher width)",
        how,
        enc_cfg.dims()[0],
        enc_cfg.dims()[1],
        n,
        state["align_heads.0.fc.weight"].shape[0],
    )
    return Converted(enc_cfg, None, state, {}, layout="umt")


def student_state(
    sd: StateDict,
    heads: int | None,
    num_frames: int,
    img_size: int,
    norm_eps: float = OFFICIAL_NORM_EPS,
) -> tuple[EncoderConfig, StateDict, int]:
    """``encoder.*`` + ``clip_decoder.*`` (none or more heads; nothing else) of a UMT student -> (encoder
    config, ``encoder.*`` + ``align_heads.*`` in vidfm keys, number of heads). Shared by both UMT stages."""
    sd = dict(sd)
    heads_sd = {k: sd.pop(k) for k in [k for k in sd if k.startswith("clip_decoder.")]}
    bad = sorted(k for k in heads_sd if not _HEAD.match(k))
    if bad:
        raise ValueError(f"unexpected keys in UMT's clip_decoder: {bad[:8]}")
    rest = sorted(k for k in sd if not k.startswith("encoder."))
    if rest:
        raise ValueError(f"unexpected keys in the UMT checkpoint: {rest[:12]}")
    enc_sd = _rename_block_keys({k[len("encoder.") :]: v for k, v in sd.items()})
    enc_cfg = _encoder(enc_sd, heads, num_frames, img_size, norm_eps)
    if enc_cfg.pos_embed == "learned":  # [1,N,D], added before masking like the fixed table
        log.info("UMT encoder with learnable positions (use_learnable_pos_emb)")
    enc_cfg = dataclasses.replace(enc_cfg, final_norm=True)
    state = {f"encoder.{k}": v for k, v in enc_sd.items()}
    n = len({int(_HEAD.match(k).group(1)) for k in heads_sd})  # type: ignore[union-attr]
    for j in range(n):
        for src, dst in (("head", "fc"), ("norm", "norm")):
            for p in ("weight", "bias"):
                key = f"clip_decoder.{j}.{src}.{p}"
                if key not in heads_sd:
                    raise ValueError(f"UMT clip_decoder heads are not numbered 0..{n - 1}: no {key}")
                state[f"align_heads.{j}.{dst}.{p}"] = heads_sd[key]
    if n > enc_cfg.dims()[1]:
        raise ValueError(f"{n} alignment heads for a {enc_cfg.dims()[1]}-block student")
    return enc_cfg, state, n


def to_official_umt(conv: Converted) -> StateDict:
    """The ``umt`` layout -> an official ``PretrainVisionTransformer`` state dict (for ``--init_ckpt``-style
    loading; the fixed tables are not stored there)."""
    if conv.layout != "umt":
        raise ValueError(f"to_official_umt needs a umt checkpoint, got layout {conv.layout!r}")
    out: StateDict = {}
    for k, v in conv.state_dict.items():
        if k.startswith("encoder."):
            out[k.replace(".ls1.gamma", ".gamma_1").replace(".ls2.gamma", ".gamma_2")] = v
        else:
            _, j, part, p = k.split(".")
            out[f"clip_decoder.{j}.{'head' if part == 'fc' else part}.{p}"] = v
    return out


__all__ = ["from_official_umt", "is_official_umt", "student_state", "to_official_umt"]
