"""HF transformers VideoMAE <-> vidfm.

Key correspondence (transformers ``models/videomae/modeling_videomae.py``), per block ``i``:

    HF ``videomae.encoder.layer.i.``                 vidfm ``encoder.blocks.i.``
    layernorm_before / layernorm_after               norm1 / norm2
    attention.attention.{query,key,value}.weight     attn.qkv.weight  (rows [q; k; v])
    attention.attention.{query,value}.bias           attn.q_bias / attn.v_bias  (HF's key has no bias)
    attention.output.dense                           attn.proj
    intermediate.dense / output.dense                mlp.fc1 / mlp.fc2

plus ``videomae.embeddings.patch_embeddings.projection`` <-> ``encoder.patch_embed.proj``, the final
``videomae.layernorm`` (absent when ``use_mean_pooling``) <-> ``encoder.norm``, and for pre-training models
``encoder_to_decoder``, ``mask_token``, ``decoder.decoder_layers.i``, ``decoder.norm``, ``decoder.head`` <->
``decoder.{encoder_to_decoder, mask_token, blocks.i, norm, head}``. Position tables are fixed 1-D sincos
in both and stored in neither.

Folders are read directly (config.json + safetensors/bin), without transformers: transformers 4.x saved the
biases as ``attention.attention.{q,v}_bias`` and 5.x as ``{query,value}.bias``; both are read here, so
neither naming can silently lose the biases on load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from vidfm.convert.videomae import StateDict, count_blocks, decoder_config, encoder_config
from vidfm.io import read_hf_model
from vidfm.models.decoder import DecoderConfig, decoder_dims
from vidfm.models.encoder import EncoderConfig
from vidfm.utils import log

# ViTConfig's defaults for the fields :func:`hf_encoder_config` reads (transformers ``configuration_vit.py``),
# which VideoMAEConfig and ViTMAEConfig repeat; for config.json files that omit them.
HF_VIT_DEFAULTS: dict[str, Any] = {
    "image_size": 224,
    "patch_size": 16,
    "num_channels": 3,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-12,
}
# VideoMAEConfig defaults (transformers ``configuration_videomae.py``).
HF_DEFAULTS: dict[str, Any] = {
    **HF_VIT_DEFAULTS,
    "num_frames": 16,
    "tubelet_size": 2,
    "qv_bias": True,
    "use_mean_pooling": True,
    "decoder_num_attention_heads": 6,
    "decoder_hidden_size": 384,
    "decoder_num_hidden_layers": 4,
    "decoder_intermediate_size": 1536,
}
# HF's VideoMAEDecoder builds its final norm as ``nn.LayerNorm(decoder_hidden_size)``: eps 1e-5 always.
HF_DECODER_NORM_EPS = 1e-5

# (HF suffix, vidfm suffix) inside one block, besides the fused qkv.
_BLOCK = [
    ("layernorm_before", "norm1"),
    ("layernorm_after", "norm2"),
    ("attention.output.dense", "attn.proj"),
    ("intermediate.dense", "mlp.fc1"),
    ("output.dense", "mlp.fc2"),
]
_WB = ("weight", "bias")
_BIAS_NAMES = {"q": ("query.bias", "q_bias"), "v": ("value.bias", "v_bias")}  # 5.x name, 4.x name


def hf_mask_to_indices(bool_masked_pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """HF ``bool_masked_pos`` [B,N] (True = masked) -> vidfm (visible [B,Nv], masked [B,Nm]) in grid order.

    HF keeps ``embeddings[~bool_masked_pos]`` in grid order, so sorted indices reproduce its token order.
    """
    counts = bool_masked_pos.sum(1)
    if (counts != counts[0]).any():
        raise ValueError("every sample must mask the same number of tokens")
    b, n = bool_masked_pos.shape
    order = torch.arange(n, device=bool_masked_pos.device).expand(b, n)
    return order[~bool_masked_pos].view(b, -1), order[bool_masked_pos].view(b, -1)


def _blocks_from_hf(sd: StateDict, src: str, dst: str, depth: int, qv: bool) -> StateDict:
    """Pop HF blocks ``{src}i.*`` from ``sd`` and return them as vidfm blocks ``{dst}i.*``."""
    out: StateDict = {}
    for i in range(depth):
        s, d = f"{src}{i}.", f"{dst}{i}."
        att = s + "attention.attention."
        out[d + "attn.qkv.weight"] = torch.cat(
            [sd.pop(att + f"{n}.weight") for n in ("query", "key", "value")]
        )
        for name, (new, old) in _BIAS_NAMES.items():
            key = att + new if att + new in sd else att + old
            if qv:
                out[d + f"attn.{name}_bias"] = sd.pop(key)
        for hf, ours in _BLOCK:
            for p in _WB:
                out[d + f"{ours}.{p}"] = sd.pop(f"{s}{hf}.{p}")
    return out


def _blocks_to_hf(sd: StateDict, src: str, dst: str, depth: int, qv: bool) -> StateDict:
    """Inverse of :func:`_blocks_from_hf` (HF 5.x names): pops vidfm blocks ``{src}i.*`` from ``sd``."""
    out: StateDict = {}
    for i in range(depth):
        s, d = f"{src}{i}.", f"{dst}{i}."
        att = d + "attention.attention."
        q, k, v = sd.pop(s + "attn.qkv.weight").chunk(3)
        out.update({att + "query.weight": q, att + "key.weight": k, att + "value.weight": v})
        if qv:
            out[att + "query.bias"], out[att + "value.bias"] = (
                sd.pop(s + "attn.q_bias"),
                sd.pop(s + "attn.v_bias"),
            )
        for hf, ours in _BLOCK:
            for p in _WB:
                out[f"{d}{hf}.{p}"] = sd.pop(f"{s}{ours}.{p}")
    return out


def hf_square(value: Any, name: str) -> int:
    """One side of an HF size field (``image_size``, ``patch_size``, a tubelet's spatial part), which HF
    configs give as an int or a list; vidfm's images, patches and tubelets are square."""
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise ValueError(f"{name}={value}: vidfm uses square images and patches")
        value = value[0]
    return int(value)


def hf_encoder_config(c: dict[str, Any], depth: int, **fields: Any) -> EncoderConfig:
    """The fields every HF ViT-family config names alike (``hidden_size``, ``num_attention_heads``,
    ``intermediate_size``, ``patch_size``, ``image_size``, ``num_channels``, ``layer_norm_eps``: VideoMAE's
    and ViT/ViTMAE's ``configuration_*.py``) as an EncoderConfig; ``fields`` add what the model type decides
    (tubelet, frames, positions, q/k/v biases, class token, final norm)."""
    return encoder_config(
        int(c["hidden_size"]),
        depth,
        int(c["num_attention_heads"]),
        int(c["intermediate_size"]),
        hf_square(c["patch_size"], "patch_size"),
        img_size=hf_square(c["image_size"], "image_size"),
        in_chans=int(c["num_channels"]),
        norm_eps=float(c["layer_norm_eps"]),
        **fields,
    )


def from_hf_videomae(
    model_or_path: nn.Module | str | Path,
) -> tuple[EncoderConfig, DecoderConfig | None, StateDict]:
    """Convert an HF VideoMAE model to vidfm configs and a vidfm-layout state dict.

    Args:
        model_or_path: a ``VideoMAEModel`` / ``VideoMAEForPreTraining`` / ``VideoMAEForVideoClassification``
            instance, or a local folder saved by ``save_pretrained`` (read without transformers).

    Returns:
        (encoder config, decoder config or None, ``{"encoder.*", "decoder.*"}`` tensors). The classifier of
        ``VideoMAEForVideoClassification`` (``fc_norm``, ``classifier``) is logged and dropped.
    """
    config, raw = read_hf_model(model_or_path)
    if config.get("model_type", "videomae") != "videomae":
        raise ValueError(f"model_type {config.get('model_type')!r} is not 'videomae'")
    c = {**HF_DEFAULTS, **config}
    qv = bool(config.get("qv_bias", config.get("qkv_bias", True)))  # 4.x called the flag qkv_bias
    if c["hidden_act"] != "gelu":
        raise ValueError(f"hidden_act {c['hidden_act']!r} is not supported (vidfm blocks use exact GELU)")
    # VideoMAEModel state dicts have no "videomae." prefix; the task models' do.
    bare = ("embeddings.", "encoder.layer.", "layernorm.")
    sd = {("videomae." + k if k.startswith(bare) else k): v for k, v in raw.items()}
    try:
        enc_cfg, dec_cfg, out = _convert_hf(c, qv, sd)
    except KeyError as e:
        raise ValueError(f"not an HF VideoMAE state dict: no {e.args[0]!r}") from None
    dropped = sorted(k for k in sd if k.startswith(("fc_norm.", "classifier.")))
    if dropped:
        log.warning(
            "dropping the HF video classifier %s (vidfm encoders carry no classification head)", dropped
        )
    unknown = sorted(set(sd) - set(dropped))
    if unknown:
        raise ValueError(f"unexpected keys in the HF VideoMAE state dict: {unknown[:12]}")
    return enc_cfg, dec_cfg, out


def _convert_hf(
    c: dict[str, Any], qv: bool, sd: StateDict
) -> tuple[EncoderConfig, DecoderConfig | None, StateDict]:
    """The renames of :func:`from_hf_videomae`; pops the converted keys from ``sd``."""
    depth = count_blocks(sd, "videomae.encoder.layer.")
    enc_cfg = hf_encoder_config(
        c,
        depth,
        tubelet=int(c["tubelet_size"]),
        num_frames=int(c["num_frames"]),
        pos_embed="sincos_1d",
        qkv_bias="qv" if qv else "none",
        # HF VideoMAEModel has no final layernorm with use_mean_pooling (modeling_videomae.py, VideoMAEModel).
        final_norm="videomae.layernorm.weight" in sd,
    )
    out: StateDict = {
        "encoder.patch_embed.proj.weight": sd.pop("videomae.embeddings.patch_embeddings.projection.weight"),
        "encoder.patch_embed.proj.bias": sd.pop("videomae.embeddings.patch_embeddings.projection.bias"),
    }
    out.update(_blocks_from_hf(sd, "videomae.encoder.layer.", "encoder.blocks.", depth, qv))
    if enc_cfg.final_norm:
        out.update({f"encoder.norm.{p}": sd.pop(f"videomae.layernorm.{p}") for p in _WB})
    dec_cfg = None
    if "decoder.norm.weight" in sd:
        dec_depth = count_blocks(sd, "decoder.decoder_layers.")
        eps = float(c["layer_norm_eps"])
        dec_cfg = decoder_config(
            dec_depth,
            c["decoder_hidden_size"],
            c["decoder_num_attention_heads"],
            c["decoder_intermediate_size"],
            "qv" if qv else "none",
            eps,
            final_norm_eps=HF_DECODER_NORM_EPS,
        )
        out["decoder.encoder_to_decoder.weight"] = sd.pop("encoder_to_decoder.weight")
        out["decoder.mask_token"] = sd.pop("mask_token")
        out.update(_blocks_from_hf(sd, "decoder.decoder_layers.", "decoder.blocks.", dec_depth, qv))
        for name in ("norm", "head"):
            out.update({f"decoder.{name}.{p}": sd.pop(f"decoder.{name}.{p}") for p in _WB})
    return enc_cfg, dec_cfg, out


def _hf_config_and_weights(
    encoder_cfg: EncoderConfig, decoder_cfg: DecoderConfig | None, sd: StateDict
) -> tuple[dict[str, Any], StateDict]:
    """VideoMAEConfig kwargs and the HF state dict; pops what it uses from ``sd`` (a copy)."""
    width, depth, heads, mlp, patch = encoder_cfg.dims()
    qv = encoder_cfg.qkv_bias == "qv"
    kwargs: dict[str, Any] = dict(
        image_size=encoder_cfg.img_size,
        patch_size=patch,
        num_channels=encoder_cfg.in_chans,
        num_frames=encoder_cfg.num_frames,
        tubelet_size=encoder_cfg.tubelet,
        hidden_size=width,
        num_hidden_layers=depth,
        num_attention_heads=heads,
        intermediate_size=int(width * mlp),
        hidden_act="gelu",
        layer_norm_eps=encoder_cfg.norm_eps,
        qkv_bias=qv,  # the 4.x name; transformers 5.x maps it onto qv_bias
        use_mean_pooling=not encoder_cfg.final_norm,
    )
    prefix = "videomae." if decoder_cfg is not None else ""
    out = {
        f"{prefix}embeddings.patch_embeddings.projection.{p}": sd.pop(f"encoder.patch_embed.proj.{p}")
        for p in _WB
    }
    out.update(_blocks_to_hf(sd, "encoder.blocks.", f"{prefix}encoder.layer.", depth, qv))
    if encoder_cfg.final_norm:
        out.update({f"{prefix}layernorm.{p}": sd.pop(f"encoder.norm.{p}") for p in _WB})
    if decoder_cfg is None:
        return kwargs, out
    dec_width, dec_heads = decoder_dims(decoder_cfg, encoder_cfg.size)
    pixels = encoder_cfg.in_chans * encoder_cfg.tubelet * patch * patch
    out_dim = sd["decoder.head.weight"].shape[0]
    if out_dim != pixels:
        raise ValueError(f"HF's decoder predicts {pixels} pixel values per token; this one {out_dim}")
    kwargs.update(
        decoder_hidden_size=dec_width,
        decoder_num_attention_heads=dec_heads,
        decoder_num_hidden_layers=decoder_cfg.depth,
        decoder_intermediate_size=int(dec_width * decoder_cfg.mlp_ratio),
    )
    out["encoder_to_decoder.weight"] = sd.pop("decoder.encoder_to_decoder.weight")
    out["mask_token"] = sd.pop("decoder.mask_token")
    out.update(_blocks_to_hf(sd, "decoder.blocks.", "decoder.decoder_layers.", decoder_cfg.depth, qv))
    out.update({f"decoder.{n}.{p}": sd.pop(f"decoder.{n}.{p}") for n in ("norm", "head") for p in _WB})
    return kwargs, out


def to_hf_videomae(
    encoder_cfg: EncoderConfig, decoder_cfg: DecoderConfig | None, state_dict: StateDict
) -> nn.Module:
    """Build an HF ``VideoMAEForPreTraining`` (decoder given) or ``VideoMAEModel`` holding these weights.

    Only what HF VideoMAE expresses converts: 1-D sincos positions, no class token, LayerNorm, no LayerScale,
    ``"qv"`` or ``"none"`` qkv bias (the same in the decoder), a pixel decoder (head of C·t·p·p). Anything
    else is an error. Weights keep their dtype, so ``from_hf_videomae(to_hf_videomae(...))`` is bit-exact.
    """
    from transformers import VideoMAEConfig, VideoMAEForPreTraining, VideoMAEModel

    problems = []
    if encoder_cfg.pos_embed != "sincos_1d":
        problems.append(f"pos_embed={encoder_cfg.pos_embed!r} (HF has 'sincos_1d' only)")
    if encoder_cfg.cls_token:
        problems.append("a class token")
    if encoder_cfg.norm != "layernorm":
        problems.append(f"norm={encoder_cfg.norm!r}")
    if encoder_cfg.layer_scale is not None:
        problems.append("LayerScale")
    if encoder_cfg.qkv_bias == "fused":
        problems.append("qkv_bias='fused' (HF has no key bias)")
    if decoder_cfg is not None and decoder_cfg.qkv_bias != encoder_cfg.qkv_bias:
        problems.append("a decoder qkv_bias different from the encoder's")
    if problems:
        raise ValueError(f"HF VideoMAE cannot express this model: {', '.join(problems)}")
    if decoder_cfg is not None and decoder_cfg.norm_eps != encoder_cfg.norm_eps:
        log.warning(
            "HF VideoMAE has one layer_norm_eps: the decoder's %g becomes the encoder's %g",
            decoder_cfg.norm_eps,
            encoder_cfg.norm_eps,
        )
    sd = dict(state_dict)
    try:
        kwargs, out = _hf_config_and_weights(encoder_cfg, decoder_cfg, sd)
    except KeyError as e:
        raise ValueError(f"the vidfm state dict lacks {e.args[0]!r} that its config implies") from None
    left = sorted(k for k in sd if k.startswith(("encoder.", "decoder.")))
    if left:
        raise ValueError(f"vidfm keys the config does not account for: {left[:12]}")
    if sd:
        log.warning("not converted to HF (not encoder/decoder weights): %s", sorted(sd)[:12])
    config = VideoMAEConfig(**kwargs)
    model = VideoMAEForPreTraining(config) if decoder_cfg is not None else VideoMAEModel(config)
    dtypes = {v.dtype for v in out.values()}
    if len(dtypes) == 1:
        model.to(dtypes.pop())  # keep the checkpoint's precision: no rounding on the way
    missing, unexpected = model.load_state_dict(out, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"HF VideoMAE rejected the weights: missing {missing[:12]}, unexpected {unexpected[:12]}"
        )
    return model.eval()


__all__ = ["HF_DEFAULTS", "from_hf_videomae", "hf_mask_to_indices", "to_hf_videomae"]
