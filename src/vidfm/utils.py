"""Small shared helpers: device choice, logging, seeding."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

import torch

log = logging.getLogger("vidfm")


def default_device() -> torch.device:
    """CUDA when present, else CPU: every command uses a GPU by itself when one is there."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (it may be swapped, e.g. by test capture)."""

    @property
    def stream(self):  # noqa: ANN201 - logging's own attribute
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def on_terminal(progress: bool = True) -> bool:
    """Whether to draw a progress bar: asked for and stderr is a terminal. Redirected output (a log file,
    CI) would otherwise collect every redraw of the bar; commands log plain lines there instead."""
    return progress and sys.stderr.isatty()


def cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have exited (data workers), user + system."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def setup_logging(level: int = logging.INFO) -> None:
    if not log.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False


@contextlib.contextmanager
def own_seed(seed: int) -> Iterator[None]:
    """Inside, the global generator starts from ``seed``; after, it is as it was. For modules whose initial
    weights must be a function of their own seed (a frozen random encoder rebuilt rather than saved), whatever
    the process drew before them, without moving the draws of what is built after them."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def make_generator(seed: int, *streams: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A generator seeded by (seed, *streams), e.g. (seed, rank, step), so a resumed run repeats itself."""
    mixed = seed
    for s in streams:
        # splitmix-style mixing keeps nearby (rank, step) pairs from giving correlated streams.
        mixed = (mixed * 0x9E3779B97F4A7C15 + s + 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF
        mixed ^= mixed >> 31
    g = torch.Generator(device=device)
    g.manual_seed(mixed & 0x7FFFFFFFFFFFFFFF)
    return g


def add_caption(fig, text: str) -> None:  # noqa: ANN001 - a matplotlib Figure
    """Write ``text`` under the plot (wrapped to the figure's width) and lay the figure out above it: every
    picture says what it shows without the report around it."""
    import textwrap

    width, height = fig.get_size_inches()
    lines = textwrap.wrap(text, width=max(50, int(width * 16)))  # ~16 characters of 7-point text an inch
    bottom = min(0.45, (0.16 * len(lines) + 0.1) / height)  # ~0.16 inch a line of 7-point text
    fig.text(0.01, 0.01, "\n".join(lines), fontsize=7, ha="left", va="bottom", wrap=False)
    fig.tight_layout(rect=(0, bottom, 1, 1))


def pyplot():  # noqa: ANN201 - matplotlib is an optional extra
    """``matplotlib.pyplot`` on the Agg backend, or a clear error naming the extra to install."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("pictures need matplotlib: pip install 'vidfm[eval]'") from exc
    return plt
