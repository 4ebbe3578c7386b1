"""``vidfm demo``: the main job on the embedded default data."""

from __future__ import annotations

import argparse

from vidfm.commands import Command


def options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="vidfm-demo", help="output folder (data, run, report); reused if present")
    p.add_argument("--clips", type=int, default=2000, help="digits-motion clips to generate")
    p.add_argument("--steps", type=int, default=None, help="pre-training steps (default: the tiny recipe's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pool", default="mean", choices=["mean", "grid2x2"], help="clip feature for the probes")
    p.add_argument("--workers", type=int, default=1, help="decoding worker processes")
    p.add_argument(
        "--no-language",
        dest="language",
        action="store_false",
        help="skip the language route (clip_image teacher -> UMT stage 1 -> stage 2)",
    )
    p.add_argument(
        "--no-distil",
        dest="distil",
        action="store_false",
        help="skip the students of the EfficientNet-Lite0 teacher (the headline)",
    )
    p.add_argument(
        "--language-budget", type=float, default=300.0, help="seconds for the language route (default 300)"
    )


def run(args: argparse.Namespace) -> int:
    """make digits-motion, distil students from a pretrained teacher, pre-train a tiny VideoMAE and a UMT
    student, probe them against random init, write a report

    The main job on the embedded digits-motion data: under 15 minutes on 2 CPU cores (a GPU is used when
    present). Prints a table of linear-probe and kNN top-1 on `digit` and `motion`: first the headline,
    students distilled from ImageNet EfficientNet-Lite0 (2 seeds), then a random-init encoder, the trivial
    baseline, VideoMAE and the language route (a clip_image teacher -> UMT stage 1 -> stage 2 with zero-shot
    retrieval when the budget allows), with one line per row saying what it is; writes OUT/report (table, loss
    curves, reconstruction picture). A re-run into OUT reuses what is finished and says so.
    """
    from vidfm.demo import DemoConfig, run_demo

    table = run_demo(
        DemoConfig(
            out=args.out,
            clips=args.clips,
            steps=args.steps,
            seed=args.seed,
            pool=args.pool,
            workers=args.workers,
            language=args.language,
            language_budget_s=args.language_budget,
            distil=args.distil,
        )
    )
    print(table)
    return 0


COMMANDS = (Command("demo", run, options),)
