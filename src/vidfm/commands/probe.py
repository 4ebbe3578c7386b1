"""``vidfm probe``: linear and kNN probes of a run's frozen encoder on a labelled manifest."""

from __future__ import annotations

import argparse

from vidfm.commands import Command
from vidfm.commands.options import add_clip_views


def options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="vidfm run folder")
    p.add_argument("--data", required=True, help="CSV manifest with a split column (train/test)")
    p.add_argument("--label", action="append", required=True, help="label column (repeatable)")
    p.add_argument(
        "--random-init", action="store_true", help="probe a random-init encoder of the same config"
    )
    p.add_argument(
        "--baseline",
        action="store_true",
        help="probe the trivial baseline (colour histogram + frame differences)",
    )
    add_clip_views(p)
    p.add_argument("--stride", type=int, default=None, help="frame stride (default: the run's)")
    p.add_argument("--train-split", default="train")
    p.add_argument("--test-split", default="test")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    """linear-probe and kNN top-1 of a frozen encoder on a labelled manifest

    Extract clip features (multi-view averaged) with a run's encoder on the manifest's train and test splits,
    then fit a logistic-regression probe (C chosen on a held-out fold of train) and a cosine kNN (k=20) per
    label column. Prints top-1 on the test split.
    """
    import dataclasses

    from vidfm.eval.frozen import probe_features, split_features
    from vidfm.eval.report import markdown_table
    from vidfm.recipes import load_run_encoder
    from vidfm.utils import default_device

    encoder, cfg = load_run_encoder(args.checkpoint, random_init=args.random_init, seed=args.seed)
    data = dataclasses.replace(cfg.data, manifest=args.data)
    if args.stride is not None:
        data = dataclasses.replace(data, stride=args.stride)
    splits = (args.train_split, args.test_split)
    feats = split_features(
        None if args.baseline else encoder,
        data,
        cfg.augment,
        splits,
        views=args.clips,
        crops=args.crops,
        pool=args.pool,
        workers=args.workers,
        seed=args.seed,
        device=default_device(),
    )
    try:
        rows = probe_features(feats[splits[0]], feats[splits[1]], args.label, seed=args.seed)
    except KeyError as exc:  # a --label column the manifest does not have
        from vidfm.errors import UserError, one_line

        raise UserError(one_line(exc)) from exc
    table = [[r.label, r.linear, r.knn, r.detail] for r in rows]
    print(markdown_table(["label", "linear top-1", "kNN top-1", "probe"], table))
    return 0


COMMANDS = (Command("probe", run, options),)
