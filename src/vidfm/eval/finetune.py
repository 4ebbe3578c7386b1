"""Fine-tuning evaluation: train a pre-trained encoder end to end on a labelled manifest through the one
trainer (:class:`vidfm.tasks.classify.ClassifyTask`), then test with multi-view averaging.

Multi-view testing (VideoMAE ``final_test`` + ``merge``): each test video gives ``clips`` evenly spaced
temporal clips × ``crops`` spatial crops; the softmax of every view is averaged and the argmax is the
prediction. The views come from the same machinery as frozen features (:func:`extract_features`), with the
classifier's probabilities standing in for the clip feature.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vidfm.models.encoder import EncoderOutput
from vidfm.recipes.finetune import FinetuneRecipe
from vidfm.utils import log


@dataclass
class FinetuneResult:
    top1: float
    top5: float | None
    views: str  # "clips x crops"
    run_dir: str
    steps: int


def finetune_config(
    init: str | Path | None,
    manifest: str,
    label: str,
    *,
    variant: str = "tiny",
    overrides: list[str] | None = None,
    base: object | None = None,
) -> FinetuneRecipe:
    """A fine-tuning config for the encoder of run ``init`` (None = from scratch, with ``base``'s encoder).

    The encoder architecture, clip length, stride, sampling and normalisation are the pre-trained run's (or
    ``base``'s, a recipe config); optimisation and regularisation come from the ``finetune:variant`` recipe;
    ``overrides`` are dotted ``key=value`` settings applied last.
    """
    from vidfm.config import apply_overrides
    from vidfm.recipes import get_recipe, load_run_config

    cfg: FinetuneRecipe = get_recipe(f"finetune:{variant}" if variant else "finetune")
    src = load_run_config(init) if init else base
    if src is not None:
        encoder = dataclasses.replace(
            src.encoder, drop_path=cfg.encoder.drop_path, final_norm=cfg.pool == "cls"
        )
        data = dataclasses.replace(
            cfg.data,
            num_frames=src.data.num_frames,
            stride=src.data.stride,
            sampling=src.data.sampling,
            short_side=src.data.short_side,
        )
        augment = dataclasses.replace(
            cfg.augment, size=src.augment.size, mean=src.augment.mean, std=src.augment.std
        )
        cfg = dataclasses.replace(cfg, encoder=encoder, augment=augment, data=data)
    data = dataclasses.replace(cfg.data, manifest=str(manifest), split="train")
    cfg = dataclasses.replace(cfg, init=str(init) if init else "", label=label, data=data)
    cfg = apply_overrides(cfg, overrides)
    return dataclasses.replace(cfg, num_classes=cfg.classes())


class _ProbabilitiesAsFeature(nn.Module):
    """A classifier presented as an encoder whose one token is the softmax [B,1,C], so that
    :func:`extract_features` averages probabilities over the views (VideoMAE ``merge``)."""

    def __init__(self, task: nn.Module) -> None:
        super().__init__()
        self.task = task

    def forward(self, video: torch.Tensor) -> EncoderOutput:
        probs = self.task.logits(video).float().softmax(-1)
        return EncoderOutput(tokens=probs[:, None], cls=None, grid=(1, 1, 1))


def evaluate_classifier(
    task: nn.Module,
    cfg: FinetuneRecipe,
    split: str = "test",
    clips: int | None = None,
    crops: int | None = None,
    batch_size: int = 8,
    workers: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> tuple[float, float | None]:
    """(top-1, top-5 or None when there are ≤ 5 classes) of ``task`` on ``split`` with multi-view testing."""
    from vidfm.data.config import build_dataset
    from vidfm.eval.features import extract_features

    clips = cfg.test_clips if clips is None else clips
    crops = cfg.test_crops if crops is None else crops
    data = dataclasses.replace(cfg.data, short_side=cfg.augment.size)
    dataset = build_dataset(
        data, seed=cfg.train.seed, split=split, views=clips, train=False, crop_square=crops == 1
    )
    probs = extract_features(
        _ProbabilitiesAsFeature(task),
        dataset,
        cfg.augment,
        batch_size=batch_size if crops == 1 else 1,  # 3 crops keep the frame's shape: one video a batch
        crops=crops,
        workers=workers,
        device=device,
        progress=progress,
    )
    y = probs.labels[cfg.label]
    top1 = float((probs.x.argmax(1) == y).mean())
    if probs.x.shape[1] <= 5:
        return top1, None
    top5 = np.argsort(-probs.x, axis=1)[:, :5]
    return top1, float((top5 == y[:, None]).any(1).mean())


def _check_same_run(cfg: FinetuneRecipe, run_dir: Path) -> None:
    """A run folder resumes only the config it was started with (settings that do not change the result,
    workers and progress bars, aside)."""
    from vidfm.config import to_dict
    from vidfm.recipes import load_run_config
    from vidfm.train.pretrain import resolve

    if not (run_dir / "config.yaml").is_file():
        return
    old, new = to_dict(load_run_config(run_dir)), to_dict(resolve(cfg))
    for d in (old, new):
        d["train"].pop("workers"), d["train"].pop("progress")
    if old != new:
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise ValueError(
            f"{run_dir} holds a fine-tuning run of another config (differs in {diff}); remove it"
        )


def run_finetune(
    cfg: FinetuneRecipe,
    run_dir: str | Path,
    workers: int | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> FinetuneResult:
    """Fine-tune into ``run_dir`` (resumes when it holds a checkpoint), then test its final weights."""
    from vidfm.train.checkpoint import list_checkpoints, load_model_weights
    from vidfm.train.pretrain import pretrain
    from vidfm.utils import default_device

    if workers is not None:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, workers=workers))
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, progress=progress))
    _check_same_run(cfg, Path(run_dir))
    done = list_checkpoints(run_dir)
    if not done or done[-1][0] < cfg.train.steps:  # a finished run is only tested again
        log.info("fine-tuning %s on %s:%s for %d steps", cfg.init or "random init", cfg.data.manifest,
                 cfg.label, cfg.train.steps)  # fmt: skip
        pretrain(cfg, run_dir)
    task = cfg.build_task()
    load_model_weights(run_dir, task)
    device = device or default_device()
    top1, top5 = evaluate_classifier(
        task.to(device), cfg, workers=cfg.train.workers, device=device, progress=progress
    )
    return FinetuneResult(top1, top5, f"{cfg.test_clips}x{cfg.test_crops}", str(run_dir), cfg.train.steps)
