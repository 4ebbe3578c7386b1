"""The command table: every command the ``vidfm`` line builds from ``COMMANDS`` has its text."""

import argparse

import pytest

from vidfm.cli import build_parser
from vidfm.commands import Command


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield path + (name,), helps[name], sub
                yield from _commands(sub, path + (name,))


def test_every_command_has_a_help_line_and_a_description():
    found = list(_commands(build_parser()))
    assert len(found) >= 20  # the 11 command modules declare 20 commands and groups
    for path, help_line, parser in found:
        assert help_line and "\n" not in help_line, path
        assert parser.description, path


def test_a_command_takes_its_text_from_the_handler_docstring():
    def run(args: argparse.Namespace) -> int:
        """say hello
        to the user

        Prints hello."""
        return 0

    assert Command("hello", run).text() == ("say hello to the user", "Prints hello.")
    assert Command("group", doc="a group").text() == ("a group", "a group")
    with pytest.raises(TypeError, match="either"):
        Command("both", run, doc="text")
    with pytest.raises(TypeError, match="either"):
        Command("neither")
