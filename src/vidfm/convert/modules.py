"""Modules of a converted checkpoint, by layout: what ``vidfm convert`` checks before it writes anything."""

from __future__ import annotations

from dataclasses import replace

from torch import nn

from vidfm.convert.videomae import LAYOUTS, Converted, StateDict, build_models, load_checked
from vidfm.models.clip_vision import CLIPVisionTower
from vidfm.models.decoder import MaskedDecoder, sincos_3d_like
from vidfm.models.encoder import VideoEncoder
from vidfm.models.heads import AlignHead


def build_converted(conv: Converted) -> dict[str, nn.Module]:
    """The modules of a converted checkpoint by top-level key prefix, weights loaded strictly.

    ``videomae``: encoder (+ decoder); ``mvd``: encoder + ``decoder_image``/``decoder_video`` (those present,
    with the 3-D sincos tables :class:`~vidfm.tasks.mvd.MVDTask` gives them); ``umt``:
    encoder + ``align_heads`` (a ModuleList of :class:`~vidfm.models.heads.AlignHead`); ``clip``: ``visual``.
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
    sd = groups.pop("align_heads", {})
    if groups or not sd:
        raise ValueError(f"a umt checkpoint holds encoder.* and align_heads.* keys, got {sorted(groups)}")
    n = len({k.split(".")[0] for k in sd})
    heads = nn.ModuleList(AlignHead(encoder.width, sd[f"{i}.fc.weight"].shape[0]) for i in range(n))
    load_checked(heads, sd, "align_heads")
    out["align_heads"] = heads.eval()
    return out


__all__ = ["build_converted"]
