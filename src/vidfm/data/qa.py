"""(video, instruction, answer) triples from a manifest's label columns, for instruction tuning a video LM.

Each item of a video dataset gets one question about one of the asked columns, drawn from
``(seed, epoch, index)`` so a resumed run repeats itself; the answer is that row's class name with
underscores as spaces ("rotate_cw" -> "rotate cw"). Test-time evaluation asks every question of every clip.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

# Questions vidfm asks about digits-motion; a recipe may give its own for other label columns.
DIGITS_QUESTIONS: dict[str, str] = {
    "digit": "which digit is shown?",
    "motion": "how does the digit move?",
}


def answer_text(value: str) -> str:
    return value.replace("_", " ").strip().lower()


def row_values(manifest: str | Path, columns: list[str]) -> dict[str, dict[str, str]]:
    """{clip path as the dataset records it: {column: answer text}} for the asked columns."""
    manifest = Path(manifest)
    with manifest.open(newline="") as f:
        rows = list(csv.DictReader(f))
    missing = [c for c in columns if rows and c not in rows[0]]
    if missing:
        raise ValueError(f"{manifest}: no column(s) {missing} to ask about")
    out = {}
    for r in rows:
        path = Path(r["path"]) if Path(r["path"]).is_absolute() else manifest.parent / r["path"]
        out[str(path)] = {c: answer_text(r[c]) for c in columns}
    return out


class QADataset(torch.utils.data.Dataset):
    """A video dataset's items plus ``instruction`` and ``answer``.

    Args:
        dataset: a :class:`vidfm.data.datasets.VideoDataset`.
        manifest: its manifest (the answers' source).
        questions: column -> question text.
        seed: the run's seed.
    """

    def __init__(
        self,
        dataset: torch.utils.data.Dataset,
        manifest: str | Path,
        questions: dict[str, str],
        seed: int = 0,
    ):
        if not questions:
            raise ValueError("no questions to ask")
        self.dataset, self.questions, self.seed = dataset, dict(questions), seed
        self.values = row_values(manifest, list(questions))

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key):  # noqa: ANN001, ANN204 - the wrapped dataset's keys
        epoch, index = key if isinstance(key, tuple) else (0, key)
        item = dict(self.dataset[key])
        columns = list(self.questions)
        col = columns[int(np.random.default_rng([self.seed, epoch, index, 0x9A]).integers(len(columns)))]
        item["instruction"], item["answer"] = self.questions[col], self.values[str(item["path"])][col]
        return item
