"""HF transformers ``VideoPrismVisionModel`` -> vidfm factorized :class:`~vidfm.models.encoder.VideoEncoder`.

transformers ``models/videoprism/modeling_videoprism.py`` (a port of the official JAX/Flax
``videoprism/encoders.py`` ``FactorizedEncoder``). Key correspondence:

    HF                                                   vidfm ``encoder.``
    spatial_embeddings.patch_embeddings.projection       patch_embed.proj  (Conv3d, kernel (1, p, p))
    spatial_embeddings.position_embeddings [1,H'W',D]    pos_embed
    temporal_embeddings.position_embeddings [1,T,D]      temporal_pos
    spatial_layers.i.                                    blocks.i.
    temporal_layers.j.                                   blocks.{S+j}.   (S = number of spatial layers)
      layernorm_before / layernorm_after                   norm1 / norm2        (weight + 1, see below)
      attention.{q,k,v}_proj.{weight,bias}                 attn.qkv.{weight,bias} (rows [q; k; v])
      attention.o_proj                                     attn.proj
      mlp.fc1 / mlp.fc2                                    mlp.fc1 / mlp.fc2
    layernorm1 (after the spatial stage)                 spatial_norm         (weight + 1)
    layernorm2 (after the temporal stage)                norm                 (weight + 1)

Conventions that differ from a plain ViT and are handled here:

- LayerNorm scale: HF ``VideoPrismLayerNorm`` (as Praxis/Flax ``LayerNorm`` with ``direct_scale=False``)
  multiplies by ``weight + 1``; its stored weights are the offset from 1. vidfm stores the scale, so 1 is
  added on the way in.
- Attention: separate q/k/v projections (fused into one qkv here), logits soft-capped at
  ``attn_logit_softcapping`` (50) as ``c·tanh(logits/c)`` -> ``EncoderConfig.attn_softcap``.
- Activation ``gelu_python`` is the exact erf GELU of vidfm's MLP.
- HF's tubelet embedding flattens time into the batch, so only a temporal tubelet of 1 is supported there.

The MAP pooler and text tower of ``VideoPrismClipModel`` are not converted: vidfm's VideoPrism stage-1 task
trains its own (:mod:`vidfm.tasks.videoprism`). Folders are read directly (config.json + safetensors/bin),
without transformers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from vidfm.convert.hf_videomae import hf_square
from vidfm.convert.videomae import Converted, StateDict
from vidfm.io import read_hf_model
from vidfm.models.encoder import EncoderConfig

# VideoPrismVisionConfig defaults (transformers ``configuration_videoprism.py``), for config.json files that
# omit them.
HF_DEFAULTS: dict[str, Any] = {
    "image_size": 288,
    "num_frames": 16,
    "tubelet_size": [1, 18, 18],
    "num_channels": 3,
    "hidden_size": 768,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu_python",
    "layer_norm_eps": 1e-6,
    "qkv_bias": True,
    "num_spatial_layers": 12,
    "num_temporal_layers": 4,
    "attn_logit_softcapping": 50.0,
}
MODEL_TYPES = ("videoprism_vision_model", "videoprism")
_PREFIXES = ("vision_model.", "video_model.backbone.", "backbone.")  # inside VideoPrism{Clip,Video}Model
_WB = ("weight", "bias")


def _vision_config(config: dict[str, Any]) -> dict[str, Any]:
    """The vision sub-config of a ``videoprism`` (CLIP) config, or the config itself."""
    if config.get("model_type") == "videoprism":
        return dict(config.get("vision_config") or {})
    return config


def _strip_prefix(sd: StateDict) -> StateDict:
    """Keys of the vision backbone without the prefix a larger model puts before them."""
    if any(k.startswith("spatial_embeddings.") for k in sd):
        return dict(sd)
    for prefix in _PREFIXES:
        inner = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
        if any(k.startswith("spatial_embeddings.") for k in inner):
            return inner
    raise ValueError("no VideoPrism vision backbone (spatial_embeddings.*) in the state dict")


def _block(sd: StateDict, src: str, dst: str, qkv_bias: bool) -> StateDict:
    """Pop one HF ``VideoPrismLayer`` ``{src}*`` from ``sd`` as a vidfm block ``{dst}*``."""
    att = src + "attention."
    out: StateDict = {
        dst + "attn.qkv.weight": torch.cat([sd.pop(f"{att}{n}_proj.weight") for n in "qkv"]),
    }
    if qkv_bias:
        out[dst + "attn.qkv.bias"] = torch.cat([sd.pop(f"{att}{n}_proj.bias") for n in "qkv"])
    for p in _WB:
        out[dst + f"attn.proj.{p}"] = sd.pop(f"{att}o_proj.{p}")
        out[dst + f"mlp.fc1.{p}"] = sd.pop(f"{src}mlp.fc1.{p}")
        out[dst + f"mlp.fc2.{p}"] = sd.pop(f"{src}mlp.fc2.{p}")
    out.update(_norm(sd, src + "layernorm_before.", dst + "norm1."))
    out.update(_norm(sd, src + "layernorm_after.", dst + "norm2."))
    return out


def _norm(sd: StateDict, src: str, dst: str) -> StateDict:
    # HF applies ``weight + 1`` (module docstring); vidfm's LayerNorm applies ``weight``.
    return {dst + "weight": sd.pop(src + "weight") + 1.0, dst + "bias": sd.pop(src + "bias")}


def from_hf_videoprism(model_or_path: nn.Module | str | Path) -> Converted:
    """Convert an HF ``VideoPrismVisionModel`` (or the vision backbone inside ``VideoPrismVideoModel`` /
    ``VideoPrismClipModel``) to a factorized vidfm encoder (``encoder.*`` tensors) and its config.

    Args:
        model_or_path: a model instance, or a local folder written by ``save_pretrained``.

    Returns:
        :class:`~vidfm.convert.videomae.Converted` with no decoder and no extras (pooler and text tower of the
        larger models are left out, see the module docstring).
    """
    config, raw = read_hf_model(model_or_path)
    if config.get("model_type") not in MODEL_TYPES:
        raise ValueError(
            f"model_type {config.get('model_type')!r} is not HF VideoPrism ({', '.join(MODEL_TYPES)})"
        )
    c = {**HF_DEFAULTS, **_vision_config(config)}
    if c["hidden_act"] not in ("gelu", "gelu_python"):
        raise ValueError(f"hidden_act {c['hidden_act']!r} is not supported (vidfm blocks use exact GELU)")
    tubelet = list(c["tubelet_size"])
    if len(tubelet) != 3 or tubelet[0] != 1:
        raise ValueError(f"tubelet_size {tubelet}: HF VideoPrism embeds one frame per token, [1, p, p]")
    width, heads = int(c["hidden_size"]), int(c["num_attention_heads"])
    spatial, temporal = int(c["num_spatial_layers"]), int(c["num_temporal_layers"])
    qkv_bias = bool(c["qkv_bias"])
    softcap = c["attn_logit_softcapping"]
    enc_cfg = EncoderConfig(
        size=f"B/{hf_square(tubelet[1:], 'tubelet_size')}",  # the size name only fixes the patch here
        width=width,
        depth=spatial,
        heads=heads,
        mlp_ratio=int(c["intermediate_size"]) / width,
        tubelet=1,
        num_frames=int(c["num_frames"]),
        img_size=hf_square(c["image_size"], "image_size"),
        in_chans=int(c["num_channels"]),
        pos_embed="learned",
        qkv_bias="fused" if qkv_bias else "none",
        norm_eps=float(c["layer_norm_eps"]),
        attn_softcap=float(softcap) if softcap else None,
        space_time="factorized",
        temporal_depth=temporal,
    )
    sd = _strip_prefix(raw)
    try:
        out: StateDict = {
            "encoder.patch_embed.proj.weight": sd.pop(
                "spatial_embeddings.patch_embeddings.projection.weight"
            ),
            "encoder.patch_embed.proj.bias": sd.pop("spatial_embeddings.patch_embeddings.projection.bias"),
            "encoder.pos_embed": sd.pop("spatial_embeddings.position_embeddings"),
            "encoder.temporal_pos": sd.pop("temporal_embeddings.position_embeddings"),
        }
        for i in range(spatial):
            out.update(_block(sd, f"spatial_layers.{i}.", f"encoder.blocks.{i}.", qkv_bias))
        for j in range(temporal):
            out.update(_block(sd, f"temporal_layers.{j}.", f"encoder.blocks.{spatial + j}.", qkv_bias))
        out.update(_norm(sd, "layernorm1.", "encoder.spatial_norm."))
        out.update(_norm(sd, "layernorm2.", "encoder.norm."))
    except KeyError as e:
        raise ValueError(f"not an HF VideoPrism vision state dict: no {e.args[0]!r}") from None
    if sd:
        raise ValueError(f"unexpected keys in the HF VideoPrism vision state dict: {sorted(sd)[:12]}")
    return Converted(enc_cfg, None, out, {})


def is_hf_videoprism(path: str | Path) -> bool:
    """True for an HF folder whose config.json names a VideoPrism model."""
    import json

    file = Path(path) / "config.json"
    return file.is_file() and json.loads(file.read_text()).get("model_type") in MODEL_TYPES


__all__ = ["from_hf_videoprism", "is_hf_videoprism"]
