"""End-to-end fine-tuning of a pre-trained encoder for video classification (VideoMAE protocol).

Official defaults, from ``run_class_finetuning.py`` and ``scripts/kinetics/videomae_vit_base_patch16_224_
tubemasking_ratio_0.9_epoch_800/finetune.sh`` of the VideoMAE code: AdamW betas (0.9, 0.999), weight decay
0.05, lr = 1e-3 × batch / 256, layer-wise lr decay 0.75, drop path 0.1, label smoothing 0.1, mixup 0.8 /
cutmix 1.0 (switch 0.5, per batch), head init scale 0.001, cosine schedule with 5 warm-up epochs from 1e-6 to
a floor of 1e-6, 16 frames at stride 4, 224²; test 5 clips × 3 crops, softmax averaged (``merge`` in
``engine_for_finetuning.py``). Expected: K400 top-1 80.9 for the 800-epoch ViT-B (paper Table 6).
Not implemented here: RandAugment, random erasing and repeated augmentation (``num_sample``), which the
official K400 setting also uses.

Command: ``vidfm eval --checkpoints RUN --tasks finetune:MANIFEST:COLUMN`` (the encoder, clip size and
normalisation come from the pre-trained run; see :func:`vidfm.eval.finetune.finetune_config`).
Tiny mode (``finetune:tiny``): the digits-motion scale, a few CPU minutes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from torch import nn

from vidfm.data.config import DataConfig
from vidfm.data.transforms import AugmentConfig
from vidfm.models.encoder import EncoderConfig
from vidfm.recipes.base import Recipe
from vidfm.recipes.common import cpu_train, pick_variant
from vidfm.tasks.classify import MixupConfig
from vidfm.teachers.targets import LIVE, TargetSource
from vidfm.train.config import TrainConfig


@dataclass
class FinetuneRecipe(Recipe):
    """Everything one fine-tuning run needs; written to ``RUN/config.yaml``.

    init: pre-trained run folder, checkpoint folder or weights file whose ``encoder.*`` weights start the
    encoder ("" = from scratch). label: manifest column to learn; num_classes: None = the number of class
    names of that column in the manifest. test_clips × test_crops: multi-view test. train.blr:
    effective lr = blr × total batch / 256 (VideoMAE's scaling of ``--lr``).
    """

    recipe: str = "finetune"
    init: str = ""
    label: str = "label"
    num_classes: int | None = None
    pool: Literal["mean", "cls"] = "mean"
    encoder: EncoderConfig = field(
        default_factory=lambda: EncoderConfig(size="B/16", tubelet=2, drop_path=0.1, final_norm=False)
    )
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(size=224))
    data: DataConfig = field(default_factory=lambda: DataConfig(num_frames=16, stride=4, short_side=256))
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            batch_size=8,
            lr=None,
            blr=1e-3,
            steps=100_000,
            warmup_steps=5_000,
            warmup_lr=1e-6,
            min_lr=1e-6,
            weight_decay=0.05,
            layer_decay=0.75,
            betas=(0.9, 0.999),
        )
    )
    label_smoothing: float = 0.1
    mixup: MixupConfig = field(default_factory=MixupConfig)
    fc_drop: float = 0.0
    init_scale: float = 0.001
    test_clips: int = 5
    test_crops: int = 3

    def classes(self) -> int:
        """num_classes, or the number of class names of ``label`` in the manifest."""
        if self.num_classes is not None:
            return self.num_classes
        from vidfm.data.datasets import read_manifest

        if not self.data.manifest.endswith(".csv"):
            raise ValueError("set num_classes, or give a CSV manifest (data.manifest) to count the classes")
        classes = read_manifest(self.data.manifest).classes
        if self.label not in classes:
            raise KeyError(
                f"label column {self.label!r} not in {self.data.manifest} (have {sorted(classes)})"
            )
        return len(classes[self.label])

    def build_task(self, targets: TargetSource = LIVE) -> nn.Module:
        from vidfm.tasks.classify import ClassifyTask

        task = ClassifyTask(
            self.encoder,
            self.classes(),
            self.label,
            self.augment,
            pool=self.pool,
            label_smoothing=self.label_smoothing,
            mixup=self.mixup,
            fc_drop=self.fc_drop,
            init_scale=self.init_scale,
        )
        if self.init:
            load_pretrained_encoder(task.encoder, self.init)
        return task


def load_pretrained_encoder(encoder: nn.Module, init: str) -> None:
    """Load the ``encoder.*`` weights of a run/checkpoint/weights file into ``encoder``.

    Only the pre-training encoder's final norm may be left over (VideoMAE drops it for mean pooling and
    trains a fresh ``fc_norm``); any missing key or other leftover is an error.
    """
    from vidfm.train.checkpoint import load_model_weights

    try:
        res = load_model_weights(init, encoder, strict=False, prefix="encoder.")
    except RuntimeError as exc:  # shapes differ: another architecture than the config says
        raise ValueError(f"{init}: its encoder does not fit the fine-tuning config: {exc}") from None
    extra = [k for k in res.unexpected if not k.startswith("norm.")]
    if res.missing or extra:
        raise KeyError(
            f"{init}: encoder weights do not match: missing {res.missing[:8]}, unexpected {extra[:8]}"
        )


def config(variant: str = "") -> FinetuneRecipe:
    """``""`` = VideoMAE's ViT-B/16 K400 setting; ``"tiny"`` = digits-motion on a CPU (see :func:`tiny`)."""
    return pick_variant("finetune", variant, {"": FinetuneRecipe, "tiny": tiny})


def tiny() -> FinetuneRecipe:
    """The demo scale (the videomae:tiny encoder, 16×64² clips): 200 steps on a CPU (two epochs of
    digits-motion), no mixup, 2 × 1 test views. The encoder, clip and normalisation are replaced by the
    pre-trained run's when fine-tuning one."""
    return FinetuneRecipe(
        encoder=EncoderConfig(
            size="T/8", depth=4, tubelet=2, num_frames=16, img_size=64, drop_path=0.1, final_norm=False
        ),
        augment=AugmentConfig(size=64),
        data=DataConfig(num_frames=16, stride=1, short_side=64),
        # lr 1e-3 at batch 16: the official 1e-3 x batch/256 would move a 200-step run nowhere.
        train=cpu_train(
            200, lr=None, blr=1e-3 * 16, warmup_lr=1e-6, min_lr=1e-6, layer_decay=0.75, betas=(0.9, 0.999)
        ),
        # Two epochs of digits-motion are too few for mixup/cutmix to pay (they slow fitting); on for the
        # full recipe.
        mixup=MixupConfig(prob=0.0),
        test_clips=2,
        test_crops=1,
    )
