"""Official InternVideo2 vision checkpoints (github.com/OpenGVLab/InternVideo, ``InternVideo2/``) <-> vidfm.

Layouts (1B: width 1408, 40 blocks, 16 heads; 6B: width 3200, 48 blocks, 25 heads; patch 14, tubelet 1):

- stage 1, ``single_modality/models/internvideo2_pretrain.py`` ``PretrainInternVideo2`` (DeepSpeed: the dict
  sits under ``"module"``): ``patch_embed.proj``, ``cls_token``, ``pos_embed`` [1, 1+N, D] (class row first),
  ``blocks.i.{norm1, attn.qkv, attn.q_norm, attn.k_norm, attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2,
  ls2.gamma}`` (RMSNorm weights only, no qkv bias), ``clip_projector.{norm1_q, norm1_k, norm1_v}``,
  ``clip_projector.cross_attn.{q, k, v}.weight`` + ``{q,k,v}_bias`` + ``proj``, ``clip_decoder.i.{head,
  norm}``, ``final_clip_decoder.{head, norm}``, ``clip_pos_embed`` [1, 1+N, D], ``mae_decoder.i.{head.0,
  head.2, norm}``, ``mae_pos_embed`` [1, N, D];
- stage 2, ``multi_modality/models/backbones/internvideo2/internvideo2.py`` inside the stage-2 model: the same
  vision keys (no ``mae_*``) under ``vision_encoder.``; everything else (text, audio, projections) is not a
  vision key and is left out.

vidfm's layout is that of the stage-1 task (student + heads; the task itself is not on main yet): ``encoder.*``
(blocks keep the official names; ``pos_embed`` splits into ``cls_pos`` and ``pos_embed``), ``pool.*`` (the
attention pool), ``heads.clip.i.{fc, norm}``, ``final_heads.clip.{fc, norm}``, ``pos.clip``,
``heads.video.i.{fc.0, fc.2, norm}``, ``pos.video``. vidfm does not align the class token with the image
teacher, so the class row of ``clip_pos_embed`` has no place in the task; it travels in ``extras`` as
``clip_pos_embed_cls`` and comes back unchanged.
"""

from __future__ import annotations

import re

import torch

from vidfm.convert.layouts import REGISTERED, resolve_heads
from vidfm.convert.videomae import Converted, StateDict, count_blocks, encoder_config
from vidfm.models.encoder import EncoderConfig

STAGE2_PREFIX = "vision_encoder."
CLS_ROW = "clip_pos_embed_cls"
# Heads of the official sizes, by (width, depth, MLP hidden): no shape stores them, and a width alone does not
# fix them (a 1408-wide toy with 11 heads is as valid as the 1B). ``pretrain_internvideo2_1b_patch14_224``
# (1408 x 40, mlp_ratio 48/11, 16 heads) and ``pretrain_internvideo2_6b_patch14_224`` (3200 x 48, mlp_ratio 4,
# 25 heads) in ``single_modality/models/internvideo2_pretrain.py``; the distilled S/B/L students are the ViT
# sizes of :data:`~vidfm.convert.layouts.REGISTERED`.
OFFICIAL_SIZES = {(1408, 40, 6144): 16, (3200, 48, 12800): 25, **REGISTERED}

# official suffix -> vidfm suffix, for the parts outside the blocks (blocks keep their names)
_FIXED = {
    "patch_embed.proj.weight": "encoder.patch_embed.proj.weight",
    "patch_embed.proj.bias": "encoder.patch_embed.proj.bias",
    "cls_token": "encoder.cls_token",
    "final_clip_decoder.head.weight": "final_heads.clip.fc.weight",
    "final_clip_decoder.head.bias": "final_heads.clip.fc.bias",
    "final_clip_decoder.norm.weight": "final_heads.clip.norm.weight",
    "final_clip_decoder.norm.bias": "final_heads.clip.norm.bias",
    "mae_pos_embed": "pos.video",
}
for _n in ("norm1_q", "norm1_k", "norm1_v"):
    for _p in ("weight", "bias"):
        _FIXED[f"clip_projector.{_n}.{_p}"] = f"pool.{_n}.{_p}"
for _n in ("q", "k", "v"):
    _FIXED[f"clip_projector.cross_attn.{_n}.weight"] = f"pool.{_n}.weight"
    _FIXED[f"clip_projector.cross_attn.{_n}_bias"] = f"pool.{_n}.bias"
for _p in ("weight", "bias"):
    _FIXED[f"clip_projector.cross_attn.proj.{_p}"] = f"pool.proj.{_p}"
_FIXED_BACK = {v: k for k, v in _FIXED.items()}
# (official regex, vidfm template) for indexed parts
_INDEXED = [
    (r"blocks\.(\d+)\.(.+)", "encoder.blocks.{0}.{1}"),
    (r"clip_decoder\.(\d+)\.head\.(weight|bias)", "heads.clip.{0}.fc.{1}"),
    (r"clip_decoder\.(\d+)\.norm\.(weight|bias)", "heads.clip.{0}.norm.{1}"),
    (r"mae_decoder\.(\d+)\.head\.([02])\.(weight|bias)", "heads.video.{0}.fc.{1}.{2}"),
    (r"mae_decoder\.(\d+)\.norm\.(weight|bias)", "heads.video.{0}.norm.{1}"),
]
_INDEXED_BACK = [
    (r"encoder\.blocks\.(\d+)\.(.+)", "blocks.{0}.{1}"),
    (r"heads\.clip\.(\d+)\.fc\.(weight|bias)", "clip_decoder.{0}.head.{1}"),
    (r"heads\.clip\.(\d+)\.norm\.(weight|bias)", "clip_decoder.{0}.norm.{1}"),
    (r"heads\.video\.(\d+)\.fc\.([02])\.(weight|bias)", "mae_decoder.{0}.head.{1}.{2}"),
    (r"heads\.video\.(\d+)\.norm\.(weight|bias)", "mae_decoder.{0}.norm.{1}"),
]
_BLOCK_PARTS = re.compile(
    r"(norm1|norm2|attn\.q_norm|attn\.k_norm)\.weight|attn\.qkv\.(weight|bias)|attn\.proj\.(weight|bias)"
    r"|mlp\.fc[12]\.(weight|bias)|ls[12]\.gamma"
)


def vision_state(sd: StateDict) -> tuple[StateDict, int]:
    """The vision keys of a stage-1 or stage-2 dict, unprefixed, and the stage (1 or 2)."""
    if any(k.startswith(STAGE2_PREFIX) for k in sd):
        return {k[len(STAGE2_PREFIX) :]: v for k, v in sd.items() if k.startswith(STAGE2_PREFIX)}, 2
    return dict(sd), 1


def _rename(key: str, fixed: dict[str, str], indexed: list[tuple[str, str]]) -> str | None:
    if key in fixed:
        return fixed[key]
    for pattern, template in indexed:
        m = re.fullmatch(pattern, key)
        if m:
            return template.format(*m.groups())
    return None


def official_to_vidfm(sd: StateDict) -> tuple[StateDict, StateDict]:
    """Official vision keys (unprefixed) -> (vidfm task state dict, extras). Unknown keys are an error."""
    out: StateDict = {}
    extras: StateDict = {}
    for key, value in sd.items():
        if key == "pos_embed":  # [1,1+N,D]: class row first
            out["encoder.cls_pos"], out["encoder.pos_embed"] = value[:, :1], value[:, 1:]
        elif key == "clip_pos_embed":
            extras[CLS_ROW], out["pos.clip"] = value[:, :1], value[:, 1:]
        else:
            new = _rename(key, _FIXED, _INDEXED)
            if new is None or (
                key.startswith("blocks.") and not _BLOCK_PARTS.fullmatch(key.split(".", 2)[2])
            ):
                raise ValueError(f"unexpected key in an InternVideo2 vision checkpoint: {key!r}")
            out[new] = value
    return out, extras


def vidfm_to_official(sd: StateDict, extras: StateDict | None = None, stage: int = 1) -> StateDict:
    """vidfm task state dict (+ extras) -> official keys; stage 2 puts them under ``vision_encoder.`` and has no
    video-teacher (``mae_*``) parts."""
    extras = extras or {}
    out: StateDict = {}
    for key, value in sd.items():
        if key == "encoder.cls_pos":
            out["pos_embed"] = torch.cat([value, sd["encoder.pos_embed"]], dim=1)
        elif key == "encoder.pos_embed":
            continue
        elif key == "pos.clip":
            cls = extras.get(CLS_ROW, value.new_zeros(1, 1, value.shape[-1]))  # official sincos class row: 0
            out["clip_pos_embed"] = torch.cat([cls, value], dim=1)
        else:
            new = _rename(key, _FIXED_BACK, _INDEXED_BACK)
            if new is None:
                raise ValueError(f"{key!r} has no place in an official InternVideo2 checkpoint")
            out[new] = value
    if stage == 2:
        out = {f"{STAGE2_PREFIX}{k}": v for k, v in out.items() if not k.startswith("mae_")}
    return out


def internvideo2_encoder_config(
    sd: StateDict, num_frames: int = 8, img_size: int = 224, heads: int | None = None
) -> EncoderConfig:
    """The student :class:`EncoderConfig` of an official vision dict (unprefixed): sizes from the shapes, heads
    from ``heads`` or the official size of that width, the InternVideo2 options from the keys present."""
    if "patch_embed.proj.weight" not in sd or "pos_embed" not in sd:
        raise ValueError(f"not an InternVideo2 vision checkpoint (keys {sorted(sd)[:8]})")
    width, in_chans, tubelet, patch, _ = sd["patch_embed.proj.weight"].shape
    depth, mlp = count_blocks(sd, "blocks."), sd["blocks.0.mlp.fc1.weight"].shape[0]
    heads = resolve_heads(width, depth, mlp, heads, "--heads", "InternVideo2 encoder", OFFICIAL_SIZES)
    cfg = encoder_config(
        width,
        depth,
        heads,
        mlp,
        patch,
        tubelet=tubelet,
        num_frames=num_frames,
        img_size=img_size,
        in_chans=in_chans,
        cls_token=True,
        pos_embed="learned",
        pos_init="sincos_3d",
        qkv_bias="fused" if "blocks.0.attn.qkv.bias" in sd else "none",
        qk_norm="blocks.0.attn.q_norm.weight" in sd,
        norm="rmsnorm",
        norm_eps=1e-6,
        layer_scale=1.0 if "blocks.0.ls1.gamma" in sd else None,  # any value: the gammas replace it
        final_norm=False,
    )
    n, grid = sd["pos_embed"].shape[1] - 1, cfg.grid()
    if n != grid[0] * grid[1] * grid[2]:
        raise ValueError(
            f"pos_embed has {n} positions but {num_frames} frames at {img_size}px give grid {grid}; pass the "
            "clip size the checkpoint was trained at (InternVideo2 stage 1: 8 frames, 224)"
        )
    return cfg


def is_official_internvideo2(sd: StateDict) -> bool:
    """A stage-1 student or a stage-2 model: the ``clip_projector`` attention pool beside a class-token ViT."""
    vision, _ = vision_state(sd)
    return "clip_projector.cross_attn.q.weight" in vision and "cls_token" in vision


def from_official_internvideo2(
    obj: dict, heads: int | None = None, num_frames: int = 8, img_size: int = 224
) -> Converted:
    """A loaded official stage-1 or stage-2 checkpoint (wrapped or not) -> :class:`Converted`: the encoder in
    ``state_dict``; the attention pool, per-teacher heads and position tables in ``extras`` under their vidfm
    task names."""
    from vidfm.convert.layouts import unwrap

    sd, _ = unwrap(obj)
    vision, _ = vision_state(sd)
    cfg = internvideo2_encoder_config(vision, num_frames, img_size, heads)
    state, extras = official_to_vidfm(vision)
    encoder = {k: v for k, v in state.items() if k.startswith("encoder.")}
    return Converted(cfg, None, encoder, {**{k: v for k, v in state.items() if k not in encoder}, **extras})
