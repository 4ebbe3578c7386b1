"""HF transformers image ViTs (``ViTMAEModel``, ``ViTModel`` and their task models) -> a vidfm image encoder.

An image ViT is a :class:`~vidfm.models.encoder.VideoEncoder` with ``tubelet=1``, ``num_frames=1``, a class
token and a position table held as a parameter (``pos_embed="learned"``): ViTMAE stores its fixed 2-D sincos
table in the checkpoint, ViT its learned one, so both load as tensors and nothing is recomputed.

Key correspondence (transformers ``models/vit/modeling_vit.py``, ``models/vit_mae/modeling_vit_mae.py``). Files
written by ``save_pretrained`` (4.x and 5.x alike) use the legacy names; modules in memory under transformers
5.x use the new ones; both are read. Per block ``i``:

    legacy ``encoder.layer.i.``                 5.x ``layers.i.``               vidfm ``encoder.blocks.i.``
    layernorm_before / layernorm_after           (same)                         norm1 / norm2
    attention.attention.{query,key,value}        attention.{q,k,v}_proj         attn.qkv (rows [q; k; v])
    attention.output.dense                       attention.o_proj               attn.proj
    intermediate.dense / output.dense            mlp.fc1 / mlp.fc2              mlp.fc1 / mlp.fc2

plus ``embeddings.patch_embeddings.projection`` (Conv2d) -> ``encoder.patch_embed.proj`` (Conv3d, time
kernel 1), ``embeddings.cls_token`` -> ``encoder.cls_token``, ``embeddings.position_embeddings`` [1,1+N,D] ->
``encoder.cls_pos`` (row 0) and ``encoder.pos_embed`` (rows 1..N), ``layernorm`` -> ``encoder.norm``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vidfm.convert.hf_videomae import HF_VIT_DEFAULTS, _blocks_from_hf, hf_encoder_config
from vidfm.convert.videomae import Converted, StateDict, count_blocks
from vidfm.io import read_hf_model
from vidfm.utils import log

MODEL_TYPES = ("vit", "vit_mae")
# ViTConfig / ViTMAEConfig defaults (transformers ``configuration_vit.py`` / ``configuration_vit_mae.py``).
HF_DEFAULTS: dict[str, Any] = {**HF_VIT_DEFAULTS, "qkv_bias": True}
# 5.x in-memory names -> legacy names, inside one block.
_NEW_TO_LEGACY = {
    "attention.q_proj.": "attention.attention.query.",
    "attention.k_proj.": "attention.attention.key.",
    "attention.v_proj.": "attention.attention.value.",
    "attention.o_proj.": "attention.output.dense.",
    "mlp.fc1.": "intermediate.dense.",
    "mlp.fc2.": "output.dense.",
}
_NEW_BLOCK = re.compile(r"^layers\.(\d+)\.(.*)$")
# Heads of the task models: kept as extras (pooler, classifier) or dropped (the MAE pixel decoder).
_EXTRA_PREFIXES = ("pooler.", "classifier.")
_DROP_PREFIXES = ("decoder.",)


def _legacy_names(sd: StateDict) -> StateDict:
    """Task-model prefix ``vit.`` removed and 5.x block names mapped to the legacy ones."""
    out: StateDict = {}
    for key, value in sd.items():
        key = key[len("vit.") :] if key.startswith("vit.") else key
        m = _NEW_BLOCK.match(key)
        if m:
            rest = m.group(2)
            for new, old in _NEW_TO_LEGACY.items():
                if rest.startswith(new):
                    rest = old + rest[len(new) :]
                    break
            key = f"encoder.layer.{m.group(1)}.{rest}"
        out[key] = value
    return out


def from_hf_vit(model_or_path: nn.Module | str | Path) -> Converted:
    """Convert an HF ``ViTMAEModel`` / ``ViTMAEForPreTraining`` / ``ViTModel`` / ``ViTForImageClassification``
    to a vidfm image encoder (``encoder.*`` tensors) and its config.

    Args:
        model_or_path: a model instance, or a local folder written by ``save_pretrained`` (read without
            transformers).

    Returns:
        :class:`~vidfm.convert.videomae.Converted` with no decoder; ViT's ``pooler.*`` and a classifier go to
        ``extras``, ViTMAE's pixel decoder is dropped (a teacher never uses it).
    """
    config, raw = read_hf_model(model_or_path)
    kind = config.get("model_type")
    if kind not in MODEL_TYPES:
        raise ValueError(f"model_type {kind!r} is not an HF image ViT ({', '.join(MODEL_TYPES)})")
    c = {**HF_DEFAULTS, **config}
    if c["hidden_act"] != "gelu":
        raise ValueError(f"hidden_act {c['hidden_act']!r} is not supported (vidfm blocks use exact GELU)")
    sd = _legacy_names(raw)
    dropped = sorted(k for k in sd if k.startswith(_DROP_PREFIXES))
    extras = {k: sd.pop(k) for k in sorted(sd) if k.startswith(_EXTRA_PREFIXES)}
    for k in dropped:
        sd.pop(k)
    if dropped:
        log.info("%s: dropping the MAE pixel decoder (%d tensors)", kind, len(dropped))
    try:
        enc_cfg, out = _convert(c, sd)
    except KeyError as e:
        raise ValueError(f"not an HF {kind} state dict: no {e.args[0]!r}") from None
    if sd:
        raise ValueError(f"unexpected keys in the HF {kind} state dict: {sorted(sd)[:12]}")
    return Converted(enc_cfg, None, out, extras)


def _convert(c: dict[str, Any], sd: StateDict):
    """The renames of :func:`from_hf_vit`; pops the converted keys from ``sd``."""
    depth = count_blocks(sd, "encoder.layer.")
    qkv_bias = bool(c["qkv_bias"])
    enc_cfg = hf_encoder_config(
        c,
        depth,
        tubelet=1,
        num_frames=1,
        pos_embed="learned",
        cls_token=True,
        qkv_bias="fused" if qkv_bias else "none",
        final_norm=True,
    )
    pos = sd.pop("embeddings.position_embeddings")  # [1, 1+N, D], row 0 = the class token's
    out: StateDict = {
        "encoder.patch_embed.proj.weight": sd.pop("embeddings.patch_embeddings.projection.weight").unsqueeze(
            2
        ),
        "encoder.patch_embed.proj.bias": sd.pop("embeddings.patch_embeddings.projection.bias"),
        "encoder.cls_token": sd.pop("embeddings.cls_token"),
        "encoder.cls_pos": pos[:, :1].clone(),
        "encoder.pos_embed": pos[:, 1:].clone(),
    }
    # The videomae block renamer with qv=False moves everything except the q/k/v biases, which ViT fuses.
    blocks = _blocks_from_hf(sd, "encoder.layer.", "encoder.blocks.", depth, qv=False)
    if qkv_bias:
        for i in range(depth):
            att = f"encoder.layer.{i}.attention.attention."
            blocks[f"encoder.blocks.{i}.attn.qkv.bias"] = torch.cat(
                [sd.pop(f"{att}{n}.bias") for n in ("query", "key", "value")]
            )
    out.update(blocks)
    out.update({f"encoder.norm.{p}": sd.pop(f"layernorm.{p}") for p in ("weight", "bias")})
    return enc_cfg, out


def hf_normalisation(path: str | Path) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """(image_mean, image_std) from an HF folder's ``preprocessor_config.json``, or None without one."""
    file = Path(path) / "preprocessor_config.json"
    if not file.is_file():
        return None
    data = json.loads(file.read_text())
    if "image_mean" not in data or "image_std" not in data:
        return None
    return tuple(float(v) for v in data["image_mean"]), tuple(float(v) for v in data["image_std"])


def hf_model_type(path: str | Path) -> str | None:
    """``model_type`` of an HF model folder, or None when ``path`` is not one."""
    file = Path(path) / "config.json"
    if not file.is_file():
        return None
    return json.loads(file.read_text()).get("model_type")


__all__ = ["from_hf_vit", "hf_model_type", "hf_normalisation"]
