"""CLIP image towers (OpenAI layout, HF ``CLIPVisionModel``/``CLIPModel``) -> :class:`CLIPVisionTower` weights.

OpenAI (``clip/model.py`` ``VisionTransformer``; also the visual-only files UMT extracts, which drop the
``visual.`` prefix, and UMT's own teacher ``single_modality/models/clip.py``, whose ``conv1`` is a Conv3d
with time kernel 1)                                          -> vidfm
    conv1.weight [D,3,p,p] or [D,3,1,p,p] (no bias)           patch_embed.proj.weight [D,3,1,p,p] (+ zero bias)
    class_embedding [D]                                       cls_token [1,1,D]
    positional_embedding [1+N,D]                              cls_pos (row 0), pos_embed (rows 1..N)
    ln_pre / ln_post                                          ln_pre / norm
    transformer.resblocks.i.ln_1 / ln_2                       blocks.i.norm1 / norm2
    transformer.resblocks.i.attn.in_proj_{weight,bias}        blocks.i.attn.qkv (rows [q; k; v] in both)
    transformer.resblocks.i.attn.out_proj                     blocks.i.attn.proj
    transformer.resblocks.i.mlp.c_fc / c_proj                 blocks.i.mlp.fc1 / fc2
    proj [D,E]                                                proj [D,E]

HF transformers (``models/clip/modeling_clip.py``; keys under ``vision_model.`` in files and in ``CLIPModel``,
bare in a 5.x ``CLIPVisionModel`` in memory): ``embeddings.{class_embedding, patch_embedding,
position_embedding}``, ``pre_layrnorm`` (sic), ``encoder.layers.i.{layer_norm1, self_attn.{q,k,v,out}_proj,
layer_norm2, mlp.fc1, mlp.fc2}``, ``post_layernorm``, and ``visual_projection.weight`` [E,D] (transposed) in
the models with a projection. Heads: HF's ``num_attention_heads``; for the OpenAI layout the caller's
``heads``, else OpenAI's own rule ``vision_heads = vision_width // 64`` (``clip/model.py`` ``build_model``),
which UMT's ``clip_b16``/``clip_l14`` follow too (12 and 16 heads); a width that is no multiple of 64 needs
``heads``. Files may wrap the weights (``model``, ``module``, ``state_dict``, ``model_ema``;
:func:`vidfm.convert.layouts.unwrap`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from vidfm.config import config_from_dict
from vidfm.convert.layouts import read_checkpoint_file, unwrap
from vidfm.convert.videomae import StateDict
from vidfm.io import load_tensors, read_hf_model
from vidfm.models.clip_vision import Activation, CLIPVisionConfig, clip_encoder_config


def _layer_count(sd: StateDict, prefix: str) -> int:
    ids = {int(k[len(prefix) :].split(".")[0]) for k in sd if k.startswith(prefix)}
    if not ids or ids != set(range(len(ids))):
        raise ValueError(f"blocks under {prefix!r} are missing or not numbered 0..n-1: {sorted(ids)[:8]}")
    return len(ids)


def _vision_config(
    width: int,
    depth: int,
    heads: int,
    mlp: int,
    patch: int,
    img_size: int,
    embed: int | None,
    eps: float = 1e-5,
    act: Activation = "quick_gelu",
) -> CLIPVisionConfig:
    # Width/depth/heads override the size's; only the patch is read from the name.
    enc = clip_encoder_config(
        f"B/{patch}", img_size, width=width, depth=depth, heads=heads, mlp_ratio=mlp / width, norm_eps=eps
    )
    return CLIPVisionConfig(encoder=enc, embed_dim=embed, act=act)


def _positions(out: StateDict, pos: torch.Tensor, patch: int) -> int:
    """Split a [1+N, D] table into cls_pos / pos_embed; returns the image side it implies."""
    pos = pos.reshape(-1, pos.shape[-1])
    grid = math.isqrt(pos.shape[0] - 1)
    if grid * grid != pos.shape[0] - 1:
        raise ValueError(f"position table of {pos.shape[0] - 1} patches is not a square grid")
    out["cls_pos"] = pos[None, :1].clone()
    out["pos_embed"] = pos[None, 1:].clone()
    return grid * patch


def is_openai_clip(sd: StateDict) -> bool:
    """An OpenAI-layout CLIP image tower (full model or visual-only): ``conv1`` and ``class_embedding``."""
    return any(f"{p}conv1.weight" in sd and f"{p}class_embedding" in sd for p in ("", "visual."))


def from_openai_clip(state_dict: dict, heads: int | None = None) -> tuple[CLIPVisionConfig, StateDict]:
    """An OpenAI-layout CLIP state dict (full model with ``visual.*``, visual-only, UMT's 3-D ``conv1``; bare
    or wrapped) -> (config, tower weights). ``heads``: the tower's heads (default ``width // 64``)."""
    state_dict, _ = unwrap(state_dict, "OpenAI CLIP weights")
    sd = {k[len("visual.") :]: v for k, v in state_dict.items() if k.startswith("visual.")} or dict(
        state_dict
    )
    if "conv1.weight" not in sd:
        raise ValueError("not an OpenAI CLIP image tower: no 'visual.conv1.weight' / 'conv1.weight'")
    conv = sd.pop("conv1.weight")  # [D,3,p,p] (OpenAI) or [D,3,1,p,p] (UMT's Conv3d)
    if conv.dim() == 5:
        if conv.shape[2] != 1:
            raise ValueError(f"a CLIP conv1 with time kernel {conv.shape[2]} is no image tower")
        conv = conv[:, :, 0]
    if conv.dim() != 4 or conv.shape[-1] != conv.shape[-2]:
        raise ValueError(f"conv1.weight of shape {tuple(conv.shape)} is no square-patch image embedding")
    width, patch = conv.shape[0], conv.shape[-1]
    out: StateDict = {
        "patch_embed.proj.weight": conv.unsqueeze(2),
        "patch_embed.proj.bias": torch.zeros(width, dtype=conv.dtype),
        "cls_token": sd.pop("class_embedding").reshape(1, 1, width),
    }
    img_size = _positions(out, sd.pop("positional_embedding"), patch)
    for a, b in (("ln_pre", "ln_pre"), ("ln_post", "norm")):
        out.update({f"{b}.{p}": sd.pop(f"{a}.{p}") for p in ("weight", "bias")})
    depth = _layer_count(sd, "transformer.resblocks.")
    names = {
        "ln_1": "norm1",
        "ln_2": "norm2",
        "attn.in_proj_weight": "attn.qkv.weight",
        "attn.in_proj_bias": "attn.qkv.bias",
        "attn.out_proj": "attn.proj",
        "mlp.c_fc": "mlp.fc1",
        "mlp.c_proj": "mlp.fc2",
    }
    for i in range(depth):
        src = f"transformer.resblocks.{i}."
        for key in [k for k in sd if k.startswith(src)]:
            rest = key[len(src) :]
            new = next((b + rest[len(a) :] for a, b in names.items() if rest.startswith(a)), None)
            if new is None:
                raise ValueError(f"unexpected key {key!r} in an OpenAI CLIP block")
            out[f"blocks.{i}.{new}"] = sd.pop(key)
    proj = sd.pop("proj", None)
    if proj is not None:
        out["proj"] = proj
    if sd:
        raise ValueError(f"unexpected keys in the OpenAI CLIP image tower: {sorted(sd)[:12]}")
    mlp = out["blocks.0.mlp.fc1.weight"].shape[0]
    if heads is None:
        if width % 64:
            raise ValueError(f"CLIP width {width} is no multiple of 64 (OpenAI's head width): pass --heads")
        heads = width // 64
    elif width % heads:
        raise ValueError(f"--heads {heads} does not divide the CLIP width {width}")
    cfg = _vision_config(width, depth, heads, mlp, patch, img_size, None if proj is None else proj.shape[1])
    return cfg, out


def from_hf_clip(model_or_path: nn.Module | str | Path) -> tuple[CLIPVisionConfig, StateDict]:
    """An HF CLIP model or ``save_pretrained`` folder -> (config, tower weights); the text side is dropped."""
    config, raw = read_hf_model(model_or_path)
    kind = config.get("model_type")
    if kind == "clip":
        config = {**config.get("vision_config", {})}
    elif kind != "clip_vision_model":
        raise ValueError(f"model_type {kind!r} is not an HF CLIP model (clip, clip_vision_model)")
    c = {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "image_size": 224,
        "patch_size": 32,
        "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-5,
        **config,
    }  # CLIPVisionConfig defaults (transformers ``configuration_clip.py``)
    if c["hidden_act"] not in ("quick_gelu", "gelu"):
        raise ValueError(f"hidden_act {c['hidden_act']!r} is not supported (quick_gelu or gelu)")
    sd = {(k[len("vision_model.") :] if k.startswith("vision_model.") else k): v for k, v in raw.items()}
    sd = {k: v for k, v in sd.items() if not k.startswith(("text_model.", "text_projection", "logit_scale"))}
    try:
        return _convert_hf(c, sd)
    except KeyError as e:
        raise ValueError(f"not an HF CLIP vision state dict: no {e.args[0]!r}") from None


def _convert_hf(c: dict[str, Any], sd: StateDict) -> tuple[CLIPVisionConfig, StateDict]:
    conv = sd.pop("embeddings.patch_embedding.weight")
    width, patch = conv.shape[0], conv.shape[-1]
    out: StateDict = {
        "patch_embed.proj.weight": conv.unsqueeze(2),
        "patch_embed.proj.bias": torch.zeros(width, dtype=conv.dtype),
        "cls_token": sd.pop("embeddings.class_embedding").reshape(1, 1, width),
    }
    sd.pop("embeddings.position_ids", None)  # a buffer older files store
    _positions(out, sd.pop("embeddings.position_embedding.weight"), patch)
    for a, b in (("pre_layrnorm", "ln_pre"), ("post_layernorm", "norm")):
        out.update({f"{b}.{p}": sd.pop(f"{a}.{p}") for p in ("weight", "bias")})
    depth = _layer_count(sd, "encoder.layers.")
    for i in range(depth):
        src, dst = f"encoder.layers.{i}.", f"blocks.{i}."
        for p in ("weight", "bias"):
            out[f"{dst}attn.qkv.{p}"] = torch.cat([sd.pop(f"{src}self_attn.{n}_proj.{p}") for n in "qkv"])
            out[f"{dst}attn.proj.{p}"] = sd.pop(f"{src}self_attn.out_proj.{p}")
            out[f"{dst}norm1.{p}"] = sd.pop(f"{src}layer_norm1.{p}")
            out[f"{dst}norm2.{p}"] = sd.pop(f"{src}layer_norm2.{p}")
            out[f"{dst}mlp.fc1.{p}"] = sd.pop(f"{src}mlp.fc1.{p}")
            out[f"{dst}mlp.fc2.{p}"] = sd.pop(f"{src}mlp.fc2.{p}")
    proj = sd.pop("visual_projection.weight", None)
    if proj is not None:
        out["proj"] = proj.t().contiguous()
    if sd:
        raise ValueError(f"unexpected keys in the HF CLIP vision state dict: {sorted(sd)[:12]}")
    cfg = _vision_config(
        width,
        depth,
        int(c["num_attention_heads"]),
        int(c["intermediate_size"]),
        patch,
        int(c["image_size"]),
        None if proj is None else proj.shape[0],
        eps=float(c["layer_norm_eps"]),
        act=c["hidden_act"],
    )
    return cfg, out


def read_clip(path: str | Path, heads: int | None = None) -> tuple[CLIPVisionConfig, StateDict]:
    """An HF CLIP folder (``config.json`` inside), a folder ``vidfm convert`` wrote from a CLIP tower, or an
    OpenAI-layout state-dict file -> (config, tower weights). ``heads``: for the OpenAI layout only."""
    path = Path(path)
    if path.is_dir() and (path / "config.yaml").is_file() and not (path / "config.json").is_file():
        return _read_converted(path)
    if path.is_dir():
        file = path / "config.json"
        if not file.is_file():
            raise ValueError(f"{path} is a folder without config.json: not an HF CLIP model")
        if json.loads(file.read_text()).get("model_type") not in ("clip", "clip_vision_model"):
            raise ValueError(f"{path} holds no HF CLIP model (model_type clip or clip_vision_model)")
        return from_hf_clip(path)
    return from_openai_clip(load_openai_state_dict(path), heads=heads)


def _read_converted(path: Path) -> tuple[CLIPVisionConfig, StateDict]:
    """A folder ``vidfm convert`` wrote from a CLIP tower: ``config.yaml`` (``layout: clip``, ``tower``) and
    ``model.safetensors`` (``visual.*``)."""
    data = yaml.safe_load((path / "config.yaml").read_text()) or {}
    if not isinstance(data, dict) or data.get("layout") != "clip" or not data.get("tower"):
        raise ValueError(f"{path} holds no converted CLIP tower (config.yaml layout {data.get('layout')!r})")
    cfg = config_from_dict(CLIPVisionConfig, data["tower"])
    state = load_tensors(path / "model.safetensors")
    return cfg, {k[len("visual.") :]: v for k, v in state.items() if k.startswith("visual.")}


def load_openai_state_dict(path: str | Path) -> StateDict:
    """OpenAI CLIP weights: a plain state dict (read with ``weights_only=True``) or one of OpenAI's released
    TorchScript archives (read with ``torch.jit.load``, whose constants are tensors, not pickled code)."""
    path = Path(path)
    try:
        state = read_checkpoint_file(path)
    except (RuntimeError, ValueError) as err:  # TorchScript archives are not plain pickles
        try:
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
        except RuntimeError:
            raise ValueError(f"{path}: neither a state dict nor a TorchScript CLIP archive ({err})") from None
    return unwrap(state, str(path))[0]


__all__ = [
    "from_hf_clip",
    "from_openai_clip",
    "is_openai_clip",
    "load_openai_state_dict",
    "read_clip",
]
