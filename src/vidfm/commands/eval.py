"""``vidfm eval``: several checkpoints × several tasks -> one table (markdown + CSV) and a report folder."""

from __future__ import annotations

import argparse
import sys

from vidfm.commands import Command
from vidfm.commands.options import add_clip_views

EPILOG = """tasks:
  probe:DATA:COLUMN      linear probe + kNN on frozen clip features
  attentive:DATA:COLUMN  attentive (MAP) probe on frozen tokens, heads x lrs trained in one pass
  finetune:DATA:COLUMN   end-to-end fine-tuning (layer decay, drop path, label smoothing, mixup/cutmix),
                         multi-view test
  retrieval:DATA         zero-shot text-video retrieval (video-language runs)
DATA is digits-motion (the demo's data, generated when absent) or a CSV manifest with train/test splits.

checkpoints: RUN, NAME=RUN, random (random init of the first run's config), random:RUN, baseline.

example:
  vidfm eval --checkpoints runs/a random --tasks probe:digits-motion:digit \\
      probe:digits-motion:motion probe:../shared/data/surv_fight/manifest.csv:label --out eval-report
  vidfm eval retrieval --checkpoint RUN --data ../shared/data/msrvtt25/manifest.csv
"""


def _common(p: argparse.ArgumentParser, out_default: str) -> None:
    p.add_argument("--out", default=out_default, help="report folder (results are reused when present)")
    p.add_argument("--workers", type=int, default=2, help="decoding worker processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoints", nargs="+", help="run folders, NAME=RUN, random, random:RUN, baseline")
    p.add_argument("--tasks", nargs="+", help="KIND:DATA:COLUMN or retrieval:DATA (see below)")
    _common(p, "vidfm-eval")
    add_clip_views(p, "the linear/kNN probes")
    p.add_argument("--attentive-epochs", type=int, default=None, help="epochs of the attentive probe (20)")
    p.add_argument(
        "--attentive-lrs", type=float, nargs="+", default=None, help="learning rates tried together"
    )
    p.add_argument(
        "--finetune-variant", default="tiny", help="finetune recipe variant: '' (ViT-B K400) or tiny"
    )
    p.add_argument(
        "--finetune-set", action="append", default=[], metavar="KEY=VALUE", help="finetune recipe override"
    )
    p.add_argument("--digits-dir", default=None, help="where digits-motion is (or is generated)")


def retrieval_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="video-language run folder")
    p.add_argument("--data", required=True, help="CSV manifest with captions and a split column")
    p.add_argument("--split", default="test")
    _common(p, "vidfm-eval-retrieval")


def _config(args: argparse.Namespace, **extra):  # noqa: ANN202
    from pathlib import Path

    from vidfm.eval.suite import SuiteConfig

    return SuiteConfig(
        out=Path(args.out), workers=args.workers, seed=args.seed, progress=not args.no_progress, **extra
    )


def _finish(checkpoints: list[str], tasks: list[str], cfg, argv: list[str]) -> int:  # noqa: ANN001
    from vidfm.errors import UserError, one_line
    from vidfm.eval.report import write_report
    from vidfm.eval.suite import parse_checkpoints, parse_tasks, run_suite

    try:
        ckpts, parsed = parse_checkpoints(checkpoints), parse_tasks(tasks)
        result = run_suite(ckpts, parsed, cfg)
    except UserError:
        raise
    except (ValueError, KeyError, FileNotFoundError) as exc:  # a checkpoint or task spec that does not fit
        raise UserError(one_line(exc)) from exc
    print(write_report(result, cfg, command="vidfm " + " ".join(argv)))
    print(f"\nreport: {cfg.out / 'report.html'} (and report.md)")
    failed = [c for *_, cells in result.rows for c in cells.values() if c.error]
    return 1 if failed else 0


def run(args: argparse.Namespace) -> int:
    """evaluate checkpoints on probe, attentive, fine-tune and retrieval tasks; table + report

    Evaluate every checkpoint on every task and write OUT/results.md, OUT/results.csv, OUT/report.md and
    OUT/report.html with pictures (accuracy bars, the runs' loss curves, retrieval examples). One encoder pass
    per checkpoint and manifest serves all its probe tasks.
    """
    import dataclasses

    from vidfm.eval.attentive import AttentiveConfig

    if not args.checkpoints or not args.tasks:
        from vidfm.errors import UserError

        raise UserError("give --checkpoints and --tasks (or use `vidfm eval retrieval`)")
    attentive = AttentiveConfig(seed=args.seed)
    if args.attentive_epochs is not None:
        attentive = dataclasses.replace(attentive, epochs=args.attentive_epochs)
    if args.attentive_lrs:
        attentive = dataclasses.replace(attentive, lrs=tuple(args.attentive_lrs))
    from pathlib import Path

    cfg = _config(
        args,
        pool=args.pool,
        clips=args.clips,
        crops=args.crops,
        attentive=attentive,
        finetune_variant=args.finetune_variant,
        finetune_overrides=tuple(args.finetune_set),
        digits_dir=Path(args.digits_dir) if args.digits_dir else None,
    )
    return _finish(args.checkpoints, args.tasks, cfg, sys.argv[1:])


def run_retrieval(args: argparse.Namespace) -> int:
    """zero-shot text-video retrieval of one video-language run

    Shorthand for --checkpoints RUN --tasks retrieval:MANIFEST: prints R@1/5/10 and median rank both ways and
    writes the report with example thumbnails.
    """
    cfg = _config(args, retrieval_split=args.split)
    return _finish([args.checkpoint], [f"retrieval:{args.data}"], cfg, sys.argv[1:])


COMMANDS = (
    Command(
        "eval",
        run,
        options,
        subcommands=(Command("retrieval", run_retrieval, retrieval_options),),
        epilog=EPILOG,
    ),
)
