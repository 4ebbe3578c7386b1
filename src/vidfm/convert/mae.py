"""Official MAE image ViTs (MVD's image teacher) -> a vidfm image encoder.

MVD ``modeling_teacher.py`` ``MaskedAutoencoderViT`` (the encoder half of MAE's ``models_mae.py``) holds:

    official                                    vidfm (``encoder.*``, an image ViT: tubelet 1, one frame)
    patch_embed.proj.weight [D,3,p,p] (Conv2d)   patch_embed.proj.weight [D,3,1,p,p] (Conv3d, time kernel 1)
    cls_token [1,1,D]                            cls_token
    pos_embed [1,1+N,D] (fixed 2-D sincos,       cls_pos (row 0), pos_embed (rows 1..N) as a learned table,
        stored)                                   so the stored values are used whatever they are
    blocks.i (timm ``Block``: norm1, attn.qkv    blocks.i (fused qkv bias)
        with bias, attn.proj, norm2, mlp.fc1/2)
    norm                                         norm (MVD's teacher returns the blocks' output before it)

LayerNorm eps 1e-6 (``norm_layer=partial(nn.LayerNorm, eps=1e-6)`` in every registered size). A full MAE
pre-training file also holds the pixel decoder (``mask_token``, ``decoder_*``): MVD's teacher never uses it
and vidfm's ``mae_image`` decoder takes no class token, so it is left out (logged). A fine-tuned MAE file's
``fc_norm``/``head`` go to ``extras``.
"""

from __future__ import annotations

import math

from vidfm.convert.layouts import unwrap
from vidfm.convert.official_videomae import stack_config
from vidfm.convert.videomae import Converted, StateDict
from vidfm.utils import log

MAE_NORM_EPS = 1e-6
_DECODER = ("mask_token", "decoder_")
_EXTRAS = ("fc_norm.", "head.")
_BLOCK_PARTS = ("norm1.", "attn.qkv.", "attn.proj.", "norm2.", "mlp.fc1.", "mlp.fc2.")


def is_official_mae(sd: StateDict) -> bool:
    """A 2-D ViT with a class token: a 4-D ``patch_embed.proj.weight`` and ``cls_token``."""
    w = sd.get("patch_embed.proj.weight")
    return w is not None and w.dim() == 4 and "cls_token" in sd


def from_official_mae(obj: dict, heads: int | None = None, norm_eps: float = MAE_NORM_EPS) -> Converted:
    """An official MAE / MVD image-teacher state dict (bare or wrapped) -> :class:`Converted` (encoder only).

    ``heads``: default the registered MAE size with these dimensions (B 12, L 16, H 16), else an error.
    """
    sd, how = unwrap(obj, "MAE checkpoint")
    if not is_official_mae(sd):
        raise ValueError(
            f"not an official MAE ViT: no 4-D patch_embed.proj.weight + cls_token (keys {sorted(sd)[:8]})"
        )
    dropped = [k for k in sd if k.startswith(_DECODER)]
    for k in dropped:
        sd.pop(k)
    if dropped:
        log.info("MAE pixel decoder left out (%d tensors): MVD's image teacher never uses it", len(dropped))
    extras = {k: sd.pop(k) for k in [k for k in sd if k.startswith(_EXTRAS)]}
    conv = sd.pop("patch_embed.proj.weight")  # [D,C,p,p]
    width, chans, patch = conv.shape[0], conv.shape[1], conv.shape[-1]
    pos = sd.pop("pos_embed").reshape(1, -1, width)  # [1,1+N,D]
    side = math.isqrt(pos.shape[1] - 1)
    if side * side != pos.shape[1] - 1:
        raise ValueError(f"MAE pos_embed of {pos.shape[1]} rows is not [cls] + a square grid")
    cfg = stack_config(
        sd,
        width,
        patch,
        heads,
        tubelet=1,
        num_frames=1,
        img_size=side * patch,
        in_chans=chans,
        pos_embed="learned",
        cls_token=True,
        qkv_bias="fused" if "blocks.0.attn.qkv.bias" in sd else "none",
        norm_eps=norm_eps,
        final_norm=True,
    )
    out: StateDict = {
        "encoder.patch_embed.proj.weight": conv.unsqueeze(2),
        "encoder.patch_embed.proj.bias": sd.pop("patch_embed.proj.bias"),
        "encoder.cls_token": sd.pop("cls_token"),
        "encoder.cls_pos": pos[:, :1].clone(),
        "encoder.pos_embed": pos[:, 1:].clone(),
        "encoder.norm.weight": sd.pop("norm.weight"),
        "encoder.norm.bias": sd.pop("norm.bias"),
    }
    for k in [k for k in sd if k.startswith("blocks.")]:
        part = k.split(".", 2)[2]
        if not part.startswith(_BLOCK_PARTS):
            raise ValueError(f"unexpected key {k!r} in an MAE block")
        out[f"encoder.{k}"] = sd.pop(k)
    if sd:
        raise ValueError(f"unexpected keys in the MAE checkpoint: {sorted(sd)[:12]}")
    log.info(
        "official MAE image ViT (%s): %dx%d, patch %d, %d² input",
        how,
        width,
        cfg.dims()[1],
        patch,
        side * patch,
    )
    return Converted(cfg, None, out, extras)


__all__ = ["from_official_mae", "is_official_mae"]
