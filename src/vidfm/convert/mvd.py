"""Official MVD student checkpoints (github.com/ruiwang2021/mvd) <-> vidfm's ``mvd`` layout.

``modeling_student.py`` ``PretrainMaskedVideoStudent.state_dict()`` (keys at the top level):

    official                                      vidfm (``tasks/mvd.py`` ``MVDTask`` trainable state)
    patch_embed.proj, blocks.i, norm               encoder.patch_embed.proj, encoder.blocks.i, encoder.norm
    pos_embed [1,N,D] (fixed 3-D sincos, stored)   encoder position table (``sincos_3d_mvd``; see below)
    down_img  (nn.Linear, with bias)               decoder_image.encoder_to_decoder (``in_bias=True``)
    mask_token_img [1,1,Dd]                        decoder_image.mask_token
    decoder_img.{blocks.i, norm, head}             decoder_image.{blocks.i, norm, head}
    pos_embed_img [1,N,Dd] (fixed, stored)         recomputed by the task (checked here)
    down_vid, mask_token_vid, decoder_vid.*,        decoder_video.* likewise
    pos_embed_vid

Semantics (``PretrainMaskedVideoStudent.forward``): the encoder output after ``norm`` goes through
``down_*``; visible tokens get the decoder table at their positions, mask tokens theirs, visible first; the
decoder's head predicts the last ``N_masked`` tokens — what :class:`~vidfm.models.decoder.MaskedDecoder`
computes. Blocks are ``modeling_finetune.py`` ``Block`` (``q_bias``/``v_bias``; LayerScale ``gamma_1/2``
when ``init_values > 0``), LayerNorm eps 1e-6 in every registered size.

Position tables: the official ones are 3-D sincos with the time channels first
(``get_3d_sincos_pos_embed``). A stored encoder table equal to that (or to vidfm's own 3-D order) becomes
the fixed table; any other values are kept as a learned table (trainable in vidfm, frozen in MVD), so a
checkpoint whose table was changed still gives the same outputs. The decoders' tables are recomputed by
the task and must therefore be the sincos ones. Students built with ``use_cls_token`` (the decoders then
also read the class token) have no vidfm equivalent and are refused.

The video teacher (``modeling_video_teacher.py``) is a VideoMAE pre-training encoder (``encoder.*``, its
``norm`` unused) and the image teacher an MAE ViT (``models_mae.py``): :mod:`vidfm.convert.official_videomae`
and :mod:`vidfm.convert.mae` read them.
"""

from __future__ import annotations

import dataclasses

import torch

from vidfm.convert.layouts import check_table, resolve_heads, unwrap
from vidfm.convert.official_videomae import OFFICIAL_NORM_EPS, _encoder, _qkv_bias, _rename_block_keys
from vidfm.convert.videomae import Converted, StateDict, count_blocks, decoder_config
from vidfm.layers.pos_embed import sincos_3d
from vidfm.utils import log

# official suffix -> vidfm branch name (tasks/mvd.py BRANCHES)
BRANCHES = {"img": "image", "vid": "video"}
_SIZE_HINT = "pass --num-frames and --img-size of the clip the student was trained on"


def is_official_mvd(sd: StateDict) -> bool:
    """An MVD student: top-level encoder keys and at least one ``down_img``/``down_vid`` decoder input."""
    return "patch_embed.proj.weight" in sd and any(f"down_{b}.weight" in sd for b in BRANCHES)


def from_official_mvd(
    obj: dict,
    heads: int | None = None,
    num_frames: int = 16,
    img_size: int = 224,
    decoder_heads: int | None = None,
    norm_eps: float = OFFICIAL_NORM_EPS,
) -> Converted:
    """An official MVD student state dict (bare or wrapped) -> :class:`Converted` in the ``mvd`` layout.

    Args:
        obj: the loaded checkpoint (``{"model": sd, ...}``, ``{"module": sd}``, ``sd``, …).
        heads: encoder heads (default: the registered official size with these dimensions, else an error).
        num_frames, img_size: the training clip (they set the position tables' grid, checked against them).
        decoder_heads: decoder heads (default: the encoder's, as ``feat_decoder_num_heads=None`` gives, when
            the decoders are as wide as the encoder; else an error).
        norm_eps: LayerNorm eps (1e-6 in every registered MVD model).
    """
    sd, how = unwrap(obj, "MVD checkpoint")
    sd = _rename_block_keys(sd)
    if "cls_token" in sd:
        raise ValueError(
            "MVD students with use_cls_token (the decoders read the class token) have no vidfm form"
        )
    if not is_official_mvd(sd):
        raise ValueError(
            f"not an official MVD student: no patch_embed.proj / down_img / down_vid (keys {sorted(sd)[:8]})"
        )
    branches = [b for b in BRANCHES if f"down_{b}.weight" in sd]
    dec_sd = {}
    for b in branches:
        keys = [
            k
            for k in sd
            if k.startswith((f"down_{b}.", f"decoder_{b}.")) or k in (f"mask_token_{b}", f"pos_embed_{b}")
        ]
        dec_sd[b] = {k: sd.pop(k) for k in keys}
    pos = sd.pop("pos_embed", None)
    width = sd["patch_embed.proj.weight"].shape[0]
    enc_cfg = _encoder(sd, heads, num_frames, img_size, norm_eps)
    grid = enc_cfg.grid()
    state = {f"encoder.{k}": v for k, v in sd.items()}
    kind = "sincos_3d_mvd"
    if pos is not None:
        kind = _table_kind(pos, grid, width, "pos_embed")
        if kind == "learned":
            log.warning("MVD pos_embed is no 3-D sincos table: kept as a learned (trainable) table")
            state["encoder.pos_embed"] = pos.reshape(1, -1, width).clone()
    enc_cfg = dataclasses.replace(enc_cfg, pos_embed=kind)
    dec_cfg = None
    for b in branches:
        part = dec_sd[b]
        dwidth = part[f"mask_token_{b}"].shape[-1]
        if f"pos_embed_{b}" in part:
            table_kind = _table_kind(part.pop(f"pos_embed_{b}"), grid, dwidth, f"pos_embed_{b}")
            if table_kind != ("sincos_3d" if kind == "sincos_3d" else "sincos_3d_mvd"):
                raise ValueError(
                    f"pos_embed_{b} is not the 3-D sincos table vidfm's MVD decoders recompute ({table_kind}); "
                    "such a checkpoint has no vidfm form"
                )
        prefix = f"decoder_{BRANCHES[b]}."
        state[f"{prefix}encoder_to_decoder.weight"] = part.pop(f"down_{b}.weight")
        state[f"{prefix}encoder_to_decoder.bias"] = part.pop(f"down_{b}.bias")
        state[f"{prefix}mask_token"] = part.pop(f"mask_token_{b}")
        for k in list(part):
            state[prefix + k[len(f"decoder_{b}.") :]] = part.pop(k)
        cfg = _decoder_cfg(state, prefix, enc_cfg.dims()[2], width, decoder_heads, norm_eps)
        if dec_cfg is not None and cfg != dec_cfg:
            raise ValueError(
                f"the MVD decoders differ in shape ({dec_cfg} vs {cfg}); vidfm builds both from one config"
            )
        dec_cfg = cfg
    log.info(
        "official MVD student (%s): encoder %dx%d, decoders %s (%d blocks, width %d)",
        how,
        width,
        enc_cfg.dims()[1],
        [BRANCHES[b] for b in branches],
        dec_cfg.depth,
        dec_cfg.width or width,
    )
    return Converted(enc_cfg, dec_cfg, state, {}, layout="mvd")


def _table_kind(table: torch.Tensor, grid: tuple[int, int, int], width: int, name: str) -> str:
    """Which fixed table ``table`` is: ``sincos_3d_mvd`` (official order), ``sincos_3d`` or ``learned``."""
    for time_first, kind in ((True, "sincos_3d_mvd"), (False, "sincos_3d")):
        if check_table(table, sincos_3d(grid, width, time_first), name, _SIZE_HINT):
            return kind
    return "learned"


def _decoder_cfg(
    state: StateDict, prefix: str, enc_heads: int, enc_width: int, heads: int | None, eps: float
):
    dwidth = state[f"{prefix}norm.weight"].shape[0]
    keys = [k[len(prefix) :] for k in state if k.startswith(prefix)]
    depth = count_blocks(keys, "blocks.")
    mlp = state[f"{prefix}blocks.0.mlp.fc1.weight"].shape[0]
    if heads is None and dwidth == enc_width:
        heads = enc_heads  # feat_decoder_num_heads=None: the encoder's heads (modeling_student.py)
    heads = resolve_heads(dwidth, depth, mlp, heads, "--decoder-heads", "decoder", {})
    if any(".ls1.gamma" in k for k in keys):
        raise ValueError("MVD decoders with LayerScale (init_values > 0) have no vidfm equivalent")
    cfg = decoder_config(depth, dwidth, heads, mlp, _qkv_bias(state, prefix), eps)
    return dataclasses.replace(cfg, in_bias=True)


def to_official_mvd(conv: Converted) -> StateDict:
    """The ``mvd`` layout -> an official ``PretrainMaskedVideoStudent`` state dict (fixed tables written as
    the official model stores them), loadable with ``model.load_state_dict(sd)`` for ``--init_ckpt``."""
    if conv.layout != "mvd" or conv.decoder is None:
        raise ValueError(f"to_official_mvd needs an mvd checkpoint with decoders, got layout {conv.layout!r}")
    grid = conv.encoder.grid()
    out: StateDict = {}
    for k, v in conv.state_dict.items():
        head, _, rest = k.partition(".")
        rest = rest.replace(".ls1.gamma", ".gamma_1").replace(".ls2.gamma", ".gamma_2")
        if head == "encoder":
            out[rest] = v
            continue
        b = {name: short for short, name in BRANCHES.items()}[head[len("decoder_") :]]
        if rest.startswith("encoder_to_decoder."):
            out[f"down_{b}.{rest.split('.')[-1]}"] = v
        elif rest == "mask_token":
            out[f"mask_token_{b}"] = v
        else:
            out[f"decoder_{b}.{rest}"] = v
    kind = conv.encoder.pos_embed
    if kind != "learned":
        if kind not in ("sincos_3d", "sincos_3d_mvd"):
            raise ValueError(f"MVD students use a 3-D table, this encoder has {kind!r}")
        out["pos_embed"] = sincos_3d(grid, conv.encoder.dims()[0], kind == "sincos_3d_mvd")[None]
    for b in BRANCHES:
        if f"mask_token_{b}" in out:
            out[f"pos_embed_{b}"] = sincos_3d(grid, out[f"mask_token_{b}"].shape[-1], kind != "sincos_3d")[
                None
            ]
    return out


__all__ = ["from_official_mvd", "is_official_mvd", "to_official_mvd"]
