"""VideoPrism, stage 1 (Zhao et al., ICML 2024; ``../shared/PAPERS.md`` §3): video-text contrastive training of
the factorized encoder with a MAP-pooled video embedding (:class:`vidfm.tasks.videoprism.VideoPrismStage1Task`).

Architecture defaults follow the released VideoPrism-B (official ``videoprism/models.py`` ``videoprism_b``
and HF ``google/videoprism-base-f16r288``): ViT-B spatial encoder of 12 blocks with 18×18 patches, 4 temporal
blocks, 16 frames at 288², one frame per token, learned spatial and temporal tables, attention logits capped
at 50. The paper initialises the spatial encoder from CoCa and trains on its own web corpus; its optimiser
settings are not in the text vidfm follows, so the ``train`` section here is vidfm's choice (AdamW, cosine),
not the paper's. The text tower is vidfm's packaged MiniLM with a projection (VideoPrism's own text
encoder is a transformer of the video width with a class token).

Commands (stage 1, then stage 2 from it, then zero-shot retrieval)::

    vidfm pretrain --recipe videoprism_stage1 --set data.manifest=CAPTIONED --out runs/vp1
    vidfm pretrain --recipe videoprism_stage2 --set data.manifest=M --set init=runs/vp1 --out runs/vp2
    vidfm eval retrieval --checkpoint runs/vp1 --data CAPTIONED

Tiny mode: ``--recipe videoprism_stage1:tiny`` (digits-motion captions, a 4+2-block factorized ViT-T/8 on
8 frames at 64², MiniLM frozen).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from vidfm.data.config import DataConfig
from vidfm.data.transforms import AugmentConfig
from vidfm.models.encoder import EncoderConfig
from vidfm.models.text import TextEncoderConfig
from vidfm.recipes.base import Recipe
from vidfm.recipes.common import cpu_train, pick_variant
from vidfm.teachers.targets import LIVE, TargetSource
from vidfm.train.config import TrainConfig


def videoprism_encoder(
    size: str = "B/18", num_frames: int = 16, img_size: int = 288, temporal_depth: int = 4, **fields
) -> EncoderConfig:
    """The VideoPrism encoder: factorized space-time, tubelet 1, learned tables, fused qkv bias, cap 50."""
    return EncoderConfig(
        size=size,
        tubelet=1,
        num_frames=num_frames,
        img_size=img_size,
        pos_embed="learned",
        qkv_bias="fused",
        attn_softcap=50.0,
        space_time="factorized",
        temporal_depth=temporal_depth,
        **fields,
    )


def tiny_encoder() -> EncoderConfig:
    """The CPU-scale encoder of both tiny recipes: a factorized ViT of width 128 (4 heads), 4 spatial and 2
    temporal blocks, 4×4 patches of 4 frames at 32² (an 8×8 grid per frame, 256 tokens).

    The frame size follows ``clip_image:tiny`` (docs/umt.md): trained contrastively from scratch on
    digits-motion, a tower at 64² with 8×8 patches stayed at chance for 300 steps, the same grid at 32² with
    4×4 patches learned. A first stage-1 run here at 64²/8×8 behaved the same (loss at log(batch) after
    80 steps).
    """
    return videoprism_encoder("T/4", num_frames=4, img_size=32, width=128, heads=4, depth=4, temporal_depth=2)


def videoprism_train(**fields: Any) -> TrainConfig:
    """The full-scale schedule of both VideoPrism stages here: 100k steps of 64 clips, lr 1e-4 to 1e-6 after
    5k warm-up steps, AdamW betas (0.9, 0.999), weight decay 0.05; ``fields`` override any of these (stage 2
    takes the masked-modelling betas of the MAE family)."""
    base: dict[str, Any] = dict(
        batch_size=64,
        lr=1e-4,
        min_lr=1e-6,
        weight_decay=0.05,
        betas=(0.9, 0.999),
        steps=100_000,
        warmup_steps=5_000,
    )
    return TrainConfig(**(base | fields))


@dataclass
class VideoPrismStage1Recipe(Recipe):
    """Everything one stage-1 run needs; written to ``RUN/config.yaml``.

    embed_dim: width of the shared video-text space. pool_heads: MAP pooler heads (None = the encoder's).
    temperature: initial τ of the contrastive loss.
    """

    recipe: str = "videoprism_stage1"
    encoder: EncoderConfig = field(default_factory=videoprism_encoder)
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(size=288, scales=(1.0, 0.875)))
    data: DataConfig = field(
        default_factory=lambda: DataConfig(sampling="segment", num_frames=16, short_side=320)
    )
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    embed_dim: int = 512
    pool_heads: int | None = None
    temperature: float = 0.07
    train: TrainConfig = field(default_factory=videoprism_train)

    def build_task(self, targets: TargetSource = LIVE) -> nn.Module:
        from vidfm.tasks.videoprism import VideoPrismStage1Task

        return VideoPrismStage1Task(
            self.encoder, self.augment, self.text, self.embed_dim, self.pool_heads, self.temperature
        )

    has_text_tower: ClassVar[bool] = True

    def dual_encoder(self, run_dir: str | Path) -> nn.Module:
        """Video tower (encoder on all tokens, MAP head) and text tower of a trained run."""
        from vidfm.tasks.videoprism import load_stage1

        encoder, head, _ = load_stage1(run_dir)
        return text_dual_encoder(self, run_dir, encoder, head)


def text_dual_encoder(stage1: VideoPrismStage1Recipe, stage1_dir: str | Path, encoder, head) -> nn.Module:  # noqa: ANN001
    """A :class:`~vidfm.models.heads.DualEncoder` of a video tower ``head(encoder(video).tokens)`` and the text
    tower (text encoder and the contrastive head's ``text_proj``) of the stage-1 run ``stage1_dir``."""
    from vidfm.models.heads import DualEncoder
    from vidfm.train.checkpoint import load_model_weights

    text_encoder, tokenizer = stage1.text.build()
    text_proj = nn.Linear(text_encoder.width, stage1.embed_dim)
    load_model_weights(stage1_dir, text_proj, prefix="contrastive.text_proj.")
    if stage1.text.trainable:
        load_model_weights(stage1_dir, text_encoder, prefix="text_encoder.")
    parts = {"encoder": encoder, "video_head": head, "text_encoder": text_encoder, "text_proj": text_proj}
    return DualEncoder(
        lambda video: head(encoder(video).tokens),
        nn.Identity(),
        text_encoder,
        text_proj,
        tokenizer,
        stage1.augment,
        modules=parts,
    ).eval()


def config(variant: str = "") -> VideoPrismStage1Recipe:
    """``""`` = VideoPrism-B's architecture; ``"tiny"`` = digits-motion on a CPU (see :func:`tiny`)."""
    return pick_variant("videoprism_stage1", variant, {"": VideoPrismStage1Recipe, "tiny": tiny})


def tiny() -> VideoPrismStage1Recipe:
    """The demo scale: :func:`tiny_encoder`, MiniLM frozen, 128-d embeddings, 350 steps of 24 captioned
    clips."""
    return VideoPrismStage1Recipe(
        encoder=tiny_encoder(),
        augment=AugmentConfig(size=32, scales=(1.0, 0.875)),
        data=DataConfig(sampling="segment", num_frames=4, short_side=64),
        text=TextEncoderConfig(trainable=False),
        embed_dim=128,
        # clip_image:tiny's betas and eps; its lr 1e-3 kept this loss at log(24) for ~130 of 200 steps here.
        train=cpu_train(350, batch_size=24, lr=5e-4, betas=(0.9, 0.98), eps=1e-6, ckpt_every=0),
    )
