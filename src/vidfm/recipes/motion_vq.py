"""Video-LaVIT tokenizers (Jin et al., ICML 2024): motion VQ-VAE, keyframe codebook, video detokenizer.

One config with a ``stage`` field trains each of the three models through the one trainer:

- ``motion`` (variants ``""``, ``tiny``): the motion VQ-VAE. Official sizes (``VideoLaVIT/models/
  modeling_motion_tokenizer.py``): 24 x 20 x 36 motion fields from 6-fps MPEG-4 with GOP 12, width 512,
  4 x 3 space-time blocks, 1024 x 32 L2-normalised codes, 135 tokens per clip. The official training
  code and hyper-parameters are not released: lr, batch and steps here are ours.
- ``keyframe`` (``keyframe``, ``keyframe-tiny``): the keyframe codebook over a frozen vidfm encoder (a
  substitute for LaVIT's tokenizer, see :mod:`vidfm.lavit.keyframe`), or over ImageNet EfficientNet-Lite0
  features with ``--set keyframe.features=efficientnet_lite0``; LaVIT's codebook is 16384 x 32.
- ``detokenizer`` (``detokenizer``, ``detokenizer-tiny``): the motion-conditioned 3-D U-Net with EDM.

The ``tiny`` variants are the digits-motion demo scale (16 frames of 64², H.264, no re-encoding: a clip
is the whole 16-frame video, whose first frame is its only I-frame); they train on a CPU in minutes.

Command: ``vidfm pretrain --recipe motion_vq:tiny --set data.manifest=DIGITS/manifest.csv --out RUN``
(or :func:`train` from Python); ``vidfm tokenize VIDEO --motion-run RUN --keyframe-run RUN2``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from torch import nn

from vidfm.lavit.clips import MOTION_GRID, ClipConfig
from vidfm.lavit.detokenizer import DetokenizerConfig
from vidfm.lavit.keyframe import KeyframeTokenizerConfig
from vidfm.lavit.motion_vq import MotionVQConfig, QuantizerConfig
from vidfm.models.encoder import EncoderConfig
from vidfm.recipes.base import Recipe
from vidfm.teachers.targets import LIVE, TargetSource
from vidfm.train.config import TrainConfig


@dataclass
class LavitDataConfig:
    """manifest: a CSV manifest (``path`` column) or a folder of videos; split: rows of that split (None =
    all); max_videos: the first N videos only (None = all). clips: how videos become clips; grid: the motion
    grid the VQ-VAE reads; cache_dir: npz cache of prepared clips (empty = ``<manifest folder>/.lavit_cache``);
    workers: processes preparing clips."""

    manifest: str = ""
    split: str | None = "train"
    max_videos: int | None = None
    clips: ClipConfig = field(default_factory=ClipConfig)
    grid: tuple[int, int] = MOTION_GRID
    cache_dir: str = ""
    workers: int = 0


@dataclass
class MotionVQRecipe(Recipe):
    """Everything one tokenizer run needs; written to ``RUN/config.yaml``. Only the section of ``stage``
    is used; ``motion_run`` (detokenizer stage) names the motion VQ run whose reconstruction conditions
    training (empty: the true motion)."""

    recipe: str = "motion_vq"
    stage: Literal["motion", "keyframe", "detokenizer"] = "motion"
    data: LavitDataConfig = field(default_factory=LavitDataConfig)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            batch_size=32, lr=1e-4, min_lr=1e-5, weight_decay=0.05, betas=(0.9, 0.99), steps=100_000,
            warmup_steps=2_000, clip_grad=1.0,
        )
    )  # fmt: skip
    motion: MotionVQConfig = field(default_factory=MotionVQConfig)
    keyframe: KeyframeTokenizerConfig = field(default_factory=KeyframeTokenizerConfig)
    detokenizer: DetokenizerConfig = field(default_factory=DetokenizerConfig)
    beta: float = 1.0
    pixel_weight: float = 1.0
    motion_run: str = ""

    def build_task(self, targets: TargetSource = LIVE) -> nn.Module:
        if self.stage == "motion":
            from vidfm.tasks.motion_vq import MotionVQTask

            return MotionVQTask(self.motion, self.beta)
        if self.stage == "keyframe":
            from vidfm.lavit.keyframe import resolve_encoder
            from vidfm.tasks.motion_vq import KeyframeVQTask

            return KeyframeVQTask(resolve_encoder(self.keyframe), self.beta, self.pixel_weight)
        if self.stage == "detokenizer":
            from vidfm.tasks.detokenizer import DetokenizerTask

            return DetokenizerTask(self.detokenizer, self.motion_run)
        raise ValueError(f"unknown stage {self.stage!r}; use motion, keyframe or detokenizer")

    def prepare(self) -> MotionVQRecipe:
        """Checked shapes and the keyframe encoder resolved (see :func:`resolve`); run by ``pretrain``."""
        return resolve(self)

    def training_data(self, seed: int) -> tuple[Any, None]:
        """The stage's clip dataset; its items are already batched by torch's default collate."""
        return self.build_dataset(seed=seed), None

    def build_dataset(self, seed: int = 0, split: str | None = None) -> Any:
        """The :class:`~vidfm.lavit.dataset.ClipDataset` of ``data`` (``split`` overrides ``data.split``)."""
        from vidfm.data.datasets import folder_records, read_manifest
        from vidfm.lavit.dataset import ClipDataset

        d = self.data
        if not d.manifest:
            raise ValueError("data.manifest is not set: give a CSV manifest or a folder of videos")
        split = d.split if split is None else split
        if d.manifest.endswith(".csv"):
            records = read_manifest(d.manifest, split=split)
        else:
            records = folder_records(d.manifest)
        paths = list(dict.fromkeys(r.path for r in records))[: d.max_videos]  # captions repeat paths
        cache = d.cache_dir or str(Path(d.manifest).resolve().parent / ".lavit_cache")
        return ClipDataset(paths, self.clip_config(), d.grid, cache, d.workers)

    def clip_config(self) -> ClipConfig:
        """The data's clip settings, with keyframes sized for the keyframe tokenizer and frames kept at the
        detokenizer's size when this stage needs them."""
        clips = dataclasses.replace(self.data.clips, keyframe_size=self.keyframe.image_size)
        if self.stage == "detokenizer":
            clips = dataclasses.replace(clips, frames_size=self.detokenizer.size)
        return clips


def resolve(cfg: MotionVQRecipe) -> MotionVQRecipe:
    """The config as it will be written: the keyframe encoder taken from its run, model sizes that the
    data must match checked."""
    from vidfm.lavit.keyframe import resolve_encoder

    if cfg.stage == "motion" and (cfg.motion.num_frames != cfg.data.clips.clip_frames or
                                  tuple(cfg.motion.grid) != tuple(cfg.data.grid)):  # fmt: skip
        raise ValueError("motion.num_frames/grid must equal data.clips.clip_frames/data.grid")
    if cfg.stage == "detokenizer" and cfg.detokenizer.num_frames != cfg.data.clips.clip_frames:
        raise ValueError("detokenizer.num_frames must equal data.clips.clip_frames")
    if cfg.stage == "keyframe":
        return dataclasses.replace(cfg, keyframe=resolve_encoder(cfg.keyframe))
    return cfg


# ----------------------------------------------------------------------------- variants
def _tiny_data() -> LavitDataConfig:
    # Digits-motion: 16-frame H.264 clips of 64 x 64, one I-frame; motion grid 4 x 4 macroblocks.
    return LavitDataConfig(clips=ClipConfig(clip_frames=16, reencode=False, cut_threshold=None), grid=(4, 4))


def _tiny_train(steps: int, lr: float, batch: int = 32) -> TrainConfig:
    return TrainConfig(
        batch_size=batch, steps=steps, lr=lr, min_lr=lr / 10, warmup_steps=steps // 20, weight_decay=0.05,
        betas=(0.9, 0.99), clip_grad=1.0, ckpt_every=0, log_every=20, workers=0,
    )  # fmt: skip


def tiny_motion(num_codes: int = 256) -> MotionVQConfig:
    """4 x 4 x 16 fields -> 2 x 2 x 2 = 8 tokens; width 96, one space-time block per stage."""
    return MotionVQConfig(
        num_frames=16, grid=(4, 4), width=96, heads=4, stage_depths=(1, 1, 1),
        strides=((2, 1, 1), (2, 1, 1), (2, 2, 2)), quantizer=QuantizerConfig(num_codes=num_codes),
    )  # fmt: skip


def tiny(stage: str = "motion") -> MotionVQRecipe:
    """The digits-motion scale of ``stage``: 8 motion tokens, a 4-block ViT-T/8 keyframe encoder with 64
    tokens and a 512-code book, a 3-level (16, 32, 64) U-Net on 16 x 32 x 32 clips predicting the residual
    to the motion-warped keyframe."""
    steps, batch = {"motion": (600, 32), "keyframe": (400, 32), "detokenizer": (1000, 8)}[stage]
    # The motion VQ-VAE at lr 1e-3 leaves its zero-motion plateau in 1 of 2 seeds within 300 steps, at 3e-3 in
    # none, at 3e-4 in both (relative MSE 0.38, motion class read from its tokens 1.00; docs/lavit.md).
    lr = 3e-4 if stage == "motion" else 1e-3
    return MotionVQRecipe(
        stage=stage,  # type: ignore[arg-type]
        data=_tiny_data(),
        train=_tiny_train(steps, lr, batch),
        motion=tiny_motion(),
        keyframe=KeyframeTokenizerConfig(
            encoder=EncoderConfig(size="T/8", depth=4, tubelet=1, num_frames=1, img_size=64),
            image_size=64,
            quantizer=QuantizerConfig(num_codes=512),
            decoder_width=128,
        ),
        # The U-Net predicts the residual to the motion-warped keyframe, whose std on digits-motion is about
        # 0.09 (the clip's own is 0.22): sigma_data, the training noise (ln sigma centred 0.5 below
        # ln sigma_data, as EDM's -1.2 for 0.5) and sigma_max are scaled to it (see lavit/detokenizer.py).
        detokenizer=DetokenizerConfig(
            num_frames=16,
            size=32,
            channels=(16, 32, 64),
            blocks=1,
            steps=12,
            base="warp",
            sigma_data=0.1,
            p_mean=-2.8,
            sigma_max=16.0,
        ),
    )


VARIANTS = ("", "tiny", "keyframe", "keyframe-tiny", "detokenizer", "detokenizer-tiny")


def config(variant: str = "") -> MotionVQRecipe:
    """``""`` official motion VQ; ``tiny``; ``keyframe``, ``keyframe-tiny``; ``detokenizer``, ``detokenizer-tiny``."""
    stage, _, size = variant.partition("-")
    if variant == "tiny":
        stage, size = "motion", "tiny"
    if stage == "":
        stage = "motion"
    if stage not in ("motion", "keyframe", "detokenizer") or size not in ("", "tiny") or variant == "motion":
        from vidfm.errors import ConfigError, did_you_mean

        names = ["motion_vq"] + [f"motion_vq:{v}" for v in VARIANTS[1:]]
        hint = did_you_mean(f"motion_vq:{variant}", names)
        raise ConfigError(f"recipe motion_vq has no variant {variant!r}{hint} (variants: {', '.join(names)})")
    return tiny(stage) if size else MotionVQRecipe(stage=stage)  # type: ignore[arg-type]
