"""Checkpoint conversion (HF transformers; official VideoMAE, VideoMAE V2, MVD, UMT (both stages), MAE and CLIP
layouts <-> vidfm) and loading.

Official layouts are registered in :data:`OFFICIAL_LAYOUTS` (name -> detector, reader): ``--from auto``
tries the detectors in order and says which layout it found; a new converter adds one entry.

A vidfm checkpoint is ``model.safetensors`` (``encoder.*``, ``decoder.*``) beside a ``config.yaml`` that
holds the encoder (and decoder) config: either the folder ``vidfm convert`` writes (config = a
:class:`CheckpointConfig`) or a training run (``RUN/config.yaml``, weights in
``RUN/checkpoints/step_XXXXXXXX/model.safetensors``), where the ``encoder``/``decoder`` sections are found
wherever the run config nests them. ``vidfm convert`` also stores the config in the safetensors metadata,
so its weights file describes itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vidfm.config import config_from_dict, save_config, to_dict
from vidfm.convert.clip import from_hf_clip, from_openai_clip, is_openai_clip
from vidfm.convert.hf_videomae import from_hf_videomae, hf_mask_to_indices, to_hf_videomae
from vidfm.convert.hf_videoprism import from_hf_videoprism, is_hf_videoprism
from vidfm.convert.hf_vit import from_hf_vit, hf_model_type
from vidfm.convert.internvideo2 import from_official_internvideo2, is_official_internvideo2
from vidfm.convert.layouts import read_checkpoint_file, unwrap
from vidfm.convert.mae import from_official_mae, is_official_mae
from vidfm.convert.modules import build_converted
from vidfm.convert.mvd import from_official_mvd, is_official_mvd, to_official_mvd
from vidfm.convert.official_videomae import (
    from_official_videomae,
    is_official_videomae,
    load_official_state_dict,
)
from vidfm.convert.umt import from_official_umt, is_official_umt, to_official_umt
from vidfm.convert.umt_stage2 import from_official_umt_stage2, is_official_umt_stage2, to_official_umt_stage2
from vidfm.convert.videomae import Converted, StateDict, build_models, split_state_dict
from vidfm.io import load_tensors, save_tensors
from vidfm.models.clip_vision import CLIPVisionConfig
from vidfm.models.decoder import DecoderConfig
from vidfm.models.encoder import EncoderConfig, VideoEncoder
from vidfm.models.text import TextConfig
from vidfm.utils import log

WEIGHTS = "model.safetensors"
EXTRAS = "extras.safetensors"  # e.g. the classifier of a fine-tuned official checkpoint
CONFIG = "config.yaml"
_META_KEY = "vidfm.config"


@dataclass
class CheckpointConfig:
    """``config.yaml`` of a converted checkpoint.

    encoder: the encoder config.
    decoder: the decoder config, or None for an encoder-only checkpoint (both MVD decoders share it).
    source: where the weights came from (informational).
    layout: which task's keys the weights follow (:data:`vidfm.convert.videomae.LAYOUTS`).
    tower: the CLIP tower config of a ``clip`` checkpoint.
    text: the text encoder sizes of a ``umt_stage2`` checkpoint.
    """

    encoder: EncoderConfig = dataclasses.field(default_factory=EncoderConfig)
    decoder: DecoderConfig | None = None
    source: str = ""
    layout: str = "videomae"
    tower: CLIPVisionConfig | None = None
    text: TextConfig | None = None


def save_vidfm_checkpoint(
    out: str | Path,
    encoder_cfg: EncoderConfig,
    decoder_cfg: DecoderConfig | None,
    state_dict: StateDict,
    extras: StateDict | None = None,
    source: str = "",
    layout: str = "videomae",
    tower: CLIPVisionConfig | None = None,
    text: TextConfig | None = None,
) -> Path:
    """Write ``out/model.safetensors`` + ``out/config.yaml`` (+ ``out/extras.safetensors``); returns ``out``.

    The weights are checked against the configs first (:func:`build_converted`), so nothing unloadable is
    written. The weights file is the trainable state of the layout's task, so a recipe starts from it with
    ``--set train.init_from=OUT``.
    """
    out = Path(out)
    build_converted(Converted(encoder_cfg, decoder_cfg, state_dict, {}, layout, tower, text))
    cfg = CheckpointConfig(encoder_cfg, decoder_cfg, source, layout, tower, text)
    text = yaml.safe_dump(to_dict(cfg), sort_keys=False)
    save_tensors(state_dict, out / WEIGHTS, metadata={"format": "vidfm", _META_KEY: text})
    save_config(cfg, out / CONFIG)
    if extras:
        save_tensors(extras, out / EXTRAS)
        log.info("wrote %s beside the model: %s", EXTRAS, sorted(extras))
    return out


def _find_section(data: Any, name: str, cls: type) -> dict | None:
    """Breadth-first search of nested dicts for ``name: {fields of cls}`` (run configs nest it anywhere)."""
    fields = {f.name for f in dataclasses.fields(cls)}
    queue = [data]
    while queue:
        node = queue.pop(0)
        if not isinstance(node, dict):
            continue
        sec = node.get(name)
        if isinstance(sec, dict) and set(sec) <= fields:
            return sec
        queue.extend(node.values())
    return None


def load_vidfm_checkpoint(path: str | Path) -> Converted:
    """Read a vidfm checkpoint: a converted folder, a run folder (latest step), a step folder or a weights
    file. The config comes from the safetensors metadata or the nearest ``config.yaml`` above the weights."""
    from safetensors import safe_open

    from vidfm.train.checkpoint import resolve_model_file  # latest complete step of a run folder

    weights = resolve_model_file(path)

    with safe_open(str(weights), "pt") as f:
        text = (f.metadata() or {}).get(_META_KEY)
    if text is None:
        for folder in list(weights.parents)[:4]:
            if (folder / CONFIG).is_file():
                text = (folder / CONFIG).read_text()
                break
    if text is None:
        raise FileNotFoundError(
            f"no {CONFIG} found for {weights} (looked in its metadata and 4 parent folders)"
        )
    data = yaml.safe_load(text) or {}
    extras_file = weights.parent / EXTRAS
    extras = load_tensors(extras_file) if extras_file.is_file() else {}
    if isinstance(data, dict) and data.get("layout", "videomae") != "videomae" and "encoder" in data:
        cfg = config_from_dict(CheckpointConfig, data)  # a converted mvd/umt/clip folder: read as written
        return Converted(
            cfg.encoder, cfg.decoder, load_tensors(weights), extras, cfg.layout, cfg.tower, cfg.text
        )
    enc = _find_section(data, "encoder", EncoderConfig)
    if enc is None:
        raise ValueError(f"the config of {weights} has no 'encoder' section with EncoderConfig fields")
    dec = _find_section(data, "decoder", DecoderConfig)
    state = load_tensors(weights)
    _, dec_sd, other = split_state_dict(state)
    if other:
        log.info("%s: ignoring non-encoder/decoder tensors %s", weights, sorted(other)[:8])
    decoder = config_from_dict(DecoderConfig, dec) if dec is not None and dec_sd else None
    if dec_sd and decoder is None:
        log.info("%s: decoder weights without a decoder config are left out", weights)
    keep = ("encoder.", "decoder.") if decoder is not None else ("encoder.",)
    state = {k: v for k, v in state.items() if k.startswith(keep)}
    return Converted(config_from_dict(EncoderConfig, enc), decoder, state, extras)


def _clip(cfg: CLIPVisionConfig, state: StateDict) -> Converted:
    """A CLIP tower (OpenAI or HF weights) in the ``clip`` layout: ``visual.*`` keys and its tower config."""
    return Converted(cfg.encoder, None, {f"visual.{k}": v for k, v in state.items()}, {}, "clip", cfg)


def _frames(default: int):
    # Official files do not store the clip; the layout's training default stands in for a missing value.
    def pick(opts: dict[str, Any]) -> dict[str, Any]:
        opts = {k: v for k, v in opts.items() if v is not None}
        if "num_frames" not in opts:
            log.info("frames per clip are not stored in the file: %d (pass --num-frames)", default)
        return {"num_frames": default, **opts}

    return pick


_V16, _V8 = _frames(16), _frames(8)


def _only(opts: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: opts[k] for k in names if opts.get(k) is not None}


# Official layouts, in detection order (name -> (detector on the unwrapped state dict, reader of the loaded
# object with the caller's options: heads, decoder_heads, num_frames, img_size, encoder_only)).
OFFICIAL_LAYOUTS: dict[str, tuple[Callable[[StateDict], bool], Callable[..., Converted]]] = {
    "internvideo2": (  # first: its ViT keys would also pass the VideoMAE detector
        is_official_internvideo2,
        lambda obj, **o: from_official_internvideo2(obj, **_only(_V8(o), "heads", "num_frames", "img_size")),
    ),
    "umt_stage2": (  # before the stage-1 layouts: its student sits under vision_encoder.
        is_official_umt_stage2,
        lambda obj, **o: from_official_umt_stage2(
            obj, **_only(_V8(o), "heads", "text_heads", "num_frames", "img_size")
        ),
    ),
    "mvd": (
        is_official_mvd,
        lambda obj, **o: from_official_mvd(
            obj, **_only(_V16(o), "heads", "decoder_heads", "num_frames", "img_size")
        ),
    ),
    "umt": (
        is_official_umt,
        lambda obj, **o: from_official_umt(obj, **_only(_V8(o), "heads", "num_frames", "img_size")),
    ),
    "mae": (is_official_mae, lambda obj, **o: from_official_mae(obj, **_only(o, "heads"))),
    "clip": (is_openai_clip, lambda obj, **o: _clip(*from_openai_clip(obj, **_only(o, "heads")))),
    "videomae": (
        is_official_videomae,
        lambda obj, **o: from_official_videomae(
            obj, **_only(_V16(o), "heads", "decoder_heads", "num_frames", "img_size", "encoder_only")
        ),
    ),
}
FORMATS = ("auto", "hf", "vidfm", "official", *OFFICIAL_LAYOUTS)


def detect_format(path: str | Path) -> str:
    """``"hf"`` (folder with config.json), ``"official"`` (any other file but a vidfm weights file, whose
    layout :func:`detect_layout` finds) or ``"vidfm"``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(path)
    if path.is_dir() and (path / "config.json").is_file():
        return "hf"
    if path.is_file() and path.suffix in (".pth", ".pt", ".bin", ".ckpt"):
        return "official"
    if path.is_file() and path.suffix == ".safetensors" and not _is_vidfm_file(path):
        return "official"
    return "vidfm"


def _is_vidfm_file(path: Path) -> bool:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    return meta.get("format") == "vidfm" or any((p / CONFIG).is_file() for p in list(path.parents)[:4])


def detect_layout(obj: dict) -> str:
    """The official layout of a loaded checkpoint (wrapped or not): the first detector that accepts it."""
    sd, _ = unwrap(obj)
    for name, (accepts, _) in OFFICIAL_LAYOUTS.items():
        if accepts(sd):
            return name
    raise ValueError(
        f"no known official layout ({', '.join(OFFICIAL_LAYOUTS)}) matches keys {sorted(sd)[:10]}; "
        "pass --from LAYOUT to see what the converter of that layout misses"
    )


def read_checkpoint(path: str | Path, fmt: str = "auto", **options: Any) -> Converted:
    """Any supported checkpoint -> :class:`Converted`.

    ``fmt``: ``auto`` (detected, and logged), ``hf``, ``vidfm``, ``official`` (layout detected) or one
    official layout name (:data:`OFFICIAL_LAYOUTS`). ``options``: heads, decoder_heads, text_heads,
    num_frames, img_size, encoder_only — sizes no file stores; None values mean "not given".
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown checkpoint format {fmt!r}; use one of {', '.join(FORMATS)}")
    kind = detect_format(path) if fmt == "auto" else fmt
    if kind == "hf":
        mtype = hf_model_type(path)
        log.info("%s: HF transformers folder (model_type %s)", path, mtype)
        if is_hf_videoprism(path):
            return from_hf_videoprism(path)
        if mtype in ("clip", "clip_vision_model"):
            return _clip(*from_hf_clip(path))
        if mtype in ("vit", "vit_mae"):
            return from_hf_vit(path)
        return Converted(*from_hf_videomae(path), {})
    if kind == "vidfm":
        return load_vidfm_checkpoint(path)
    obj = read_checkpoint_file(path)
    layout = detect_layout(obj) if kind == "official" else kind
    if kind == "official":
        log.info("%s: detected the official %s layout (--from %s)", path, layout, layout)
    return OFFICIAL_LAYOUTS[layout][1](obj, **options)


def load_encoder(path: str | Path, fmt: str = "auto", **official: Any) -> VideoEncoder:
    """A ready :class:`VideoEncoder` (eval mode) from a vidfm run/folder/safetensors file, an HF (VideoMAE or
    VideoPrism vision) folder or an
    official VideoMAE ``.pth``, detected automatically (see :func:`read_checkpoint`)."""
    kind = detect_format(path) if fmt == "auto" else fmt  # detected once, handed on
    if kind not in ("hf", "vidfm"):
        official = {**official, "encoder_only": True}  # a feature extractor needs no decoder (nor its heads)
    conv = read_checkpoint(path, kind, **official)
    if conv.layout == "clip":
        raise ValueError(f"{path} holds a CLIP tower: load it as a CLIP teacher (load_clip_teacher)")
    return build_models(
        conv.encoder, None, {k: v for k, v in conv.state_dict.items() if k.startswith("encoder.")}
    )[0]


__all__ = [
    "FORMATS",
    "OFFICIAL_LAYOUTS",
    "CheckpointConfig",
    "Converted",
    "build_converted",
    "build_models",
    "detect_format",
    "detect_layout",
    "from_hf_videomae",
    "from_hf_videoprism",
    "from_official_videomae",
    "hf_mask_to_indices",
    "load_encoder",
    "load_official_state_dict",
    "load_vidfm_checkpoint",
    "read_checkpoint",
    "save_vidfm_checkpoint",
    "split_state_dict",
    "to_hf_videomae",
    "to_official_mvd",
    "to_official_umt",
    "to_official_umt_stage2",
]
