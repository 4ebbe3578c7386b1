"""InternVideo2 stage 3 on a labelled manifest: exact-match answer accuracy of ``internvideo2_stage3`` runs.

Every test clip is asked every question of the run's ``questions`` (greedy answer, compared with the row's
value as :func:`vidfm.data.qa.answer_text` writes it). Rows: each run given (a run with video tokens, its
``internvideo2_stage3:text`` control) and the majority answer of the train split (the trivial baseline).

Example::

    OMP_NUM_THREADS=2 python benchmarks/internvideo2_qa.py --manifest DIGITS/manifest.csv runs/chat runs/text
"""

from __future__ import annotations

import argparse
import collections
import time

import torch

from vidfm.data.qa import row_values
from vidfm.recipes.internvideo2_stage3 import _collate, load_video_lm


def run_accuracy(run: str, split: str, batch: int) -> dict[str, float]:
    """{column: accuracy} of one run's greedy answers on ``split``."""
    task, cfg = load_video_lm(run)
    qa = cfg.qa_dataset(split=split, train=False)
    loader = torch.utils.data.DataLoader(qa, batch_size=batch, collate_fn=_collate)
    right, total = collections.Counter(), collections.Counter()
    for b in loader:
        video = b["video"] if cfg.video_tokens else None
        for col, question in cfg.questions.items():
            truth = [qa.values[p][col] for p in b["path"]]
            said = task.answer(video, question, max_new=8)
            said = said * len(truth) if len(said) == 1 else said  # the text-only LM answers once per question
            right[col] += sum(s == t for s, t in zip(said, truth, strict=True))
            total[col] += len(truth)
    return {c: right[c] / total[c] for c in cfg.questions}


def majority(manifest: str, columns: list[str]) -> dict[str, float]:
    """Accuracy on the test split of always answering the train split's most frequent value."""
    import csv
    from pathlib import Path

    with Path(manifest).open(newline="") as f:
        rows = list(csv.DictReader(f))
    values = row_values(manifest, columns)
    key = lambda r: str(Path(manifest).parent / r["path"])  # noqa: E731
    out = {}
    for c in columns:
        top = collections.Counter(values[key(r)][c] for r in rows if r["split"] == "train").most_common(1)[0][
            0
        ]
        test = [values[key(r)][c] for r in rows if r["split"] == "test"]
        out[c] = sum(v == top for v in test) / len(test)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", help="internvideo2_stage3 run folders")
    p.add_argument("--manifest", required=True, help="the manifest the runs were trained on")
    p.add_argument("--split", default="test")
    p.add_argument("--batch", type=int, default=64)
    args = p.parse_args()
    rows, columns = [], None
    for run in args.runs:
        t0 = time.perf_counter()
        acc = run_accuracy(run, args.split, args.batch)
        columns = columns or list(acc)
        rows.append((run, acc, time.perf_counter() - t0))
    rows.append(("majority answer of train", majority(args.manifest, columns), 0.0))
    print("| run | " + " | ".join(columns) + " | eval s |")
    print("|---|" + "---|" * (len(columns) + 1))
    for name, acc, secs in rows:
        print(f"| {name} | " + " | ".join(f"{acc[c]:.3f}" for c in columns) + f" | {secs:.0f} |")


if __name__ == "__main__":
    main()
