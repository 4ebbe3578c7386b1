"""Atomic, self-pruning checkpoints: ``RUN/checkpoints/step_00000123/{model.safetensors,trainer_state.pt}``.

A checkpoint folder is written under a hidden temporary name, fsynced, then renamed into place; the
``RUN/checkpoints/latest`` text file is replaced atomically last. A crash therefore leaves either a
complete step folder or a ``.tmp-*`` folder that :func:`latest_checkpoint` ignores and the next save
removes. ``trainer_state.pt`` holds only tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from vidfm.io import atomic_write, atomic_write_text, load_tensors, safe_torch_load, save_tensors
from vidfm.train.optim import frozen_prefixes

MODEL_FILE = "model.safetensors"
STATE_FILE = "trainer_state.pt"
LATEST_FILE = "latest"
_STEP_RE = re.compile(r"^step_(\d{8,})$")


class LoadResult(NamedTuple):
    missing: list[str]
    unexpected: list[str]


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def trainable_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's state dict without keys under :func:`~vidfm.train.optim.frozen_prefixes`."""
    frozen = frozen_prefixes(module)
    return {k: v for k, v in module.state_dict().items() if not k.startswith(frozen)}


def _is_complete(path: Path) -> bool:
    return path.is_dir() and (path / MODEL_FILE).is_file() and (path / STATE_FILE).is_file()


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run as ``(step, folder)``, oldest first; temp folders are ignored."""
    root = checkpoints_dir(run_dir)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _STEP_RE.match(p.name)
        if m and _is_complete(p):
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The folder named by ``checkpoints/latest`` if complete, else the highest complete step folder."""
    root = checkpoints_dir(run_dir)
    latest = root / LATEST_FILE
    if latest.is_file():
        named = root / latest.read_text().strip()
        if _STEP_RE.match(named.name) and _is_complete(named):
            return named
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    model_state: dict[str, torch.Tensor],
    trainer_state: dict[str, Any],
    keep_last: int = 2,
) -> Path:
    """Write checkpoint ``step`` atomically, point ``latest`` at it, then keep only the last ``keep_last``.

    Args:
        run_dir: the run folder; checkpoints go to ``run_dir/checkpoints``.
        step: number of optimizer updates done; names the folder ``step_{step:08d}``.
        model_state: tensors for ``model.safetensors`` (use :func:`trainable_state_dict`).
        trainer_state: plain data for ``trainer_state.pt`` (must load with ``weights_only=True``).
        keep_last: how many complete checkpoints to keep (older ones are deleted after this one is complete).
    """
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    root = checkpoints_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    # Leftovers of a crashed save are garbage: only one process (rank 0) ever writes here.
    for stale in root.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    name = step_dir_name(step)
    tmp = root / f".tmp-{name}-{os.getpid()}"
    tmp.mkdir()
    save_tensors(model_state, tmp / MODEL_FILE, metadata={"step": str(step)})
    atomic_write(tmp / STATE_FILE, lambda p: torch.save(trainer_state, p))
    _fsync_dir(tmp)
    final = root / name
    if final.exists():
        # Saving the same step twice (e.g. a resumed run that stops where it started): move the old one
        # aside first; a directory cannot be renamed over a non-empty one.
        old = root / f".tmp-old-{name}-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync_dir(root)
    atomic_write_text(root / LATEST_FILE, name + "\n")
    for _, old_dir in list_checkpoints(run_dir)[:-keep_last]:
        if old_dir != final:
            shutil.rmtree(old_dir, ignore_errors=True)
    return final


def load_trainer_state(ckpt_dir: str | Path) -> dict[str, Any]:
    """``trainer_state.pt`` of a checkpoint folder, loaded with ``weights_only=True``."""
    state = safe_torch_load(Path(ckpt_dir) / STATE_FILE)
    if not isinstance(state, dict):
        raise ValueError(f"{ckpt_dir}: trainer state is not a dict")
    return state


def resolve_model_file(path_or_run: str | Path) -> Path:
    """A ``.safetensors`` file, a checkpoint folder, or a run folder (its latest checkpoint)."""
    path = Path(path_or_run)
    if path.is_file():
        return path
    if (path / MODEL_FILE).is_file():
        return path / MODEL_FILE
    ckpt = latest_checkpoint(path)
    if ckpt is None:
        raise FileNotFoundError(f"no model weights at {path} (not a weights file, checkpoint or run folder)")
    return ckpt / MODEL_FILE


# Key layouts of older ``model.safetensors`` files: (marker key, renamed prefixes). A file holding the marker
# has the old layout; each change of layout adds its entry, so checkpoints of old runs keep loading.
_LEGACY_LAYOUTS: list[tuple[str, dict[str, str]]] = [
    # The contrastive head (clip_image, umt_stage2, videoprism_stage1 runs) once sat at the task's top
    # level; it is :class:`vidfm.models.heads.ContrastiveHead` under ``contrastive.`` now. A top-level
    # ``temp`` was saved by those three tasks alone.
    (
        "temp",
        {
            "vision_proj.": "contrastive.video_proj.",
            "text_proj.": "contrastive.text_proj.",
            "temp": "contrastive.temp",
        },
    ),
]


def upgrade_names(names: list[str]) -> list[str]:
    """Parameter/state names of any vidfm version -> the current layout (same order; a name already current,
    or of a layout without the marker, is kept)."""
    present = set(names)
    for marker, renames in _LEGACY_LAYOUTS:
        if marker not in present:
            continue
        names = [_rename(n, renames) for n in names]
        present = set(names)
    return names


def _rename(name: str, renames: dict[str, str]) -> str:
    for old, new in renames.items():
        if name == old or (old.endswith(".") and name.startswith(old)):
            return new + name[len(old) :]
    return name


def upgrade_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A model state dict of any vidfm version -> the current key layout (a new dict, same tensors)."""
    return dict(zip(upgrade_names(list(state)), state.values(), strict=True))


def load_model_weights(
    path_or_run: str | Path, module: nn.Module, strict: bool = True, prefix: str = ""
) -> LoadResult:
    """Load ``model.safetensors`` into ``module`` (a run folder means its latest checkpoint).

    Args:
        path_or_run: weights file, checkpoint folder or run folder.
        module: the receiver; its frozen-prefix keys (teachers) are not expected in the file.
        strict: raise if trainable keys are missing or the file has keys the module lacks.
        prefix: take only keys starting with it and strip it, e.g. ``"encoder."`` to load the encoder
            of a pre-training task into a bare encoder.

    Files of older layouts are read in the current one (:func:`upgrade_state_dict`).
    """
    file = resolve_model_file(path_or_run)
    state = upgrade_state_dict(load_tensors(file))
    if prefix:
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if not state:
            raise KeyError(f"{file}: no keys start with {prefix!r}")
    expected = set(trainable_state_dict(module))
    known = set(module.state_dict())
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - known)
    if strict and (missing or unexpected):
        raise KeyError(
            f"{file} does not match {type(module).__name__}: missing {len(missing)} key(s) {missing[:8]}, "
            f"unexpected {len(unexpected)} key(s) {unexpected[:8]}"
        )
    module.load_state_dict({k: v for k, v in state.items() if k in known}, strict=False)
    return LoadResult(missing, unexpected)


def match_optimizer_state(saved: dict[str, Any], names: list[list[str]]) -> dict[str, Any] | None:
    """A saved ``optimizer.state_dict()`` (with ``param_names`` per group) arranged for an optimizer whose
    groups hold ``names`` (per group, in order): saved names of older layouts are upgraded and each group's
    parameters reordered by name, so a task whose parameters moved or were renamed still resumes. None when
    the groups hold other parameters.
    """
    groups = saved["param_groups"]
    if len(groups) != len(names):
        return None
    # Upgraded over all groups at once: a layout's marker may sit in another group than the names it renames.
    flat = upgrade_names([n for g in groups for n in g.get("param_names", [])])
    out = []
    for group, want in zip(groups, names, strict=True):
        have, flat = flat[: len(group.get("param_names", []))], flat[len(group.get("param_names", [])) :]
        if sorted(have) != sorted(want) or len(have) != len(group["params"]):
            return None
        index = dict(zip(have, group["params"], strict=True))
        out.append({**group, "params": [index[n] for n in want], "param_names": list(want)})
    return {**saved, "param_groups": out}


def rng_state() -> dict[str, Any]:
    """Global RNG states of torch (CPU, CUDA), numpy and python as weights_only-loadable data."""
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": str(np_kind),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "python": {"version": int(py_version), "state": [int(x) for x in py_state], "gauss_next": py_gauss},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured (CUDA states only when the device count matches)."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))
