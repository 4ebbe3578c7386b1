"""What every official-layout converter shares: unwrapping the saved object, head counts, layout detection.

Official training scripts save the state dict inside a wrapper: ``{"model": sd, "epoch", "args", ...}``
(VideoMAE/MVD/UMT ``utils.save_model``), ``{"module": sd}`` (DeepSpeed, VideoMAE V2), ``{"model_ema": sd}``
(EMA weights beside the model), ``{"state_dict": sd}`` (Lightning, some CLIP re-saves); DDP adds a
``module.`` prefix to every key and ``torch.compile`` an ``_orig_mod.`` one. :func:`unwrap` removes all of
these and says which it found.

Head counts are not in any tensor shape (q, k, v are [D, D] whatever the heads). :func:`resolve_heads` takes
the caller's value, or the head count of the one official registered model with exactly that width, depth
and MLP width (``REGISTERED``); anything else is an error that names the argument to pass.
"""

from __future__ import annotations

import argparse
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch

from vidfm.io import load_tensors, safe_torch_load
from vidfm.utils import log

StateDict = dict[str, torch.Tensor]

# Wrapper keys in the order they are tried; "model" before "model_ema" so the trained weights win when a
# file holds both (pass the EMA dict yourself to convert it).
WRAPPERS = ("model", "module", "state_dict", "model_ema")
_PREFIXES = ("module.", "_orig_mod.")

# (width, depth, mlp hidden) -> heads of the registered official models (``@register_model`` functions):
# VideoMAE ``modeling_pretrain.py``/``modeling_finetune.py`` S/B/L/H, VideoMAE V2 ``vit_giant_patch14_224``
# (1408 x 40, MLP 6144, 16 heads), MVD ``modeling_student.py``/``modeling_video_teacher.py`` (the same S/B/L/H),
# UMT ``modeling_pretrain_umt.py`` B/L, MAE ``models_mae.py`` B/L/H, OpenAI CLIP ``clip/model.py`` B/L
# (heads = width // 64 there: 12 and 16).
REGISTERED: dict[tuple[int, int, int], int] = {
    (384, 12, 1536): 6,
    (768, 12, 3072): 12,
    (1024, 24, 4096): 16,
    (1280, 32, 5120): 16,
    (1408, 40, 6144): 16,
}
# VideoMAE pixel decoders (``modeling_pretrain.py``: decoder_embed_dim / decoder_num_heads per size) and
# VideoMAE V2's ViT-g decoder (512 wide, 8 heads): (width, mlp hidden) -> heads.
REGISTERED_DECODERS: dict[tuple[int, int], int] = {
    (192, 768): 3,
    (384, 1536): 6,
    (512, 2048): 8,
    (640, 2560): 8,
}


def read_checkpoint_file(path: str | Path) -> dict:
    """A checkpoint file as saved: ``.safetensors``, or ``torch.load(weights_only=True)`` of anything else.

    The official training scripts (``utils.save_model``) also pickle the training ``args`` (an
    ``argparse.Namespace``); that one class is allowed, nothing else that could run code is.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(path)
    if path.suffix == ".safetensors":
        return load_tensors(path)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = safe_torch_load(path)
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"{path} holds objects weights_only loading refuses ({str(e).splitlines()[0]}); re-save just "
            "the state dict (torch.save(ckpt['model'], ...)) from a trusted environment"
        ) from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a dict, got {type(obj).__name__}")
    return obj


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def unwrap(obj: Mapping, what: str = "checkpoint") -> tuple[StateDict, str]:
    """A loaded checkpoint -> (bare state dict, how it was wrapped), e.g. ``"module / prefix module."``.

    Descends through :data:`WRAPPERS` (nested ones too, e.g. ``{"state_dict": {"model": sd}}``), then strips
    the DDP ``module.`` / ``torch.compile`` ``_orig_mod.`` prefixes when every key carries one. Non-tensor
    entries beside the tensors (``epoch``, ``args``) are what a wrapper is for; a dict of tensors mixed with
    other values at the level of the weights is an error.
    """
    found: list[str] = []
    node: object = obj
    while isinstance(node, Mapping) and not _is_state_dict(node):
        key = next((k for k in WRAPPERS if isinstance(node.get(k), Mapping)), None)
        if key is None:
            keys = sorted(str(k) for k in node)[:12]
            raise ValueError(
                f"{what}: no state dict found (top-level keys {keys}; expected one of {WRAPPERS})"
            )
        found.append(key)
        node = node[key]
    if not _is_state_dict(node):
        raise ValueError(f"{what}: expected a dict of tensors, got {type(node).__name__}")
    sd = dict(node)  # type: ignore[arg-type]
    stripped = True
    while stripped:
        stripped = False
        for prefix in _PREFIXES:
            if all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix) :]: v for k, v in sd.items()}
                found.append(f"prefix {prefix}")
                stripped = True
    return sd, " / ".join(found) or "bare"


def resolve_heads(
    width: int,
    depth: int,
    mlp: int,
    heads: int | None,
    arg: str = "--heads",
    what: str = "encoder",
    table: Mapping[tuple[int, ...], int] | None = None,
) -> int:
    """Heads of a ``width``-wide block stack: ``heads`` when given (checked to divide the width), else the
    registered official model with these exact dimensions (``table``, :data:`REGISTERED` by default, keyed by
    ``(width, depth, mlp)``, or by ``(width, mlp)`` when its keys are pairs), else a ValueError naming
    ``arg``."""
    if heads is not None:
        if heads < 1 or width % heads:
            raise ValueError(f"{arg} {heads} does not divide the {what} width {width}")
        return heads
    table = REGISTERED if table is None else table
    key = (width, depth, mlp) if len(next(iter(table), ())) == 3 else (width, mlp)
    found = table.get(key)  # type: ignore[call-overload]
    if found is None:
        raise ValueError(
            f"the checkpoint does not store the {what}'s number of heads and no official model is "
            f"{width} wide, {depth} deep with MLP {mlp}: pass {arg}"
        )
    log.info(
        "%s heads: %d (the official model of width %d, MLP %d; %s overrides)", what, found, width, mlp, arg
    )
    return found


def check_table(stored: torch.Tensor, expected: torch.Tensor, name: str, hint: str) -> bool:
    """Whether a stored fixed position table equals the one vidfm recomputes; a row-count mismatch is an
    error (``hint`` names the arguments that set the grid)."""
    stored = stored.reshape(-1, stored.shape[-1]).float()
    expected = expected.reshape(-1, expected.shape[-1]).float()
    if stored.shape != expected.shape:
        raise ValueError(
            f"{name} holds {tuple(stored.shape)} positions x width, the clip asked for gives "
            f"{tuple(expected.shape)}: {hint}"
        )
    return bool((stored - expected).abs().max() <= 1e-4)


__all__ = [
    "REGISTERED",
    "WRAPPERS",
    "check_table",
    "read_checkpoint_file",
    "resolve_heads",
    "unwrap",
]
