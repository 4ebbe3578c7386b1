"""``vidfm probe``: linear and kNN probes of a run's frozen encoder on a labelled manifest."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "probe",
        help="linear-probe and kNN top-1 of a frozen encoder on a labelled manifest",
        description="Extract clip features (multi-view averaged) with a run's encoder on the manifest's train "
        "and test splits, then fit a logistic-regression probe (C chosen on a held-out fold of train) and a "
        "cosine kNN (k=20) per label column. Prints top-1 on the test split.",
    )
    p.add_argument("--checkpoint", required=True, help="vidfm run folder")
    p.add_argument("--data", required=True, help="CSV manifest with a split column (train/test)")
    p.add_argument("--label", action="append", required=True, help="label column (repeatable)")
    p.add_argument(
        "--random-init", action="store_true", help="probe a random-init encoder of the same config"
    )
    p.add_argument("--pool", default="mean", choices=["mean", "cls", "grid2x2"])
    p.add_argument("--clips", type=int, default=1, help="temporal clips per video (multi-view)")
    p.add_argument("--crops", type=int, default=1, choices=[1, 3], help="spatial crops per clip")
    p.add_argument("--stride", type=int, default=None, help="frame stride (default: the run's)")
    p.add_argument("--train-split", default="train")
    p.add_argument("--test-split", default="test")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from vidfm.data.config import build_dataset
    from vidfm.eval.features import extract_features
    from vidfm.eval.probes import knn_probe, linear_probe
    from vidfm.eval.report import markdown_table
    from vidfm.recipes import load_run_encoder
    from vidfm.utils import default_device

    encoder, cfg = load_run_encoder(args.checkpoint, random_init=args.random_init, seed=args.seed)
    data = dataclasses.replace(cfg.data, manifest=args.data, short_side=cfg.augment.size)
    if args.stride is not None:
        data = dataclasses.replace(data, stride=args.stride)
    kw = dict(
        size=cfg.augment.size,
        mean=cfg.augment.mean,
        std=cfg.augment.std,
        crops=args.crops,
        pool=args.pool,
        workers=args.workers,
        device=default_device(),
    )
    feats = {
        split: extract_features(
            encoder,
            build_dataset(
                data, seed=args.seed, split=split, views=args.clips, train=False, crop_square=args.crops == 1
            ),
            **kw,
        )
        for split in (args.train_split, args.test_split)
    }
    train, test = feats[args.train_split], feats[args.test_split]
    rows = []
    for col in args.label:
        if col not in train.labels:
            raise SystemExit(f"label column {col!r} not in {args.data} (have {sorted(train.labels)})")
        lin = linear_probe(train.x, train.labels[col], test.x, test.labels[col], seed=args.seed)
        knn = knn_probe(train.x, train.labels[col], test.x, test.labels[col])
        rows.append([col, lin.top1, knn.top1, lin.detail])
    print(markdown_table(["label", "linear top-1", "kNN top-1", "probe"], rows))
    return 0
