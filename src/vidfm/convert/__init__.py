"""Checkpoint conversion (HF transformers VideoMAE and VideoPrism, official VideoMAE layouts <-> vidfm) and
loading.

A vidfm checkpoint is ``model.safetensors`` (``encoder.*``, ``decoder.*``) beside a ``config.yaml`` that
holds the encoder (and decoder) config: either the folder ``vidfm convert`` writes (config = a
:class:`CheckpointConfig`) or a training run (``RUN/config.yaml``, weights in
``RUN/checkpoints/step_XXXXXXXX/model.safetensors``), where the ``encoder``/``decoder`` sections are found
wherever the run config nests them. ``vidfm convert`` also stores the config in the safetensors metadata,
so its weights file describes itself.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vidfm.config import config_from_dict, save_config, to_dict
from vidfm.convert.hf_videomae import from_hf_videomae, hf_mask_to_indices, to_hf_videomae
from vidfm.convert.hf_videoprism import from_hf_videoprism, is_hf_videoprism
from vidfm.convert.official_videomae import from_official_videomae, load_official_state_dict
from vidfm.convert.videomae import Converted, StateDict, build_models, split_state_dict
from vidfm.io import load_tensors, save_tensors
from vidfm.models.decoder import DecoderConfig
from vidfm.models.encoder import EncoderConfig, VideoEncoder
from vidfm.utils import log

WEIGHTS = "model.safetensors"
EXTRAS = "extras.safetensors"  # e.g. the classifier of a fine-tuned official checkpoint
CONFIG = "config.yaml"
_META_KEY = "vidfm.config"


@dataclass
class CheckpointConfig:
    """``config.yaml`` of a converted checkpoint.

    encoder: the encoder config.
    decoder: the decoder config, or None for an encoder-only checkpoint.
    source: where the weights came from (informational).
    """

    encoder: EncoderConfig = dataclasses.field(default_factory=EncoderConfig)
    decoder: DecoderConfig | None = None
    source: str = ""


def save_vidfm_checkpoint(
    out: str | Path,
    encoder_cfg: EncoderConfig,
    decoder_cfg: DecoderConfig | None,
    state_dict: StateDict,
    extras: StateDict | None = None,
    source: str = "",
) -> Path:
    """Write ``out/model.safetensors`` + ``out/config.yaml`` (+ ``out/extras.safetensors``); returns ``out``.

    The weights are checked against the configs first (:func:`build_models`), so nothing unloadable is
    written.
    """
    out = Path(out)
    build_models(encoder_cfg, decoder_cfg, state_dict)
    cfg = CheckpointConfig(encoder_cfg, decoder_cfg, source)
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
    enc = _find_section(data, "encoder", EncoderConfig)
    if enc is None:
        raise ValueError(f"the config of {weights} has no 'encoder' section with EncoderConfig fields")
    dec = _find_section(data, "decoder", DecoderConfig)
    state = load_tensors(weights)
    _, dec_sd, other = split_state_dict(state)
    if other:
        log.info("%s: ignoring non-encoder/decoder tensors %s", weights, sorted(other)[:8])
    decoder = config_from_dict(DecoderConfig, dec) if dec is not None and dec_sd else None
    extras_file = weights.parent / EXTRAS
    extras = load_tensors(extras_file) if extras_file.is_file() else {}
    if dec_sd and decoder is None:
        log.info("%s: decoder weights without a decoder config are left out", weights)
    keep = ("encoder.", "decoder.") if decoder is not None else ("encoder.",)
    state = {k: v for k, v in state.items() if k.startswith(keep)}
    return Converted(config_from_dict(EncoderConfig, enc), decoder, state, extras)


def detect_format(path: str | Path) -> str:
    """``"hf"`` (folder with config.json), ``"official"`` (.pth/.pt/.bin file) or ``"vidfm"``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(path)
    if path.is_dir() and (path / "config.json").is_file():
        return "hf"
    if path.is_file() and path.suffix in (".pth", ".pt", ".bin"):
        return "official"
    return "vidfm"


def read_checkpoint(path: str | Path, fmt: str = "auto", **official: Any) -> Converted:
    """Any supported checkpoint -> :class:`Converted`. ``fmt``: auto/hf/official/vidfm; ``official``:
    keyword arguments of :func:`from_official_videomae` (heads, num_frames, img_size, decoder_heads)."""
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "hf":
        if is_hf_videoprism(path):
            return from_hf_videoprism(path)
        return Converted(*from_hf_videomae(path), {})
    if fmt == "official":
        return from_official_videomae(path, **official)
    if fmt == "vidfm":
        return load_vidfm_checkpoint(path)
    raise ValueError(f"unknown checkpoint format {fmt!r}; use auto, hf, official or vidfm")


def load_encoder(path: str | Path, fmt: str = "auto", **official: Any) -> VideoEncoder:
    """A ready :class:`VideoEncoder` (eval mode) from a vidfm run/folder/safetensors file, an HF (VideoMAE or
    VideoPrism vision) folder or an
    official VideoMAE ``.pth``, detected automatically (see :func:`read_checkpoint`)."""
    if (detect_format(path) if fmt == "auto" else fmt) == "official":
        official = {**official, "encoder_only": True}
    conv = read_checkpoint(path, fmt, **official)
    return build_models(conv.encoder, None, conv.state_dict)[0]


__all__ = [
    "CheckpointConfig",
    "Converted",
    "build_models",
    "detect_format",
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
]
