"""Cross-frame feature similarity of a teacher (MVD paper, "Analysis of features encoded by different
teachers"): how much a teacher's feature map changes from one time step of a clip to another.

For a clip with tokens on a (T, h, w) grid, ``S[i, j]`` is the cosine similarity of the features at the same
spatial position in time steps i and j, averaged over the h·w positions and over clips. The paper's evidence
that video teachers carry more temporal dynamics: the image teacher's map stays bright (S close to 1 off the
diagonal), the video teacher's does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class Similarity:
    """matrix: [T, T] mean cosine similarity between time steps; clips: how many clips were averaged."""

    matrix: np.ndarray
    clips: int

    @property
    def off_diagonal(self) -> float:
        """Mean similarity over pairs of different time steps (the one-number summary)."""
        t = self.matrix.shape[0]
        if t < 2:
            return float("nan")
        return float((self.matrix.sum() - np.trace(self.matrix)) / (t * (t - 1)))

    def by_distance(self) -> np.ndarray:
        """[T] mean similarity of time steps ``d`` apart, d = 0 … T-1."""
        t = self.matrix.shape[0]
        return np.array([np.diagonal(self.matrix, offset=d).mean() for d in range(t)])


def frame_similarity(tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """tokens [B, T·h·w, D] on ``grid`` (T, h, w) -> [B, T, T] cosine similarity between time steps,
    position by position, averaged over the h·w positions."""
    t, h, w = grid
    if tokens.shape[1] != t * h * w:
        raise ValueError(f"{tokens.shape[1]} tokens do not fill the grid {grid}")
    x = F.normalize(tokens.float().reshape(tokens.shape[0], t, h * w, -1), dim=-1, eps=1e-6)  # [B,T,n,D]
    return torch.einsum("bind,bjnd->bij", x, x) / (h * w)


class SimilarityMeter:
    """Running mean of :func:`frame_similarity` over batches of clips (all with the same grid)."""

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.clips = 0

    def update(self, tokens: torch.Tensor, grid: tuple[int, int, int]) -> None:
        s = frame_similarity(tokens, grid).sum(0).cpu().double()  # [T,T]
        if self.total is not None and self.total.shape != s.shape:
            raise ValueError(f"grid changed between batches: {tuple(self.total.shape)} vs {tuple(s.shape)}")
        self.total = s if self.total is None else self.total + s
        self.clips += tokens.shape[0]

    def result(self) -> Similarity:
        if self.total is None:
            raise ValueError("no clips were measured")
        return Similarity((self.total / self.clips).numpy(), self.clips)


def format_similarity(results: dict[str, Similarity]) -> str:
    """A text table: per teacher, the off-diagonal mean and the mean at each temporal distance."""
    t = max(r.matrix.shape[0] for r in results.values())
    head = ["teacher", "clips", "off-diag"] + [f"d={d}" for d in range(1, t)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in results.items():
        dist = r.by_distance()
        cells = [name, str(r.clips), f"{r.off_diagonal:.3f}"] + [f"{v:.3f}" for v in dist[1:]]
        lines.append("| " + " | ".join(cells + [""] * (len(head) - len(cells))) + " |")
    return "\n".join(lines)


def plot_similarity(results: dict[str, Similarity], out: str | Path) -> None:
    """One heat map per teacher (shared colour scale, as the paper's figure) and the by-distance curves."""
    from vidfm.utils import add_caption, pyplot

    plt = pyplot()
    n = len(results)
    fig, axes = plt.subplots(1, n + 1, figsize=(3.2 * (n + 1), 3.0), squeeze=False)
    lo = min(float(r.matrix.min()) for r in results.values())
    for ax, (name, r) in zip(axes[0], results.items(), strict=False):
        im = ax.imshow(r.matrix, vmin=lo, vmax=1.0, cmap="viridis")
        ax.set_title(f"{name}\noff-diagonal {r.off_diagonal:.3f}", fontsize=9)
        ax.set_xlabel("time step")
        ax.set_ylabel("time step")
    fig.colorbar(im, ax=axes[0][n - 1], fraction=0.046)
    ax = axes[0][n]
    for name, r in results.items():
        ax.plot(range(r.matrix.shape[0]), r.by_distance(), marker="o", label=name)
    ax.set_xlabel("temporal distance (time steps)")
    ax.set_ylabel("cosine similarity")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    add_caption(
        fig,
        "Cosine similarity of each teacher's features at the same position between every pair of time steps, "
        "averaged over positions and clips (one heat map per teacher, shared colour scale), and its mean by "
        "temporal distance (right): the lower, the more the teacher's features change over time.",
    )
    fig.savefig(out, dpi=120)
    plt.close(fig)


@torch.no_grad()
def teacher_similarity(
    teacher: torch.nn.Module,
    loader,
    tubelet: int = 2,
    device: torch.device | str = "cpu",
    max_clips: int | None = None,
) -> Similarity:
    """Cross-frame similarity of ``teacher`` over the clips of ``loader`` (batches with ``video`` uint8
    [B,T,H,W,C]). An image teacher sees ``frames[::tubelet]`` (what MVD distils), so both kinds of teacher are
    measured on the same T/t time steps."""
    from vidfm.data.transforms import to_float
    from vidfm.teachers.align import teacher_frames

    device = torch.device(device)
    teacher = teacher.to(device)
    meter = SimilarityMeter()
    for batch in loader:
        video = to_float(batch["video"].to(device))  # [B,C,T,H,W] in [0,1]
        if getattr(teacher, "per_frame", False):
            video = teacher_frames(video, tubelet, "first")
        out = teacher(video)
        meter.update(out.tokens, out.grid)
        if max_clips is not None and meter.clips >= max_clips:
            break
    return meter.result()
