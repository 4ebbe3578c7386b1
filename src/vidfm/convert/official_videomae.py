"""Official VideoMAE checkpoints (github.com/MCG-NJU/VideoMAE) -> vidfm.

Layouts read (``modeling_pretrain.py`` / ``modeling_finetune.py``):

- pre-training: ``encoder.{patch_embed.proj, blocks.i, norm}``, ``decoder.{blocks.i, norm, head}``,
  ``encoder_to_decoder.weight``, ``mask_token``;
- fine-tuning: ``patch_embed.proj``, ``blocks.i``, then ``norm`` (no mean pooling) or ``fc_norm``
  (mean pooling), and the classifier ``head``; ``pos_embed`` when trained with learnable positions.

Blocks use vidfm's names already (``norm1, attn.qkv, attn.q_bias, attn.v_bias, attn.proj, norm2, mlp.fc1,
mlp.fc2``) except LayerScale, ``gamma_1/gamma_2`` -> ``ls1.gamma/ls2.gamma``. The whole dict may sit under
``"model"`` (``utils.save_model``) or ``"module"`` (DeepSpeed), and keys may carry DDP's ``module.`` prefix.
The fixed sincos tables are not stored, so the clip size (frames, image size) is the caller's to give.
"""

from __future__ import annotations

import re
from pathlib import Path

from vidfm.convert.layouts import REGISTERED_DECODERS, read_checkpoint_file, resolve_heads, unwrap
from vidfm.convert.videomae import Converted, StateDict, count_blocks, decoder_config, encoder_config
from vidfm.models.decoder import DecoderConfig
from vidfm.models.encoder import EncoderConfig
from vidfm.utils import log

# LayerNorm eps of every official VideoMAE model (``norm_layer=partial(nn.LayerNorm, eps=1e-6)``).
OFFICIAL_NORM_EPS = 1e-6
# Kept out of the encoder and returned as extras: the fine-tuned classifier (and its pooled-feature norm).
HEAD_PREFIXES = ("fc_norm.", "head.")
# Every key an official encoder may hold (after the gamma -> ls rename); anything else is an unknown layout.
_ENCODER_KEY = re.compile(
    r"(patch_embed\.proj|norm|blocks\.\d+\.(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2))\.(weight|bias)"
    r"|pos_embed|blocks\.\d+\.(attn\.q_bias|attn\.v_bias|ls1\.gamma|ls2\.gamma)"
)


def is_official_videomae(sd: StateDict) -> bool:
    """A VideoMAE-family encoder (VideoMAE, VideoMAE V2, MVD's video teacher): a 5-D tubelet patch conv at the
    top level (fine-tuned) or under ``encoder.`` (pre-training)."""
    w = sd.get("patch_embed.proj.weight", sd.get("encoder.patch_embed.proj.weight"))
    return w is not None and w.dim() == 5


def load_official_state_dict(path: str | Path) -> StateDict:
    """Read an official checkpoint file (:func:`~vidfm.convert.layouts.read_checkpoint_file`) and unwrap it."""
    return unwrap_official(read_checkpoint_file(path))


def unwrap_official(obj: dict) -> StateDict:
    """``{"model": sd}`` / ``{"module": sd}`` / ``{"model_ema": sd}`` / ``sd`` -> sd without DDP's ``module.``
    prefix (:func:`vidfm.convert.layouts.unwrap`)."""
    sd, how = unwrap(obj)
    log.info("checkpoint wrapper: %s", how)
    return sd


def _rename_block_keys(sd: StateDict) -> StateDict:
    return {k.replace(".gamma_1", ".ls1.gamma").replace(".gamma_2", ".ls2.gamma"): v for k, v in sd.items()}


def _qkv_bias(sd: StateDict, prefix: str) -> str:
    if f"{prefix}blocks.0.attn.q_bias" in sd:
        return "qv"
    return "fused" if f"{prefix}blocks.0.attn.qkv.bias" in sd else "none"


def stack_config(sd: StateDict, width: int, patch: int, heads: int | None, **fields) -> EncoderConfig:
    """EncoderConfig of the ``blocks.i`` stack in ``sd``: depth from the block count, MLP width from fc1,
    heads from the caller or the official model with these dimensions; ``fields``: the other config fields."""
    depth = count_blocks(sd, "blocks.")
    mlp = sd["blocks.0.mlp.fc1.weight"].shape[0]
    return encoder_config(width, depth, resolve_heads(width, depth, mlp, heads), mlp, patch, **fields)


def _encoder(
    sd: StateDict, heads: int | None, num_frames: int, img_size: int, norm_eps: float
) -> EncoderConfig:
    """Encoder config from tensor shapes: width/channels/tubelet/patch from the patch conv, depth from
    the block count, MLP width from fc1; heads from the caller or the standard size of that width."""
    if "patch_embed.proj.weight" not in sd:
        raise ValueError(
            f"no patch_embed.proj.weight: not an official VideoMAE encoder (keys {sorted(sd)[:12]})"
        )
    unknown = sorted(k for k in sd if not _ENCODER_KEY.fullmatch(k))
    if unknown:
        raise ValueError(f"unexpected keys in the official VideoMAE encoder: {unknown[:12]}")
    width, in_chans, tubelet, patch, patch_w = sd["patch_embed.proj.weight"].shape
    if patch != patch_w:
        raise ValueError(f"non-square patches {patch}x{patch_w} are not supported")
    cfg = stack_config(
        sd,
        width,
        patch,
        heads,
        tubelet=tubelet,
        num_frames=num_frames,
        img_size=img_size,
        in_chans=in_chans,
        pos_embed="learned" if "pos_embed" in sd else "sincos_1d",
        qkv_bias=_qkv_bias(sd, ""),
        norm_eps=norm_eps,
        # any value: the checkpoint's gammas replace the initial one
        layer_scale=1.0 if "blocks.0.ls1.gamma" in sd else None,
        final_norm="norm.weight" in sd,
    )
    if "pos_embed" in sd:
        n, grid = sd["pos_embed"].shape[1], cfg.grid()
        if n != grid[0] * grid[1] * grid[2]:
            raise ValueError(
                f"learned pos_embed has {n} positions but {num_frames} frames at {img_size}px give grid "
                f"{grid}; pass the clip size the checkpoint was trained at"
            )
    return cfg


def from_official_videomae(
    path_or_state_dict: str | Path | dict,
    heads: int | None = None,
    num_frames: int = 16,
    img_size: int = 224,
    decoder_heads: int | None = None,
    norm_eps: float = OFFICIAL_NORM_EPS,
    encoder_only: bool = False,
) -> Converted:
    """Convert an official VideoMAE checkpoint (pre-training or fine-tuned) to vidfm.

    Args:
        path_or_state_dict: a ``.pth`` (loaded with ``weights_only=True``) or ``.safetensors`` file, or an
            already loaded dict (wrapped in ``model``/``module`` or not).
        heads: encoder heads; default: those of the official model with the checkpoint's width, depth and MLP
            (:func:`~vidfm.convert.layouts.resolve_heads`), else an error asking for them.
        num_frames, img_size: clip the model was trained for (not stored in the checkpoint).
        decoder_heads: decoder heads; default: the official decoder of that width and MLP (192: 3, 384: 6,
            512: 8, 640: 8), else an error asking for them.
        norm_eps: LayerNorm eps (1e-6 in every official model).
        encoder_only: leave a pre-training decoder out (a teacher or feature extractor needs none, so its
            heads need not be known).

    Returns:
        :class:`Converted` with the fine-tuned classifier (``fc_norm.*``, ``head.*``) in ``extras``.
    """
    if isinstance(path_or_state_dict, dict):
        sd = unwrap_official(path_or_state_dict)
    else:
        sd = load_official_state_dict(path_or_state_dict)
    sd = _rename_block_keys(sd)
    pretrain = any(k.startswith("encoder.") for k in sd)
    if pretrain:
        enc_sd = {k[len("encoder.") :]: v for k, v in sd.items() if k.startswith("encoder.")}
        rest = {k: v for k, v in sd.items() if not k.startswith("encoder.")}
    else:
        enc_sd = {k: v for k, v in sd.items() if not k.startswith(HEAD_PREFIXES)}
        rest = {k: v for k, v in sd.items() if k.startswith(HEAD_PREFIXES)}
    decoder_keys = ("decoder.", "encoder_to_decoder.weight", "mask_token")
    unknown = sorted(
        k for k in rest if not k.startswith(HEAD_PREFIXES) and not (pretrain and k.startswith(decoder_keys))
    )
    if unknown:
        raise ValueError(f"unexpected keys in the official VideoMAE checkpoint: {unknown[:12]}")
    enc_cfg = _encoder(enc_sd, heads, num_frames, img_size, norm_eps)
    state = {f"encoder.{k}": v for k, v in enc_sd.items()}
    extras = {k: rest.pop(k) for k in list(rest) if k.startswith(HEAD_PREFIXES)}
    dec_cfg = None
    if pretrain and encoder_only:
        dropped = [k for k in list(rest) if k.startswith(decoder_keys)]
        for k in dropped:
            rest.pop(k)
        if dropped:
            log.info("encoder only: %d decoder tensors left out", len(dropped))
    if pretrain and "decoder.norm.weight" in rest:
        dec_cfg = _decoder(rest, decoder_heads, norm_eps)
        state["decoder.encoder_to_decoder.weight"] = rest.pop("encoder_to_decoder.weight")
        state["decoder.mask_token"] = rest.pop("mask_token")
        state.update({k: rest.pop(k) for k in list(rest) if k.startswith("decoder.")})
    if rest:
        raise ValueError(f"unexpected keys in the official VideoMAE checkpoint: {sorted(rest)[:12]}")
    log.info(
        "official VideoMAE %s checkpoint: encoder %s (%d tensors, q/v bias %s), decoder %s",
        "pre-training" if pretrain else "fine-tuned",
        enc_cfg.size if enc_cfg.width is None else f"{enc_cfg.width}x{enc_cfg.depth}",
        len(enc_sd),
        enc_cfg.qkv_bias,
        f"{dec_cfg.width}x{dec_cfg.depth}" if dec_cfg else "none",
    )
    if extras:
        n_cls = extras["head.weight"].shape[0] if "head.weight" in extras else 0
        log.info("kept separately (classifier, %d classes): %s", n_cls, sorted(extras))
    return Converted(enc_cfg, dec_cfg, state, extras)


def _decoder(rest: StateDict, heads: int | None, norm_eps: float) -> DecoderConfig:
    """Decoder config from the ``decoder.*`` shapes of a pre-training checkpoint."""
    if any(".ls1.gamma" in k for k in rest):
        raise ValueError("official decoders with LayerScale (init_values > 0) have no vidfm equivalent")
    width = rest["decoder.norm.weight"].shape[0]
    depth, mlp = count_blocks(rest, "decoder.blocks."), rest["decoder.blocks.0.mlp.fc1.weight"].shape[0]
    return decoder_config(
        depth,
        width,
        resolve_heads(width, depth, mlp, heads, "--decoder-heads", "decoder", REGISTERED_DECODERS),
        mlp,
        _qkv_bias(rest, "decoder."),
        norm_eps,
    )
