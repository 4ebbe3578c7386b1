"""Unmasked Teacher, stage 2 (Li et al., ICCV 2023): video-language pre-training of the stage-1 student with
UTA + VTC + VTM + MLM, the backbone of vidfm's video-language models.

Official defaults (``multi_modality/exp/pretraining/b16_5m.py``): the stage-1 ViT-B/16 student, 4 frames one
per segment at 224², attention masking 0.8 from CLIP ViT-B/16 (last 6 layers), BERT-base text encoder with its
last 3 layers as the cross-modal decoder, embedding 512, τ 0.07 learnable, loss weights all 1, hard VTM
negatives, MLM probability 0.5, 32 text tokens; AdamW lr 1e-4, betas (0.9, 0.999), weight decay 0.02, cosine to
1e-6 after 1 warm-up epoch of 10, batch 128 per GPU. Expected (official ``MODEL_ZOO.md``): zero-shot MSR-VTT
text-to-video R@1 about 35 after the 5M-pair corpus. Here the text encoder is the packaged MiniLM (mean
pooling, width 384) with a new 3-layer cross-modal decoder on top (not BERT-base's own layers).

Commands (stage 1, then stage 2)::

    vidfm pretrain --recipe umt --set data.manifest=M --set teacher.path=CLIP --out runs/umt
    vidfm pretrain --recipe umt_stage2 --set data.manifest=CAPTIONED --set init=runs/umt \\
        --set teacher.path=CLIP --out runs/umt2
    vidfm eval retrieval --checkpoint runs/umt2 --data CAPTIONED

Tiny mode: ``--recipe umt_stage2:tiny`` (digits-motion captions, ``umt:tiny`` student, ``clip_image:tiny``
teacher).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from torch import nn

from vidfm.data.config import DataConfig
from vidfm.data.transforms import AugmentConfig
from vidfm.masking import MaskConfig
from vidfm.models.encoder import EncoderConfig
from vidfm.models.text import TextEncoderConfig
from vidfm.recipes.base import Recipe
from vidfm.recipes.common import cpu_train, pick_variant
from vidfm.recipes.umt import UMTTeacherConfig, umt_encoder
from vidfm.tasks.umt_stage2 import FusionConfig, LossWeights
from vidfm.teachers.targets import LIVE, TargetSource
from vidfm.train.config import TrainConfig
from vidfm.utils import log


@dataclass
class UMTStage2Recipe(Recipe):
    """Everything one stage-2 run needs; written to ``RUN/config.yaml``.

    init: the stage-1 run (or any vidfm run with the same encoder) the student and its alignment heads start
    from; empty = from scratch. pool_norm: official UMT's LayerNorm on the pooled video feature (true for a
    run that starts from an official stage-2 checkpoint converted with ``vidfm convert --from umt_stage2``).
    """

    recipe: str = "umt_stage2"
    encoder: EncoderConfig = field(default_factory=lambda: umt_encoder(num_frames=4, drop_path=0.1))
    init: str = ""
    mask: MaskConfig = field(default_factory=lambda: MaskConfig(kind="semantic", ratio=0.8))
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(size=224, scales=(1.0, 0.875)))
    data: DataConfig = field(
        default_factory=lambda: DataConfig(sampling="segment", num_frames=4, short_side=256)
    )
    teacher: UMTTeacherConfig = field(default_factory=UMTTeacherConfig)
    align_layers: int = 6
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    fusion: FusionConfig = field(default_factory=lambda: FusionConfig(depth=3, heads=12))
    embed_dim: int = 512
    temperature: float = 0.07
    weights: LossWeights = field(default_factory=LossWeights)
    mlm_prob: float = 0.5
    hard_negatives: bool = True
    pool_norm: bool = False
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            batch_size=128,
            lr=1e-4,
            min_lr=1e-6,
            weight_decay=0.02,
            betas=(0.9, 0.999),
            steps=12_000,  # 10 epochs of 5M pairs at 128 × 32 GPUs
            warmup_steps=1_200,
        )
    )

    def build_task(self, targets: TargetSource = LIVE) -> nn.Module:
        from vidfm.tasks.umt_stage2 import UMTStage2Task

        if self.train.init_from:
            self._check_init_depths(self.train.init_from)
        teacher = None
        if self.weights.uta > 0:
            teacher = targets.teacher("teacher", lambda: self.teacher.build(self.align_layers))
        task = UMTStage2Task(
            encoder=self.encoder,
            mask=self.mask,
            augment=self.augment,
            teacher=teacher,
            align_layers=self.align_layers,
            text=self.text,
            fusion=self.fusion,
            embed_dim=self.embed_dim,
            temperature=self.temperature,
            weights=self.weights,
            mlm_prob=self.mlm_prob,
            hard_negatives=self.hard_negatives,
            pool_norm=self.pool_norm,
            resize=self.teacher.resize,
        )
        if self.init:  # a resumed run then overwrites every weight from its own checkpoint
            from vidfm.train.checkpoint import load_model_weights

            load_model_weights(self.init, task.encoder, prefix="encoder.")
            if teacher is not None:  # UTA on: the task has alignment heads
                try:
                    load_model_weights(self.init, task.align_heads, prefix="align_heads.")
                except (KeyError, RuntimeError) as e:  # another K or teacher width: heads start fresh
                    log.info("alignment heads not taken from %s (%s)", self.init, str(e).splitlines()[0])
        return task

    def _check_init_depths(self, init: str) -> None:
        """A clear error before the strict load of ``train.init_from`` when its text encoder or fusion depth
        is not what this config builds: a converted official checkpoint's text encoder is BERT below its
        fusion layer, which ``text.layers`` cuts a full BERT folder to."""
        from safetensors import safe_open

        from vidfm.errors import ConfigError
        from vidfm.models.text import text_config_of
        from vidfm.train.checkpoint import resolve_model_file, upgrade_names

        with safe_open(str(resolve_model_file(init)), "pt") as f:
            names = upgrade_names(list(f.keys()))

        def depth(prefix: str) -> int:
            return len({k[len(prefix) :].split(".")[0] for k in names if k.startswith(prefix)})

        saved = depth("text_encoder.layers.")
        if saved and self.text.trainable:  # a frozen text encoder is not in the weights, nor loaded
            built = text_config_of(self.text.path or None, self.text.layers).num_hidden_layers
            if saved != built:
                raise ConfigError(
                    f"train.init_from={init} has a text encoder of {saved} layers, this config builds {built} "
                    f"(text.path {self.text.path or 'MiniLM'}, text.layers={self.text.layers}): "
                    f"set text.layers={saved}"
                )
        fused = depth("decoder.layers.")
        if fused and (self.weights.vtm > 0 or self.weights.mlm > 0) and fused != self.fusion.depth:
            raise ConfigError(
                f"train.init_from={init} has {fused} fusion layers, this config builds {self.fusion.depth}: "
                f"set fusion.depth={fused}"
            )

    has_text_tower: ClassVar[bool] = True

    def dual_encoder(self, run_dir: str | Path) -> nn.Module:
        """Video tower (encoder on all tokens, mean, the video projection) and text tower of a trained run."""
        from vidfm.models.encoder import VideoEncoder
        from vidfm.models.heads import ContrastiveHead, DualEncoder
        from vidfm.train.checkpoint import load_model_weights

        encoder = VideoEncoder(self.encoder)
        text_encoder, tokenizer = self.text.build()
        head = ContrastiveHead(text_encoder.width, self.embed_dim, encoder.width, video_norm=self.pool_norm)
        parts = {"encoder": encoder, "contrastive": head}
        if self.text.trainable:
            parts["text_encoder"] = text_encoder
        for name, module in parts.items():
            load_model_weights(run_dir, module, prefix=f"{name}.")
        parts["text_encoder"] = text_encoder
        return DualEncoder(
            lambda video: encoder(video).tokens.mean(1),
            head.video,
            text_encoder,
            head.text_proj,
            tokenizer,
            self.augment,
            modules=parts,
        ).eval()


def config(variant: str = "") -> UMTStage2Recipe:
    """``""`` = the paper's ViT-B/16 setting; ``"tiny"`` = digits-motion on a CPU (see :func:`tiny`)."""
    return pick_variant("umt_stage2", variant, {"": UMTStage2Recipe, "tiny": tiny})


def tiny() -> UMTStage2Recipe:
    """The digits-motion scale: the ``umt:tiny`` student (8 frames at 64²), the ``clip_image:tiny`` teacher
    (last 2 blocks), MiniLM frozen, a 1-layer decoder, 128-d embeddings, 600 steps of 24 clips.

    Measured (docs/umt.md): VTC stays at ln 24 for about the first 180 steps (the pooled video features
    start almost identical across clips), then falls to about 1.9. After 120 steps test text->video R@1 was
    0.25 % (chance); after 600 steps it was 5.75 % (R@10 36.75 %, median rank 17 of 400).
    """
    return UMTStage2Recipe(
        encoder=umt_encoder("T/8", num_frames=8, img_size=64, depth=4),
        augment=AugmentConfig(size=64, scales=(1.0, 0.875)),
        data=DataConfig(sampling="segment", num_frames=8, short_side=64),
        align_layers=2,
        text=TextEncoderConfig(trainable=False),
        fusion=FusionConfig(depth=1, heads=6),
        embed_dim=128,
        train=cpu_train(600, batch_size=24, lr=5e-4, weight_decay=0.02, betas=(0.9, 0.999), ckpt_every=0),
    )
