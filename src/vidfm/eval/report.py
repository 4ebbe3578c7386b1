"""Pictures and tables for reports: loss curves, masked-reconstruction strips, markdown tables."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from vidfm.utils import pyplot as _pyplot


def read_metrics(path: Path) -> list[dict]:
    """Rows of a run's ``metrics.jsonl``."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_loss_curves(runs: dict[str, Path], out: Path, key: str = "loss") -> None:
    """One line per run: ``key`` against step, from each run's metrics.jsonl."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, path in runs.items():
        rows = [r for r in read_metrics(path) if key in r]
        ax.plot([r["step"] for r in rows], [r[key] for r in rows], label=name)
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_reconstruction(
    rows: dict[str, torch.Tensor], out: Path, frames: Sequence[int] | None = None
) -> None:
    """A grid of frames: one row per named video [C,T,H,W] in [0,1] (e.g. clip / masked / reconstruction)."""
    plt = _pyplot()
    names = list(rows)
    t = next(iter(rows.values())).shape[1]
    frames = list(frames) if frames is not None else list(range(0, t, max(1, t // 8)))
    fig, axes = plt.subplots(
        len(names), len(frames), figsize=(1.3 * len(frames), 1.4 * len(names)), squeeze=False
    )
    for r, name in enumerate(names):
        video = rows[name].detach().float().clamp(0, 1).cpu()
        for c, f in enumerate(frames):
            ax = axes[r][c]
            ax.imshow(video[:, f].permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
            if r == 0:
                ax.set_title(f"t={f}", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def fmt(v: object) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def save_table(header: Sequence[str], rows: Sequence[Sequence[object]], out_md: Path, out_csv: Path) -> str:
    """Write the same table as markdown and CSV; returns the markdown."""
    import csv

    md = markdown_table(header, rows)
    out_md.write_text(md + "\n")
    with open(out_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows([[f"{v:.4f}" if isinstance(v, float) else v for v in row] for row in rows])
    return md


def to_unit_range(video: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Undo input normalisation: [C,T,H,W] -> [0,1]."""
    return video * std.view(-1, 1, 1, 1) + mean.view(-1, 1, 1, 1)


def as_numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()
