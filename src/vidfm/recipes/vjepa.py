"""V-JEPA pre-training (Bardes et al., "Revisiting Feature Prediction for Learning Visual Representations from
Video", 2024): predict the masked tokens of an EMA target encoder in latent space, not pixels.

Official defaults, from ``configs/pretrain/vitl16.yaml`` and ``app/vjepa/train.py`` of facebookresearch/jepa:
ViT-L/16, tubelet 2, 16 frames at stride 4, 224², 3-D sincos positions; predictor depth 12, width 384, the
encoder's heads, two zero-init mask tokens; multi-block masks (8 blocks at spatial scale 0.15 and 2 at 0.7,
full clip, aspect 0.75–1.5); L1 on layer-normalised targets; AdamW betas (0.9, 0.999), lr 2e-4 → 6.25e-4 over
40 warm-up epochs then cosine to 1e-6, weight decay 0.04 → 0.4, gradient clip 10, batch 24 per GPU on 128 GPUs,
300 epochs of 300 iterations; EMA momentum 0.998 → 1.0 over 1.25× the run. Expected (ViT-L/16, paper Table 1
/ 6): frozen attentive probe K400 80.8, SSv2 69.5.

Departures, all visible in the config: the lr and weight-decay cosines end at the run's last step (official:
they span 1.25× the run, like the momentum); VideoMAE's multi-scale crop instead of V-JEPA's random resized
crop (scale 0.3–1, aspect 0.75–1.35) with flips; mask tokens take no weight decay (the official groups decay
every tensor of more than one dimension); the gradient clip applies from step 0 (official: after warm-up).

Command: ``vidfm pretrain --recipe vjepa --set data.manifest=MANIFEST --out runs/vjepa``.
Tiny mode (``--recipe vjepa:tiny``): digits-motion on a CPU, the same encoder as ``videomae:tiny``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from vidfm.data.config import DataConfig
from vidfm.data.transforms import AugmentConfig
from vidfm.masking import LONG_RANGE, SHORT_RANGE, BlockMaskConfig
from vidfm.models.decoder import DecoderConfig
from vidfm.models.encoder import EncoderConfig
from vidfm.recipes.base import Recipe
from vidfm.recipes.common import cpu_train, pick_variant
from vidfm.teachers.targets import LIVE, TargetSource
from vidfm.train.config import TrainConfig
from vidfm.train.ema import EMAConfig

# Official ``configs/pretrain/vitl16.yaml``: optimization.ema [0.998, 1.0], ipe_scale 1.25.
_EMA = EMAConfig(source="context_encoder", target="encoder", momentum=0.998, momentum_end=1.0, horizon=1.25)


@dataclass
class VJEPARecipe(Recipe):
    """Everything one V-JEPA run needs; written to ``RUN/config.yaml``. ``train.ema`` names the target."""

    recipe: str = "vjepa"
    encoder: EncoderConfig = field(
        default_factory=lambda: EncoderConfig(size="L/16", tubelet=2, pos_embed="sincos_3d", qkv_bias="fused")
    )
    predictor: DecoderConfig = field(
        default_factory=lambda: DecoderConfig(
            depth=12,
            width=384,
            heads=16,
            qkv_bias="fused",
            pos_embed="sincos_3d",
            in_bias=True,
            mask_tokens=2,
            zero_mask_token=True,
        )
    )
    masks: list[BlockMaskConfig] = field(default_factory=lambda: [SHORT_RANGE, LONG_RANGE])
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(size=224))
    data: DataConfig = field(default_factory=lambda: DataConfig(num_frames=16, stride=4, short_side=256))
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            batch_size=24,
            steps=90_000,  # 300 epochs × 300 iterations
            warmup_steps=12_000,  # 40 epochs
            lr=6.25e-4,
            warmup_lr=2e-4,
            min_lr=1e-6,
            weight_decay=0.04,
            weight_decay_end=0.4,
            betas=(0.9, 0.999),
            clip_grad=10.0,
            ema=_EMA,
        )
    )
    loss_exp: float = 1.0

    def build_task(self, targets: TargetSource = LIVE) -> nn.Module:
        """No teacher: the targets come from the task's own EMA encoder, so ``targets`` is unused."""
        from vidfm.tasks.vjepa import VJEPATask

        if self.train.ema is None or (self.train.ema.source, self.train.ema.target) != (
            "context_encoder",
            "encoder",
        ):
            raise ValueError("vjepa needs train.ema with source context_encoder and target encoder")
        return VJEPATask(self.encoder, self.predictor, self.masks, self.augment, self.loss_exp)


def config(variant: str = "") -> VJEPARecipe:
    """``""`` = the paper's ViT-L setting; ``"tiny"`` = digits-motion on a CPU (see :func:`tiny`)."""
    return pick_variant("vjepa", variant, {"": VJEPARecipe, "tiny": tiny})


def tiny() -> VJEPARecipe:
    """The demo scale: ``videomae:tiny``'s encoder (16×64² clips, 4-block ViT-T/8, 512 tokens) and schedule
    length, a 2-block predictor of width 96 (as ``videomae:tiny``'s decoder), V-JEPA's masks and optimiser.

    Departures for a run of minutes: lr 1e-3 (as ``videomae:tiny``) and EMA momentum 0.99 → 1.0. At 0.998 the
    target would still be about half its random init after 500 steps (∏ m ≈ e^-0.6), since the official
    ramp is sized for 90,000 steps.
    """
    return VJEPARecipe(
        encoder=EncoderConfig(size="T/8", depth=4, tubelet=2, num_frames=16, img_size=64),
        predictor=DecoderConfig(
            depth=2, pos_embed="sincos_3d", in_bias=True, mask_tokens=2, zero_mask_token=True
        ),
        augment=AugmentConfig(size=64),
        data=DataConfig(num_frames=16, stride=1, short_side=64),
        train=cpu_train(
            500,
            lr=1e-3,
            betas=(0.9, 0.999),
            weight_decay=0.04,
            weight_decay_end=0.4,
            clip_grad=10.0,
            ema=EMAConfig(momentum=0.99, momentum_end=1.0, horizon=1.25),
        ),
    )
