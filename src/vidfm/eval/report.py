"""Pictures and tables for reports: loss curves, masked-reconstruction strips, markdown tables, and the
evaluation suite's report (its table, accuracy and retrieval pictures, markdown and HTML)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from vidfm.utils import add_caption
from vidfm.utils import pyplot as _pyplot

if TYPE_CHECKING:
    from vidfm.eval.suite import SuiteConfig, SuiteResult


def read_metrics(path: Path) -> list[dict]:
    """Rows of a run's ``metrics.jsonl``."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def loss_panels(runs: dict[str, Path], key: str = "loss") -> list[tuple[str, list[int], list[float]]]:
    """``(title, steps, values)`` per objective: each run's ``key`` and, when its loss is a sum of two or
    more logged ``loss_*`` parts (MVD's two teachers, UMT stage 2's four terms), each part."""
    panels = []
    for name, path in runs.items():
        rows = read_metrics(path)
        parts = sorted({k for r in rows for k in r if k.startswith("loss_")})
        for k in [key] + (parts if len(parts) >= 2 else []):
            pts = [(r["step"], r[k]) for r in rows if isinstance(r.get(k), (int, float))]
            if pts:
                title = name if k == key else f"{name}: {k.removeprefix('loss_')}"
                panels.append((title, [p[0] for p in pts], [p[1] for p in pts]))
    return panels


def plot_loss_curves(runs: dict[str, Path], out: Path, key: str = "loss", caption: str | None = None) -> None:
    """One panel per objective (:func:`loss_panels`), each with its own y-axis: a contrastive loss starts at
    log(batch), a normalised-pixel MSE near 1, so on one axis the smaller curves are flat lines."""
    plt = _pyplot()
    panels = loss_panels(runs, key)
    if not panels:
        return
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.5 * rows + 0.5), squeeze=False)
    for ax, (title, steps, values) in zip(axes.flat, panels, strict=False):
        ax.plot(steps, values, lw=1.2, marker="o" if len(steps) < 20 else None, ms=3)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("step", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    add_caption(
        fig,
        caption
        or f"Training {key} against optimizer step from each run's metrics.jsonl, one panel per objective "
        "(its own y-axis; a panel named run: part is one term of that run's loss).",
    )
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_reconstruction(
    rows: dict[str, torch.Tensor], out: Path, frames: Sequence[int] | None = None, caption: str | None = None
) -> None:
    """A grid of frames: one row per named video [C,T,H,W] in [0,1] (e.g. clip / masked / reconstruction),
    with ``caption`` under it (by default the rows' names and the frames shown)."""
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
    add_caption(
        fig,
        caption or f"Rows: {', '.join(names)}; columns: frames {', '.join(map(str, frames))} of {t}.",
    )
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


def as_numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()


# ----------------------------------------------------------------------------- the evaluation suite's report
def table_rows(result: SuiteResult) -> tuple[list[str], list[list[object]]]:
    """Header and rows of the one table: task, metric, chance, then one column per checkpoint."""
    names = [c.name for c in result.checkpoints]
    rows = []
    for spec, metric, chance, cells in result.rows:
        row: list[object] = [spec, metric, "—" if chance is None else chance]
        for n in names:
            cell = cells.get(n)
            if cell is None or (cell.value is None and not cell.error):
                row.append("n/a" if cell is not None else "—")
            else:
                row.append("error" if cell.error else cell.value)
        rows.append(row)
    return ["task", "metric", "chance", *names], rows


def plot_accuracy(result: SuiteResult, out: Path) -> bool:
    """Grouped bars: top-1 of every checkpoint per (task, metric), the chance rate as a tick. False when
    there is no accuracy to draw."""
    from vidfm.eval.suite import short_name

    rows = [r for r in result.rows if "top-1" in r[1]]
    if not rows:
        return False
    plt = _pyplot()
    names = [c.name for c in result.checkpoints]
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(rows) * max(1, len(names)) ** 0.5 + 2), 4))
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        vals = [r[3][name].value if name in r[3] and r[3][name].value is not None else 0.0 for r in rows]
        ax.bar(np.arange(len(rows)) + (j - (len(names) - 1) / 2) * width, vals, width, label=name)
    for i, r in enumerate(rows):
        if r[2] is not None:
            ax.hlines(r[2], i - 0.45, i + 0.45, colors="k", linestyles="dashed", linewidth=1)
    ax.set_xticks(np.arange(len(rows)))
    ax.set_xticklabels([f"{short_name(r[0])}\n{r[1]}" for r in rows], fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("top-1 (dashed: majority class)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    add_caption(
        fig,
        "Top-1 accuracy on the test split of every checkpoint (bars) for each task and metric; the dashed "
        "tick is the share of the majority class, what always guessing it scores.",
    )
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return True


def plot_retrieval_examples(examples: list[dict], out: Path, k: int = 8) -> bool:
    """Captions as queries: the middle frame of each caption's own video (titled with the rank it got) and,
    below, of the video ranked first for it."""
    from vidfm.data.decode import VideoReader

    shown = [e for e in examples if e.get("path")][:k]
    if not shown:
        return False
    plt = _pyplot()
    rows = 2 if any(e.get("top1") for e in shown) else 1
    fig, axes = plt.subplots(rows, len(shown), figsize=(2.2 * len(shown), 2.3 * rows + 0.4), squeeze=False)
    for j, e in enumerate(shown):
        for r, path in enumerate([e["path"], e.get("top1")][:rows]):
            ax = axes[r][j]
            ax.set_xticks([])
            ax.set_yticks([])
            if not path:
                continue
            try:
                with VideoReader(path, short_side=128) as reader:
                    ax.imshow(reader.read(np.array([reader.info.num_frames // 2]))[0])
            except Exception as exc:  # a thumbnail is decoration: an unreadable file gets a note, not a crash
                ax.text(0.5, 0.5, f"unreadable\n{type(exc).__name__}", ha="center", va="center", fontsize=7)
            if r == 1:
                ax.set_xlabel("ranked first" + (" (correct)" if path == e["path"] else ""), fontsize=7)
        caption = str(e.get("caption") or "")
        axes[0][j].set_title(
            "\n".join(caption[i : i + 26] for i in range(0, min(len(caption), 78), 26))
            + f"\nrank {e.get('rank')}",
            fontsize=7,
        )
    if rows == 2:
        axes[0][0].set_ylabel("its video", fontsize=8)
        axes[1][0].set_ylabel("top-1 video", fontsize=8)
    add_caption(
        fig,
        "Text-to-video retrieval, captions as queries: the middle frame of each caption's own video, titled "
        "with the caption and the rank that video got among all test videos"
        + (", and below it the video ranked first." if rows == 2 else "."),
    )
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return True


def write_report(result: SuiteResult, cfg: SuiteConfig, command: str = "") -> str:
    """Write ``results.md``/``results.csv`` (the table), the pictures and ``report.md``/``report.html``
    into ``cfg.out``; returns the markdown table."""
    import html

    from vidfm.eval.suite import slug
    from vidfm.io import atomic_write_text

    out = cfg.out
    out.mkdir(parents=True, exist_ok=True)
    header, rows = table_rows(result)
    table = save_table(header, rows, out / "results.md", out / "results.csv")
    pictures: list[tuple[str, str]] = []
    if plot_accuracy(result, out / "accuracy.png"):
        pictures.append(("Accuracy per checkpoint and task", "accuracy.png"))
    curves = {c.name: c.run / "metrics.jsonl" for c in result.checkpoints if c.run and not c.random_init}
    curves = {k: v for k, v in curves.items() if v.is_file()}
    if curves:
        plot_loss_curves(curves, out / "loss.png")
        pictures.append(("Training loss of the runs", "loss.png"))
    ft = {k: v / "metrics.jsonl" for k, v in result.finetune_runs.items() if (v / "metrics.jsonl").is_file()}
    if ft:
        plot_loss_curves(
            ft,
            out / "finetune_loss.png",
            caption="Fine-tuning loss (label-smoothed cross-entropy) against optimizer step, one panel per run.",
        )
        pictures.append(("Fine-tuning loss", "finetune_loss.png"))
    for key, examples in result.examples.items():
        name = f"retrieval_{slug(key)}.png"
        if plot_retrieval_examples(examples, out / name):
            pictures.append((f"Retrieval examples: {key}", name))
    notes = [
        f"- **{spec}** / {metric} / {name}: {cell.error or cell.detail}"
        for spec, metric, _, cells in result.rows
        for name, cell in cells.items()
        if cell.error or cell.detail
    ]
    md = ["# vidfm evaluation", ""]
    if command:
        md += [f"`{command}`", ""]
    md += [table, "", "Chance: the majority class of the test split.", ""]
    md += [s for title, f in pictures for s in (f"## {title}", "", f"![{title}]({f})", "")]
    if notes:
        md += ["## Details", "", *notes, ""]
    atomic_write_text(out / "report.md", "\n".join(md))

    def cell_html(v: object) -> str:
        return html.escape(f"{v:.3f}" if isinstance(v, float) else str(v))

    body = [f"<h1>vidfm evaluation</h1><p><code>{html.escape(command)}</code></p>", "<table>"]
    body.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
    body += ["<tr>" + "".join(f"<td>{cell_html(v)}</td>" for v in row) + "</tr>" for row in rows]
    body.append("</table><p>Chance: the majority class of the test split.</p>")
    body += [f'<h2>{html.escape(t)}</h2><img src="{f}" alt="{html.escape(t)}">' for t, f in pictures]
    if notes:
        body.append(
            "<h2>Details</h2><ul>" + "".join(f"<li>{html.escape(n[2:])}</li>" for n in notes) + "</ul>"
        )
    style = "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}"
    atomic_write_text(
        out / "report.html",
        f"<!doctype html><html><head><meta charset='utf-8'><title>vidfm evaluation</title><style>{style}</style>"
        f"</head><body>{''.join(body)}</body></html>\n",
    )
    return table
