"""Modules of a converted checkpoint, by layout: what ``vidfm convert`` checks before it writes anything."""

from __future__ import annotations

from dataclasses import replace

from torch import nn

from vidfm.convert.videomae import LAYOUTS, Converted, StateDict, build_models, load_checked
from vidfm.models.clip_vision import CLIPVisionTower
from vidfm.models.decoder import MaskedDecoder, sincos_3d_like
from vidfm.models.encoder import VideoEncoder
from vidfm.models.fusion import CrossModalDecoder
from vidfm.models.heads import AlignHead, ContrastiveHead, MLMHead
from vidfm.models.text import BertTextEncoder


def build_converted(conv: Converted) -> dict[str, nn.Module]:
    """The modules of a converted checkpoint by top-level key prefix, weights loaded strictly.

    ``videomae``: encoder (+ decoder); ``mvd``: encoder + ``decoder_image``/``decoder_video`` (those present,
    with the 3-D sincos tables :class:`~vidfm.tasks.mvd.MVDTask` gives them); ``umt``:
    encoder + ``align_heads`` (a ModuleList of :class:`~vidfm.models.heads.AlignHead`); ``clip``: ``visual``;
    ``umt_stage2``: the modules of :class:`~vidfm.tasks.umt_stage2.UMTStage2Task` (encoder, ``align_heads``
    when present, ``text_encoder``, ``decoder``, ``contrastive``, ``vtm_head``, ``mlm_head``).
    """
    if conv.layout not in LAYOUTS:
        raise ValueError(f"unknown converted layout {conv.layout!r}; one of {LAYOUTS}")
    groups: dict[str, StateDict] = {}
    for k, v in conv.state_dict.items():
        head, _, rest = k.partition(".")
        groups.setdefault(head, {})[rest] = v
    if conv.layout == "clip":
        if conv.tower is None or set(groups) != {"visual"}:
            raise ValueError(
                f"a clip checkpoint holds a tower config and visual.* keys only, got {sorted(groups)}"
            )
        tower = CLIPVisionTower(conv.tower)
        load_checked(tower, groups["visual"], "CLIP tower")
        return {"visual": tower.eval()}
    if conv.layout == "videomae":
        encoder, decoder = build_models(conv.encoder, conv.decoder, conv.state_dict)
        return {"encoder": encoder} | ({"decoder": decoder} if decoder is not None else {})
    encoder = VideoEncoder(conv.encoder)
    load_checked(encoder, groups.pop("encoder", {}), "encoder")
    out: dict[str, nn.Module] = {"encoder": encoder.eval()}
    if conv.layout == "mvd":
        if conv.decoder is None or not groups or set(groups) - {"decoder_image", "decoder_video"}:
            raise ValueError(
                f"an mvd checkpoint holds a decoder config and decoder_image/decoder_video keys, got {sorted(groups)}"
            )
        dec_cfg = replace(conv.decoder, pos_embed=sincos_3d_like(conv.encoder.pos_embed))
        width = conv.decoder.width or encoder.width
        heads = conv.decoder.heads or conv.encoder.dims()[2]
        for name, sd in groups.items():
            if "head.weight" not in sd:
                raise ValueError(f"{name} has no head.weight")
            dec = MaskedDecoder(
                encoder.width, dec_cfg, width, heads, sd["head.weight"].shape[0], encoder.grid
            )
            load_checked(dec, sd, name)
            out[name] = dec.eval()
        return out
    if conv.layout == "umt_stage2":
        return out | _umt_stage2(conv, encoder.width, groups)
    sd = groups.pop("align_heads", {})
    if groups or not sd:
        raise ValueError(f"a umt checkpoint holds encoder.* and align_heads.* keys, got {sorted(groups)}")
    out["align_heads"] = _align_heads(encoder.width, sd)
    return out


def _align_heads(width: int, sd: StateDict) -> nn.ModuleList:
    n = len({k.split(".")[0] for k in sd})
    heads = nn.ModuleList(AlignHead(width, sd[f"{i}.fc.weight"].shape[0]) for i in range(n))
    load_checked(heads, sd, "align_heads")
    return heads.eval()


def _umt_stage2(conv: Converted, video_width: int, groups: dict[str, StateDict]) -> dict[str, nn.Module]:
    """The stage-2 modules but the encoder, as :class:`~vidfm.tasks.umt_stage2.UMTStage2Task` builds them."""
    if conv.text is None:
        raise ValueError("a umt_stage2 checkpoint holds the text encoder's sizes (config text)")
    known = {"align_heads", "text_encoder", "decoder", "contrastive", "vtm_head", "mlm_head"}
    if set(groups) - known or "contrastive" not in groups:
        raise ValueError(
            f"a umt_stage2 checkpoint holds keys of {sorted(known)} and encoder, got {sorted(groups)}"
        )
    out: dict[str, nn.Module] = {}
    if "align_heads" in groups:
        out["align_heads"] = _align_heads(video_width, groups["align_heads"])
    text = BertTextEncoder(conv.text, pooling="cls")
    if "text_encoder" in groups:  # a text encoder trained frozen is not saved
        load_checked(text, groups["text_encoder"], "text_encoder")
        out["text_encoder"] = text.eval()
    c = groups["contrastive"]
    head = ContrastiveHead(
        text.width, c["text_proj.weight"].shape[0], video_width, video_norm="video_norm.weight" in c
    )
    load_checked(head, c, "contrastive")
    out["contrastive"] = head.eval()
    if "decoder" in groups:
        d = groups["decoder"]
        depth = len({k.split(".")[1] for k in d})
        ratio = d["layers.0.mlp.fc1.weight"].shape[0] / text.width
        dec = CrossModalDecoder(text.width, video_width, depth, conv.text.num_attention_heads, ratio)
        load_checked(dec, d, "decoder")
        out["decoder"] = dec.eval()
    if "vtm_head" in groups:
        vtm = nn.Linear(text.width, 2)
        load_checked(vtm, groups["vtm_head"], "vtm_head")
        out["vtm_head"] = vtm.eval()
    if "mlm_head" in groups:
        mlm = MLMHead(text.width, conv.text.vocab_size, conv.text.layer_norm_eps)
        load_checked(mlm, groups["mlm_head"], "mlm_head")
        out["mlm_head"] = mlm.eval()
    return out


__all__ = ["build_converted"]
