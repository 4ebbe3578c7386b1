"""Trainer settings (:class:`TrainConfig`): a recipe's ``train`` section, below the recipes in the layering
so they can name it without importing the trainer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from vidfm.errors import ConfigError
from vidfm.train.distributed import ParallelMode
from vidfm.train.ema import EMAConfig


@dataclass
class TrainConfig:
    """Trainer settings.

    The learning rate is one rule, set by exactly one of two fields: ``lr``, the absolute peak lr, or ``blr``,
    the base lr of the linear scaling rule (MAE/VideoMAE: lr = blr × batch_size × accum_steps × world / 256).
    Setting one with ``--set`` clears the other (:func:`vidfm.config.apply_overrides`); setting both in one
    command is an error.
    """

    steps: int = 1000
    batch_size: int = 8  # per rank and micro-batch
    lr: float | None = field(default=1.5e-4, metadata={"excludes": "blr"})
    blr: float | None = field(default=None, metadata={"excludes": "lr"})
    min_lr: float = 1e-5
    warmup_steps: int = 0
    warmup_lr: float = 0.0
    weight_decay: float = 0.05
    weight_decay_end: float | None = None  # None: constant weight decay
    layer_decay: float = 1.0  # < 1 needs task.layer_id(name) and task.num_layers
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    clip_grad: float | None = None
    accum_steps: int = 1
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    compile: bool = False
    ckpt_every: int = 500  # 0: only at the end
    keep_last: int = 2
    log_every: int = 10
    seed: int = 0
    workers: int = 4
    max_bad_steps: int = 5
    device: str = "auto"
    progress: bool = True
    resume: bool = True
    parallel: ParallelMode = "auto"  # with > 1 process: auto/ddp = DistributedDataParallel, fsdp = FSDP2
    activation_checkpointing: bool = False  # recompute trainable blocks in backward (less memory)
    prefetch: bool = True  # CUDA: copy the next batch on a side stream during the current step
    teacher_cache: str = ""  # folder of cached teacher targets (vidfm data cache-targets); "" = live teachers
    # Weights to start from when the run has no checkpoint yet: a `vidfm convert` folder, weights file or
    # run whose keys are the task's trainable state (e.g. an official MVD student with its decoders).
    init_from: str = ""
    ema: EMAConfig | None = None  # a task submodule kept as the moving average of another (V-JEPA's target)


def effective_lr(cfg: TrainConfig, world_size: int) -> float:
    """The peak lr of a run with ``world_size`` processes: ``lr``, or ``blr`` × global batch / 256."""
    if (cfg.lr is None) == (cfg.blr is None):  # e.g. --set train.lr=null on a recipe without blr
        raise ConfigError(
            "set exactly one of train.lr (absolute) and train.blr (scaled by batch / 256), "
            f"got lr={cfg.lr} and blr={cfg.blr}"
        )
    if cfg.lr is not None:
        return cfg.lr
    return cfg.blr * cfg.batch_size * cfg.accum_steps * world_size / 256  # type: ignore[operator]


def validate_train_config(cfg: TrainConfig) -> None:
    """One-line :class:`vidfm.errors.ConfigError` naming the ``train.*`` setting to change (a ``--set``)."""
    effective_lr(cfg, 1)
    positive = ("steps", "batch_size", "accum_steps", "keep_last", "log_every", "max_bad_steps")
    for name in positive:
        if getattr(cfg, name) < 1:
            raise ConfigError(f"train.{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.warmup_steps < 0:
        raise ConfigError(f"train.warmup_steps must be >= 0, got {cfg.warmup_steps}")
    if cfg.warmup_steps > cfg.steps:
        raise ConfigError(
            f"train.warmup_steps={cfg.warmup_steps} is more than train.steps={cfg.steps}: set it too, "
            f"e.g. --set train.warmup_steps={cfg.steps // 10} (a tenth, as the tiny recipes), or raise train.steps"
        )
    for name in ("ckpt_every", "workers"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"train.{name} must be >= 0, got {getattr(cfg, name)}")
    if cfg.precision not in ("auto", "bf16", "fp32"):
        raise ConfigError(f"train.precision must be auto, bf16 or fp32, got {cfg.precision!r}")
