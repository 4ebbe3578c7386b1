"""Recipes: one small config function per method and stage; ``NAME[:VARIANT]`` on the command line.

A recipe config is a dataclass with a ``recipe`` name, ``data`` and ``train`` sections and ``build_task()``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vidfm.errors import ConfigError

if TYPE_CHECKING:
    from vidfm.runs import Run

# recipe name -> module with ``config(variant) -> dataclass``
RECIPES: dict[str, str] = {
    "videomae": "vidfm.recipes.videomae",
    "mae_image": "vidfm.recipes.mae_image",
    "mvd": "vidfm.recipes.mvd",
    "motion_vq": "vidfm.recipes.motion_vq",
    "lavit_lm": "vidfm.recipes.lavit_lm",
    "finetune": "vidfm.recipes.finetune",
    "clip_image": "vidfm.recipes.clip_image",
    "umt": "vidfm.recipes.umt",
    "umt_stage2": "vidfm.recipes.umt_stage2",
    "videoprism_stage1": "vidfm.recipes.videoprism",
    "videoprism_stage2": "vidfm.recipes.videoprism_stage2",
    "vjepa": "vidfm.recipes.vjepa",
    "internvideo2": "vidfm.recipes.internvideo2",
    "internvideo2_stage2": "vidfm.recipes.internvideo2_stage2",
    "internvideo2_stage3": "vidfm.recipes.internvideo2_stage3",
}


def get_recipe(spec: str) -> Any:
    """``"videomae"`` or ``"videomae:tiny"`` -> the recipe's config dataclass."""
    from vidfm.errors import did_you_mean

    name, colon, variant = spec.partition(":")
    if name not in RECIPES:
        hint = did_you_mean(name, RECIPES)
        hint = hint[:-1] + colon + variant + "?" if hint else ""  # keep the variant asked for
        raise ConfigError(f"unknown recipe {name!r}{hint} (recipes: {', '.join(RECIPES)})")
    return importlib.import_module(RECIPES[name]).config(variant)


def recipe_class(name: str) -> type:
    """The config dataclass of recipe ``name``."""
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r} (recipes: {', '.join(RECIPES)})")
    return type(importlib.import_module(RECIPES[name]).config(""))


def load_run_config(run_dir: str | Path) -> Any:
    """The typed recipe config a run wrote to ``RUN/config.yaml`` (old layouts upgraded by
    :func:`vidfm.runs.upgrade_config`)."""
    from vidfm.runs import open_run

    return _typed_config(open_run(run_dir))


def _typed_config(run: Run) -> Any:
    from vidfm.config import config_from_dict

    if run.recipe not in RECIPES:
        raise ConfigError(
            f"{run.path / 'config.yaml'}: unknown recipe {run.recipe!r} (recipes: {', '.join(RECIPES)})"
        )
    return config_from_dict(recipe_class(run.recipe), run.raw)


def load_run_encoder(run_dir: str | Path, random_init: bool = False, seed: int = 0):  # noqa: ANN201
    """(encoder, typed recipe config) of a run: its latest checkpoint's encoder, or a random-init encoder of
    the same config (:func:`vidfm.runs.load_encoder`); the config carries the clip size and normalisation."""
    from vidfm.runs import load_encoder

    encoder, run = load_encoder(run_dir, random_init=random_init, seed=seed)
    return encoder, _typed_config(run)  # the run's config.yaml as load_encoder read it
