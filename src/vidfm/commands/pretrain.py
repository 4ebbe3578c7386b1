"""``vidfm pretrain``: run a recipe."""

from __future__ import annotations

import argparse

from vidfm.commands import Command
from vidfm.commands.options import add_recipe


def options(p: argparse.ArgumentParser) -> None:
    add_recipe(p, "videomae:tiny")
    p.add_argument("--out", required=True, help="run folder (checkpoints, config.yaml, metrics.jsonl)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument(
        "--force",
        action="store_true",
        help="resume OUT even though its config differs; the new config is recorded beside the old",
    )


def run(args: argparse.Namespace) -> int:
    """pre-train or distil an encoder with a recipe

    Run a recipe (NAME or NAME:VARIANT, e.g. videomae, videomae:tiny). Fields are overridden with --set
    key.path=value; the resolved config is written to OUT/config.yaml (and each training segment's to
    OUT/configs/step-N.yaml) and a run in OUT resumes from its last checkpoint. A resume may change
    train.steps (and workers, logging, checkpoint cadence); any other change is refused unless --force.
    """
    import yaml

    from vidfm.config import apply_overrides, to_dict
    from vidfm.recipes import get_recipe
    from vidfm.train.pretrain import pretrain, resolve

    cfg = apply_overrides(get_recipe(args.recipe), args.overrides)
    if args.print_config:
        print(yaml.safe_dump(to_dict(resolve(cfg)), sort_keys=False))
        return 0
    summary = pretrain(cfg, args.out, force=args.force)
    print(f"finished: {summary}")
    return 0


COMMANDS = (Command("pretrain", run, options),)
