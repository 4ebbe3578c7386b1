"""Pieces every recipe module shares: the variant dispatcher and the CPU- and GPU-scale training schedules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from vidfm.train.config import TrainConfig

T = TypeVar("T")


def pick_variant(recipe: str, variant: str, variants: dict[str, Callable[[], T]]) -> T:
    """``variants[variant]()``, or a clear error naming the recipe's variants."""
    if variant not in variants:
        from vidfm.errors import ConfigError, did_you_mean

        names = ", ".join(f"{recipe}:{v}" if v else recipe for v in variants)
        hint = did_you_mean(f"{recipe}:{variant}", [f"{recipe}:{v}" if v else recipe for v in variants])
        raise ConfigError(f"recipe {recipe} has no variant {variant!r}{hint} (variants: {names})")
    return variants[variant]()


def mae_pretrain(
    steps: int, warmup_steps: int, batch_size: int, blr: float, min_lr: float, **fields: Any
) -> TrainConfig:
    """The MAE family's pre-training optimisation (MAE, VideoMAE, MVD, UMT stage 1): AdamW betas (0.9, 0.95),
    weight decay 0.05, the linear rule lr = blr × global batch / 256, cosine to ``min_lr`` after
    ``warmup_steps`` (VideoMAE ``run_mae_pretraining.py``); ``fields`` set any other TrainConfig field."""
    base: dict[str, Any] = dict(weight_decay=0.05, betas=(0.9, 0.95))
    rule = dict(
        steps=steps, warmup_steps=warmup_steps, batch_size=batch_size, lr=None, blr=blr, min_lr=min_lr
    )
    return TrainConfig(**(base | rule | fields))


def cpu_train(steps: int, **fields: Any) -> TrainConfig:
    """The ``:tiny`` schedule: 16 clips a step, 10% warm-up, MAE's AdamW (betas (0.9, 0.95), weight decay
    0.05), a checkpoint every 100 steps, one decoding worker; ``fields`` override any of these."""
    base: dict[str, Any] = dict(
        batch_size=16,
        steps=steps,
        warmup_steps=max(1, steps // 10),
        min_lr=1e-5,
        weight_decay=0.05,
        betas=(0.9, 0.95),
        ckpt_every=100,
        log_every=10,
        workers=1,
    )
    return TrainConfig(**(base | fields))


DIGITS_TRAIN_CLIPS = 1600  # the train split of the demo's 2,000 digits-motion clips


def gpu_train(epochs: int, batch: int = 256, every: int = 200, **fields: Any) -> TrainConfig:
    """The ``:gpu`` schedule on digits-motion's 1,600 training clips: ``epochs`` epochs of ``batch`` clips,
    official VideoMAE/MAE warm-up of 40 epochs (``--warmup_epochs 40``; a tenth of a shorter run), AdamW
    betas (0.9, 0.95), weight decay 0.05, a checkpoint every ``every`` epochs kept for the probes of
    ``benchmarks/gpu_schedules.py``, 8 decoding workers; ``fields`` override any of these."""
    per_epoch = DIGITS_TRAIN_CLIPS / batch
    base: dict[str, Any] = dict(
        batch_size=batch,
        steps=round(epochs * per_epoch),
        warmup_steps=round(min(40, epochs / 10) * per_epoch),
        min_lr=1e-5,
        weight_decay=0.05,
        betas=(0.9, 0.95),
        ckpt_every=max(1, round(every * per_epoch)),
        keep_last=1000,
        log_every=50,
        workers=8,
    )
    return TrainConfig(**(base | fields))


def lm_train(steps: int, batch_size: int, **fields: Any) -> TrainConfig:
    """The language models' full-scale schedule (InternVideo2 stage 3, Video-LaVIT's LM): GPT-style AdamW
    (betas (0.9, 0.95), weight decay 0.1), lr 2e-4 to 2e-5 after 500 warm-up steps, gradients clipped at 1;
    ``fields`` override any of these."""
    base: dict[str, Any] = dict(
        batch_size=batch_size,
        steps=steps,
        lr=2e-4,
        min_lr=2e-5,
        warmup_steps=500,
        weight_decay=0.1,
        betas=(0.9, 0.95),
        clip_grad=1.0,
    )
    return TrainConfig(**(base | fields))


def cpu_lm_train(steps: int, warmup_steps: int, **fields: Any) -> TrainConfig:
    """The language models' ``:tiny`` schedule: :func:`lm_train` at nanoGPT's small-model rate (lr 1e-3 to
    1e-4) on 32 sequences a step, no checkpoint before the last, a log line every 20 steps, one decoding
    worker; ``fields`` override any of these."""
    tiny: dict[str, Any] = dict(
        batch_size=32, lr=1e-3, min_lr=1e-4, warmup_steps=warmup_steps, ckpt_every=0, log_every=20, workers=1
    )
    return lm_train(steps, **(tiny | fields))
