"""InternVideo2, stage 2 (Wang et al., ECCV 2024, §3.2): video, audio and text aligned with CON + MAC + MLM
(:mod:`vidfm.tasks.internvideo2_stage2`), the student started from a stage-1 run.

The paper: audio encoder BEATs (12 layers, 64-bin log-mel), text encoder BERT-large, pairs {image, text},
{video, text}, {video, text of video + audio + speech}, {video + audio, that text}; the audio encoder frozen
first, then an unmasked post-pretraining with the video encoder frozen. vidfm's recipe keeps UMT stage 2's
parts (:class:`~vidfm.recipes.umt_stage2.UMTStage2Recipe`: text encoder, contrastive head, cross-modal
decoder, retrieval through ``dual_encoder``) and adds the audio encoder (frozen by default,
``audio_trainable``), the video + audio pair and its matching head. Without a teacher the mask cannot be
semantic: the default is ``frame`` at 0.8 (a vidfm choice). Not here: the image-text pairs, speech (no
speech recogniser installs offline), BEATs weights. The second (unmasked, video-frozen) phase is the
``:tiny-post`` variant (``video_frozen``, mask ratio 0), started from a first-phase run with ``train.init_from``.

Commands::

    vidfm data digits DIGITS --audio
    vidfm pretrain --recipe internvideo2_stage2:tiny --set data.manifest=DIGITS/manifest.csv \\
        --set init=runs/iv2 --out runs/iv2_s2
    vidfm pretrain --recipe internvideo2_stage2:tiny-post --set data.manifest=DIGITS/manifest.csv \
        --set train.init_from=runs/iv2_s2 --out runs/iv2_s2_post       # the video-frozen second phase

Retrieval (text -> video) of a run: ``vidfm eval`` with its retrieval task (``dual_encoder``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from torch import nn
from torch.utils.data import Dataset

from vidfm.data.audio import AudioConfig
from vidfm.data.config import DataConfig
from vidfm.data.transforms import AugmentConfig
from vidfm.errors import ConfigError
from vidfm.masking import MaskConfig
from vidfm.models.audio import AudioEncoderConfig
from vidfm.models.encoder import EncoderConfig
from vidfm.models.text import TextEncoderConfig
from vidfm.recipes.common import cpu_train, pick_variant
from vidfm.recipes.internvideo2 import internvideo2_encoder
from vidfm.recipes.umt_stage2 import UMTStage2Recipe
from vidfm.tasks.umt_stage2 import FusionConfig, LossWeights
from vidfm.teachers.targets import LIVE, TargetSource


@dataclass
class InternVideo2Stage2Recipe(UMTStage2Recipe):
    """UMT stage 2's sections (``weights.uta`` 0, no teacher) + ``audio`` (the encoder), ``audio_input`` (the
    window and filterbank read from each clip), ``audio_trainable`` and ``audio_seed`` (the seed of the audio
    encoder's initial weights: a frozen one is rebuilt from it, never saved) and ``video_frozen`` (the paper's
    post-pretraining phase: the video encoder held fixed)."""

    recipe: str = "internvideo2_stage2"
    encoder: EncoderConfig = field(default_factory=lambda: internvideo2_encoder(drop_path=0.25))
    mask: MaskConfig = field(default_factory=lambda: MaskConfig(kind="frame", ratio=0.8))
    data: DataConfig = field(
        default_factory=lambda: DataConfig(sampling="segment", num_frames=8, short_side=256)
    )
    weights: LossWeights = field(default_factory=lambda: LossWeights(uta=0.0))
    audio: AudioEncoderConfig = field(default_factory=AudioEncoderConfig)
    audio_input: AudioConfig = field(default_factory=AudioConfig)
    audio_trainable: bool = False
    audio_seed: int = 0
    video_frozen: bool = False

    def build_task(self, targets: TargetSource = LIVE) -> nn.Module:
        from vidfm.tasks.internvideo2_stage2 import InternVideo2Stage2Task
        from vidfm.train.checkpoint import load_model_weights

        if self.video_frozen and not (self.init or self.train.init_from):
            raise ConfigError(
                "video_frozen=true holds the video encoder fixed: start it from a trained run with "
                "--set train.init_from=<internvideo2_stage2 run> (or --set init=<stage-1 run>)"
            )
        task = InternVideo2Stage2Task(
            encoder=self.encoder,
            mask=self.mask,
            augment=self.augment,
            text=self.text,
            fusion=self.fusion,
            audio=self.audio,
            embed_dim=self.embed_dim,
            temperature=self.temperature,
            weights=self.weights,
            mlm_prob=self.mlm_prob,
            hard_negatives=self.hard_negatives,
            audio_trainable=self.audio_trainable,
            audio_seed=self.audio_seed,
            video_frozen=self.video_frozen,
        )
        if self.init:  # the stage-1 student; a resumed run then overwrites it from its own checkpoint
            load_model_weights(self.init, task.encoder, prefix="encoder.")
        return task

    def trained_task(self, run_dir: str | Path) -> nn.Module:
        """The run's task with its latest weights, in eval mode (frozen parts rebuilt from their own sources:
        the text encoder from ``text.path``, a frozen audio encoder from ``audio_seed``)."""
        from vidfm.train.checkpoint import load_model_weights

        task = replace(self, init="").build_task()
        load_model_weights(run_dir, task)
        return task.eval()

    def training_data(self, seed: int) -> tuple[Dataset, object]:
        """Clips of ``data`` with their audio (zeros + an empty mask for a video without sound) and the
        video + audio caption."""
        from vidfm.data.audio import AudioVideoDataset, collate_av, sounds_of
        from vidfm.data.config import build_dataset

        sounds = sounds_of(self.data.manifest) if self.data.manifest.endswith(".csv") else {}
        return AudioVideoDataset(build_dataset(self.data, seed=seed), self.audio_input, sounds), collate_av


def config(variant: str = "") -> InternVideo2Stage2Recipe:
    """``""`` = a ViT-g/14 student with a BEATs-sized audio encoder; ``"tiny"`` = digits-motion with audio on a
    CPU (see :func:`tiny`)."""
    return pick_variant(
        "internvideo2_stage2", variant, {"": InternVideo2Stage2Recipe, "tiny": tiny, "tiny-post": tiny_post}
    )


def tiny() -> InternVideo2Stage2Recipe:
    """The ``internvideo2:tiny`` student (8 frames at 64², start it with ``--set init=<internvideo2:tiny run>``),
    MiniLM frozen, a 1-layer decoder, 128-d embeddings, a 2-block 64-wide audio encoder (frozen) over the first
    2 s of sound (198 fbank frames), 300 steps of 24 clips."""
    return InternVideo2Stage2Recipe(
        encoder=internvideo2_encoder("T/8", num_frames=8, img_size=64, depth=4),
        augment=AugmentConfig(size=64, scales=(1.0, 0.875)),
        data=DataConfig(sampling="segment", num_frames=8, short_side=64),
        text=TextEncoderConfig(trainable=False),
        fusion=FusionConfig(depth=1, heads=6),
        embed_dim=128,
        audio=AudioEncoderConfig(width=64, depth=2, heads=2, max_frames=198),
        audio_input=AudioConfig(seconds=2.0),
        train=cpu_train(300, batch_size=24, lr=5e-4, weight_decay=0.02, betas=(0.9, 0.999), ckpt_every=0),
    )


def tiny_post() -> InternVideo2Stage2Recipe:
    """The paper's second stage-2 phase at the :func:`tiny` scale: unmasked (mask ratio 0), the video encoder
    frozen, 100 steps; start it from a ``:tiny`` run with ``--set train.init_from=RUN`` (every part but the
    frozen ones, strictly)."""
    cfg = tiny()
    cfg.mask = MaskConfig(kind="frame", ratio=0.0)
    cfg.video_frozen = True
    cfg.train.steps, cfg.train.warmup_steps = 100, 10
    return cfg
