"""Atomic file writes and safe loading: nothing half-written, nothing pickled executed."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, fsync it, then rename over ``path``.

    A crash leaves either the old file or the new one, never a torn one (rename is atomic on POSIX).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def save_tensors(
    tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None
) -> None:
    """Atomically write a safetensors file (contiguous CPU copies; shared storage is split)."""
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    atomic_write(Path(path), lambda tmp: save_file(flat, str(tmp), metadata=metadata))


def load_tensors(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    return load_file(str(path), device=str(device))


def safe_torch_load(path: Path) -> object:
    """``torch.load`` that never executes pickled code (``weights_only=True``)."""
    return torch.load(str(path), map_location="cpu", weights_only=True)


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state dict from ``.safetensors`` or a torch checkpoint (``.pth``/``.pt``/``.bin``) safely."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return load_tensors(path)
    obj = safe_torch_load(path)
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a dict of tensors, got {type(obj).__name__}")
    return obj  # type: ignore[return-value]


def read_hf_model(model_or_path: Any) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(config dict, weights) of an HF model: a ``transformers`` model instance (its ``config.to_dict()`` and a
    detached copy of its state dict, so converting never aliases the live model's tensors) or a folder
    written by ``save_pretrained`` (:func:`read_hf_folder`, no transformers needed). Every HF converter reads
    through here."""
    if isinstance(model_or_path, torch.nn.Module):
        config = model_or_path.config.to_dict()
        return config, {k: v.detach().clone() for k, v in model_or_path.state_dict().items()}
    return read_hf_folder(Path(model_or_path))


def read_hf_folder(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """config.json and the weights of an HF folder (safetensors, sharded safetensors, or a torch .bin)."""
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{path} is not an HF model folder (no config.json)")
    config = json.loads(cfg_file.read_text())
    if (path / "model.safetensors").is_file():
        return config, load_tensors(path / "model.safetensors")
    index = path / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        sd: dict[str, torch.Tensor] = {}
        for shard in shards:
            sd.update(load_tensors(path / shard))
        return config, sd
    if (path / "pytorch_model.bin").is_file():
        sd = safe_torch_load(path / "pytorch_model.bin")  # weights_only=True: never runs pickled code
        if not isinstance(sd, dict):
            raise ValueError(f"{path / 'pytorch_model.bin'} does not hold a state dict")
        return config, sd
    raise FileNotFoundError(
        f"{path}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin"
    )
