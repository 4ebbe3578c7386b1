"""A run folder -> its config sections and its modules' weights: the one place that reads ``RUN/``.

A vidfm run folder holds ``config.yaml`` (the resolved recipe config, :func:`vidfm.config.save_config`) and
``checkpoints/step-N/`` (:mod:`vidfm.train.checkpoint`). Everything that rebuilds part of a run — teachers
from a run, eval, the demo, converters, tasks that start from another run — opens it here. This module sits
below teachers and tasks in the layering, so it knows config *sections* (``encoder``, ``augment``,
``vision``, ...) as typed dataclasses but not recipe classes; the whole typed recipe config of a run is
:func:`vidfm.recipes.load_run_config`, which builds on :func:`open_run`.

Older ``config.yaml`` layouts are upgraded in one place, :func:`upgrade_config`, so old runs keep loading.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
import yaml
from torch import nn

from vidfm.config import config_from_dict
from vidfm.errors import ConfigError, RunFolderError
from vidfm.train.checkpoint import LoadResult, load_model_weights

T = TypeVar("T")
CONFIG_FILE = "config.yaml"


def upgrade_config(raw: dict[str, Any]) -> dict[str, Any]:
    """``config.yaml`` of any vidfm version -> the current layout (a new dict); each change of layout adds
    its step here, so old runs keep loading.

    - A top-level ``blr`` (the linear lr rule before it became ``train.blr``) moves into ``train``; the
      ``train.lr`` the run had derived from it is dropped (the trainer derives it again, the same way).
    """
    raw = dict(raw)
    if "blr" in raw:
        blr = raw.pop("blr")
        if isinstance(raw.get("train"), dict):
            train = dict(raw["train"])
            if blr is not None:
                train["blr"], train["lr"] = blr, None
            raw["train"] = train
    return raw


def is_run(path: str | Path) -> bool:
    """Whether ``path`` is a vidfm run folder (``config.yaml`` and ``checkpoints/``)."""
    path = Path(path)
    return (path / CONFIG_FILE).is_file() and (path / "checkpoints").is_dir()


@dataclass(frozen=True)
class Run:
    """An opened run folder: ``recipe`` name, the upgraded ``raw`` config dict, typed sections on demand."""

    path: Path
    recipe: str
    raw: dict[str, Any]

    def get(self, name: str) -> Any:
        """The raw value at dotted path ``name`` (``"data.grid"``), or None."""
        value: Any = self.raw
        for key in name.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        return value

    def has(self, name: str) -> bool:
        """Whether the config has a (dotted) section ``name``."""
        return self.get(name) is not None

    def section(self, name: str, cls: type[T]) -> T:
        """(Dotted) section ``name`` as dataclass ``cls``; a clear error when the run has no such section."""
        value = self.get(name)
        if not isinstance(value, dict):
            raise ConfigError(f"{self.path} is a {self.recipe!r} run: its config has no {name!r} section")
        return config_from_dict(cls, value)

    def load(self, module: nn.Module, prefix: str, strict: bool = True) -> LoadResult:
        """Load the weights under ``prefix`` (e.g. ``"encoder."``) of the latest complete checkpoint."""
        return load_model_weights(self.path, module, strict=strict, prefix=prefix)


def open_run(path: str | Path) -> Run:
    """Open a run folder (only ``config.yaml`` is read here)."""
    path = Path(path)
    file = path / CONFIG_FILE
    if not path.exists():
        raise RunFolderError(
            f"{path} is not a vidfm run folder: it does not exist (a run folder is the --out of vidfm pretrain)"
        )
    if not file.is_file():
        raise RunFolderError(f"{path} is not a vidfm run folder (no {CONFIG_FILE})")
    raw = yaml.safe_load(file.read_text()) or {}
    if not isinstance(raw, dict) or not isinstance(raw.get("recipe"), str):
        raise ConfigError(f"{file}: not a vidfm run config (no 'recipe' name)")
    return Run(path, raw["recipe"], upgrade_config(raw))


def load_encoder(path: str | Path, random_init: bool = False, seed: int = 0) -> tuple[nn.Module, Run]:
    """The run's ``VideoEncoder`` with its latest weights (or random-init with the same config), and the run.

    The run's ``augment`` section (when it has one) carries the clip size and normalisation the encoder
    expects.
    """
    from vidfm.models.encoder import EncoderConfig, VideoEncoder

    run = open_run(path)
    torch.manual_seed(seed)
    encoder = VideoEncoder(run.section("encoder", EncoderConfig))
    if not random_init:
        run.load(encoder, "encoder.")
    return encoder, run
