"""The ``vidfm`` command line. Subcommands live in :mod:`vidfm.commands`: each module declares its commands
as data (``COMMANDS``, :class:`vidfm.commands.Command`), built here in one loop.

One error path: a :class:`vidfm.errors.UserError` (a wrong name, value, path or file) is printed as one
line ``vidfm COMMAND: error: ...`` and the exit code is 2, as for argparse's own usage errors; any other
exception is a bug and keeps its traceback (exit 1). ``--debug``, anywhere on the line, prints the traceback
of user errors too and turns on debug logging.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from vidfm import __version__
from vidfm.commands import add_commands

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
    "vidfm.commands.lavit_lm",
    "vidfm.commands.chat",
    "vidfm.commands.teacher",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidfm",
        description="Train, distil, evaluate and serve video foundation encoders.",
    )
    parser.add_argument("--version", action="version", version=f"vidfm {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="tracebacks for every error and debug logging (anywhere on the line)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_commands(sub, [c for name in COMMAND_MODULES for c in importlib.import_module(name).COMMANDS])
    return parser


def main(argv: list[str] | None = None) -> int:
    import logging
    import traceback

    from vidfm.errors import UserError, one_line
    from vidfm.utils import setup_logging

    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted after the subcommand too: taken out before argparse sees the line.
    head = argv[: argv.index("--")] if "--" in argv else argv
    debug = "--debug" in head
    if debug:
        argv.remove("--debug")
    setup_logging(logging.DEBUG if debug else logging.INFO)
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
    except UserError as exc:
        if debug:
            traceback.print_exc()
        # "vidfm data inspect", not just "vidfm data": nested subcommands store theirs as *_command.
        name = " ".join([args.command] + [v for k, v in vars(args).items() if k.endswith("_command") and v])
        print(f"vidfm {name}: error: {one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
