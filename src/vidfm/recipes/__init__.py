"""Recipes: one small config function per method and stage; ``NAME[:VARIANT]`` on the command line.

A recipe config is a dataclass with a ``recipe`` name, ``data`` and ``train`` sections and ``build_task()``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

# recipe name -> module with ``config(variant) -> dataclass``
RECIPES: dict[str, str] = {
    "videomae": "vidfm.recipes.videomae",
    "mae_image": "vidfm.recipes.mae_image",
    "mvd": "vidfm.recipes.mvd",
    "motion_vq": "vidfm.recipes.motion_vq",
    "finetune": "vidfm.recipes.finetune",
    "clip_image": "vidfm.recipes.clip_image",
    "umt": "vidfm.recipes.umt",
    "umt_stage2": "vidfm.recipes.umt_stage2",
    "videoprism_stage1": "vidfm.recipes.videoprism",
    "videoprism_stage2": "vidfm.recipes.videoprism_stage2",
}


def get_recipe(spec: str) -> Any:
    """``"videomae"`` or ``"videomae:tiny"`` -> the recipe's config dataclass."""
    name, _, variant = spec.partition(":")
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; known: {sorted(RECIPES)}")
    return importlib.import_module(RECIPES[name]).config(variant)


def load_run_config(run_dir: str | Path) -> Any:
    """Rebuild the resolved config a run wrote to ``RUN/config.yaml``."""
    import yaml

    from vidfm.config import config_from_dict

    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a vidfm run folder (no config.yaml)")
    data = yaml.safe_load(path.read_text())
    name = data.get("recipe")
    if name not in RECIPES:
        raise KeyError(f"{path}: unknown recipe {name!r}")
    cls = type(importlib.import_module(RECIPES[name]).config(""))
    return config_from_dict(cls, data)


def load_run_encoder(run_dir: str | Path, random_init: bool = False, seed: int = 0):
    """The encoder of a run (its latest checkpoint), or a random-init encoder of the same config.

    Returns (encoder, config): the config carries the clip size and normalisation the encoder expects.
    """
    import torch

    from vidfm.models.encoder import VideoEncoder
    from vidfm.train.checkpoint import load_model_weights

    cfg = load_run_config(run_dir)
    torch.manual_seed(seed)
    encoder = VideoEncoder(cfg.encoder)
    if not random_init:
        load_model_weights(run_dir, encoder, prefix="encoder.")
    return encoder, cfg
