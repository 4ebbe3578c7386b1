"""Overrides that shrink a ``:tiny`` video recipe to 8×32² clips, batch 4, in-process decoding, every step logged."""

import dataclasses

from vidfm.config import apply_overrides

CLIPS_32 = [
    "encoder.img_size=32",
    "encoder.num_frames=8",
    "augment.size=32",
    "data.num_frames=8",
    "data.short_side=32",
    "train.batch_size=4",
    "train.workers=0",
    "train.progress=false",
    "train.log_every=1",
]


def small_run(cfg, manifest, steps: int, extra: list[str]):  # noqa: ANN001, ANN201 - any recipe config
    """``cfg`` shrunk, on ``manifest``, for ``steps`` steps with a checkpoint every 3."""
    cfg = apply_overrides(cfg, [*CLIPS_32, *extra, f"train.steps={steps}", "train.ckpt_every=3"])
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, manifest=str(manifest)))
