"""Options several subcommands share, defined once so that their names, choices and defaults agree.

Kept free of heavy imports, as every command module (``vidfm --help`` imports them all): the pool names are
those of :data:`vidfm.eval.features.Pool`, which :func:`vidfm.eval.features.pool_tokens` checks again.
"""

from __future__ import annotations

import argparse

POOLS = ("mean", "cls", "grid2x2")


def add_clip_views(p: argparse.ArgumentParser, scope: str = "") -> None:
    """``--pool``, ``--clips``, ``--crops``: the clip feature of a frozen encoder and its multi-view test
    (temporal clips × spatial crops, features averaged; :func:`vidfm.eval.features.extract_features`).
    ``scope`` names what the options apply to in the help, e.g. ``"the linear/kNN probes"``."""
    suffix = f" (for {scope})" if scope else ""
    p.add_argument("--pool", default="mean", choices=list(POOLS), help="clip feature" + suffix)
    p.add_argument("--clips", type=int, default=1, help="temporal clips per video, averaged" + suffix)
    p.add_argument(
        "--crops", type=int, default=1, choices=[1, 3], help="spatial crops per clip, averaged" + suffix
    )


def add_recipe(p: argparse.ArgumentParser, example: str) -> None:
    """``--recipe NAME[:VARIANT]`` and repeatable ``--set KEY=VALUE`` (read by
    :func:`vidfm.recipes.get_recipe` and :func:`vidfm.config.apply_overrides`), as ``args.recipe`` and
    ``args.overrides``; ``example`` is a recipe shown in the help, e.g. ``"videomae:tiny"``."""
    p.add_argument("--recipe", required=True, help=f"recipe name, optionally :variant (e.g. {example})")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set train.steps=500 --set data.manifest=m.csv",
    )
