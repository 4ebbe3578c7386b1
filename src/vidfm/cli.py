"""The ``vidfm`` command line. Subcommands live in :mod:`vidfm.commands`, one module each."""

from __future__ import annotations

import argparse
import importlib
import sys

from vidfm import __version__

# Order is the order of ``vidfm --help``.
COMMAND_MODULES = [
    "vidfm.commands.demo",
    "vidfm.commands.data",
    "vidfm.commands.pretrain",
    "vidfm.commands.probe",
    "vidfm.commands.eval",
    "vidfm.commands.embed",
    "vidfm.commands.convert",
    "vidfm.commands.tokenize",
    "vidfm.commands.teacher",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidfm",
        description="Train, distil, evaluate and serve video foundation encoders.",
    )
    parser.add_argument("--version", action="version", version=f"vidfm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from vidfm.utils import setup_logging

    setup_logging()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
