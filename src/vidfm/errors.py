"""Errors a user can fix, told apart from bugs.

``vidfm`` prints a :class:`UserError` as one line (what is wrong, what is allowed, a close match when
there is one) and exits 2; any other exception is an internal error and keeps its traceback. This module
imports nothing of vidfm, so every layer (data, models, train, commands) can raise these.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable


class UserError(Exception):
    """A mistake in what the user asked for or gave: a name, a value, a path, a file."""

    def __str__(self) -> str:  # the message as given, also where a builtin base (KeyError) would quote it
        return str(self.args[0]) if self.args else ""


class ConfigError(UserError, KeyError, ValueError):
    """A config key, value or name (recipe, variant) that does not fit.

    Also a ``KeyError`` (unknown key) and a ``ValueError`` (bad value), the types callers of
    :mod:`vidfm.config` caught before this class existed.
    """


class RunFolderError(UserError, FileNotFoundError):
    """A path given as a run folder that is not one (missing, or without ``config.yaml``), or a run folder
    whose recorded config disagrees with the one asked for."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean X?"`` for the closest of ``choices``, or ``""`` when none is close."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {match[0]}?" if match else ""


# torch's DataLoader re-raises a worker's exception as ``type(msg)`` where msg holds the worker's whole
# traceback ("Caught DataError in DataLoader worker process 0.\nOriginal Traceback ...\n<module.Class>: text").
_QUALIFIED = re.compile(r"^(?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception): ")


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line: the last line of a worker's re-raised traceback, without its
    ``module.ClassName:`` prefix; other multi-line messages joined with ``" | "``."""
    text = str(exc).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1].strip()
        text = _QUALIFIED.sub("", text, count=1)
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())
