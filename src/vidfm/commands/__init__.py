"""Command-line subcommands, declared as data: each module lists its :class:`Command` entries in ``COMMANDS``
and :func:`add_commands` builds every parser from them in one loop. Modules import heavy modules lazily
inside their handlers, so ``vidfm --help`` stays fast."""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Handler = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Command:
    """One command of the ``vidfm`` line.

    Its text is a docstring, as in click: the handler's (``run``), or ``doc`` for a group without a handler.
    The first paragraph is the one-line entry of the parent's ``--help``, the rest the command's description.

    Args:
        name: the word on the command line, e.g. ``"cache-targets"``.
        run: the handler, called with the parsed arguments; its return value is the exit code.
        options: adds the command's arguments to its parser.
        subcommands: a group's commands (their choice is stored as ``args.<name>_command``); a group without
            ``run`` prints its help.
        doc: the text of a group without ``run``.
        epilog: text after the options, kept as written (with the description).
    """

    name: str
    run: Handler | None = None
    options: Callable[[argparse.ArgumentParser], None] | None = None
    subcommands: tuple[Command, ...] = ()
    doc: str = ""
    epilog: str = ""

    def __post_init__(self) -> None:
        if (self.run is None) == (not self.doc):
            raise TypeError(
                f"command {self.name!r}: give either a handler (its docstring is the text) or a doc"
            )

    def text(self) -> tuple[str, str]:
        """(help line, description) from the docstring; empty under ``python -OO``, which strips docstrings."""
        doc = inspect.cleandoc(self.doc or (self.run.__doc__ if self.run else None) or "")
        summary, _, rest = doc.partition("\n\n")
        summary = " ".join(summary.split())
        return summary, rest or summary


def add_commands(sub: argparse._SubParsersAction, commands: Sequence[Command]) -> None:
    """Add one parser per command to ``sub`` (and, for a group, its subcommands below it)."""
    for command in commands:
        summary, description = command.text()
        p = sub.add_parser(
            command.name,
            help=summary,
            description=description,
            epilog=command.epilog or None,
            # An epilog holds examples: keep its lines (and then the description's too, as argparse has one switch).
            formatter_class=argparse.RawDescriptionHelpFormatter
            if command.epilog
            else argparse.HelpFormatter,
        )
        if command.options:
            command.options(p)
        if command.subcommands:
            group = p.add_subparsers(dest=f"{command.name}_command", metavar="SUBCOMMAND")
            add_commands(group, command.subcommands)
        p.set_defaults(handler=command.run or (lambda args, p=p: (p.print_help(), 0)[1]))
