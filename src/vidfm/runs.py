"""A run folder -> its config sections and its modules' weights: the one place that reads ``RUN/``.

A vidfm run folder holds ``config.yaml`` (the resolved recipe config, :func:`vidfm.config.save_config`) and
``checkpoints/step-N/`` (:mod:`vidfm.train.checkpoint`). Everything that rebuilds part of a run — teachers
from a run, eval, the demo, converters, tasks that start from another run — opens it here. This module sits
below teachers and tasks in the layering, so it knows config *sections* (``encoder``, ``augment``,
``vision``, ...) as typed dataclasses but not recipe classes; the whole typed recipe config of a run is
:func:`vidfm.recipes.load_run_config`, which builds on :func:`open_run`.

Older ``config.yaml`` layouts are upgraded in one place, :func:`upgrade_config`, so old runs keep loading.

:func:`run_checkpoint` reads a run as a converted checkpoint (what ``vidfm convert RUN OUT`` writes): a
``umt_stage2`` run in the whole stage-2 layout with its text sizes, any other run as its encoder (and
decoder).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
import yaml
from torch import nn

from vidfm.config import config_from_dict
from vidfm.errors import ConfigError, RunFolderError
from vidfm.io import load_tensors
from vidfm.train.checkpoint import LoadResult, load_model_weights, resolve_model_file, upgrade_state_dict
from vidfm.utils import log

if TYPE_CHECKING:
    from vidfm.convert import Converted

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

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every tensor of the latest complete checkpoint, under today's key names."""
        return upgrade_state_dict(load_tensors(resolve_model_file(self.path)))


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


# Top-level modules of vidfm's UMTStage2Task that the umt_stage2 layout holds (the frozen teacher is not saved).
_STAGE2_PARTS = (
    "encoder.",
    "align_heads.",
    "text_encoder.",
    "decoder.",
    "contrastive.",
    "vtm_head.",
    "mlm_head.",
)


def run_checkpoint(path: str | Path) -> Converted:
    """A run folder as a converted checkpoint (latest weights): a ``umt_stage2`` run in the ``umt_stage2``
    layout (:mod:`vidfm.convert.umt_stage2`, so ``vidfm convert RUN OUT --to official`` writes the official
    model), any other run as :func:`vidfm.convert.load_vidfm_checkpoint` reads it (encoder, decoder)."""
    from vidfm.convert import load_vidfm_checkpoint

    run = open_run(path)
    if run.recipe == "umt_stage2":
        return _umt_stage2(run)
    return load_vidfm_checkpoint(path)


def _umt_stage2(run: Run) -> Converted:
    """A vidfm ``umt_stage2`` run -> the ``umt_stage2`` layout, whose text sizes (``TextConfig``) also give
    the fusion layers their heads and MLP width, as one BERT does in official UMT (``xbert.py``): a run
    whose decoder differs from its text layers there, or pools the text by its mean, is refused, naming the
    setting. A text encoder trained frozen is not in the run's weights; its weights are those of
    ``text.path`` cut to ``text.layers``, read from there."""
    from vidfm.convert import Converted
    from vidfm.models.encoder import EncoderConfig
    from vidfm.models.text import TextEncoderConfig, load_text_encoder, text_config_of

    text = run.section("text", TextEncoderConfig)
    where = f"{run.path} (a umt_stage2 run)"
    if text.pooling != "cls":
        raise ConfigError(
            f"{where} has text.pooling={text.pooling}: UMT's text embedding is the [CLS] state, so only a run "
            "with text.pooling=cls has the umt_stage2 layout"
        )
    cfg = text_config_of(text.path or None, text.layers)
    heads, ratio = run.get("fusion.heads"), run.get("fusion.mlp_ratio")
    if heads is not None and heads != cfg.num_attention_heads:
        raise ConfigError(
            f"{where} has fusion.heads={heads}: UMT's fusion layers are BERT layers with the text encoder's "
            f"{cfg.num_attention_heads} heads"
        )
    if ratio is not None and int(ratio * cfg.hidden_size) != cfg.intermediate_size:
        raise ConfigError(
            f"{where} has fusion.mlp_ratio={ratio}: UMT's fusion layers are BERT layers with the text "
            f"encoder's MLP ({cfg.intermediate_size} = {cfg.intermediate_size / cfg.hidden_size:g} x width)"
        )
    state = {k: v for k, v in run.state_dict().items() if k.startswith(_STAGE2_PARTS)}
    if not text.trainable:
        frozen = load_text_encoder(text.path or None, "cls", text.layers).state_dict()
        state |= {f"text_encoder.{k}": v for k, v in frozen.items()}
        log.info(
            "%s: text encoder trained frozen; its weights are read from %s", where, text.path or "MiniLM"
        )
    return Converted(run.section("encoder", EncoderConfig), None, state, {}, "umt_stage2", text=cfg)
