"""Zero-shot evaluation of a video-text run: text<->video retrieval and classification from class prompts.

A run whose recipe has ``dual_encoder(run_dir)`` (``umt_stage2``, ``clip_image``) gives a video tower and a
text tower in one embedding space. Retrieval (the MSR-VTT protocol of UMT ``multi_modality/tasks/
retrieval_utils.py``, similarity from the dual encoder only, no VTM re-ranking): each caption queries all
videos (t2v: the rank of its own video); each video queries all captions (v2t: the best rank among its own
captions). Reported: R@1/5/10 (%), median and mean rank (1 = first).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vidfm.utils import log, on_terminal


@dataclass
class RetrievalResult:
    """t2v, v2t: {"R@1", "R@5", "R@10" (percent), "MdR", "MnR"}. examples: for the first ``top`` captions,
    (video path, caption, rank of its video, path of the top-1 video)."""

    t2v: dict[str, float]
    v2t: dict[str, float]
    num_videos: int
    num_captions: int
    examples: list[tuple[str, str, int, str]] = field(default_factory=list)

    def table(self) -> str:
        """A markdown table of both directions."""
        head = "| direction | R@1 | R@5 | R@10 | MdR | MnR |\n|---|---|---|---|---|---|\n"
        rows = [
            f"| {name} | {m['R@1']:.1f} | {m['R@5']:.1f} | {m['R@10']:.1f} | {m['MdR']:.0f} | {m['MnR']:.1f} |"
            for name, m in (("text->video", self.t2v), ("video->text", self.v2t))
        ]
        return head + "\n".join(rows) + f"\n\n({self.num_videos} videos, {self.num_captions} captions)"


def rank_metrics(ranks: np.ndarray) -> dict[str, float]:
    """1-based ranks [N] -> R@1/5/10 in percent, median and mean rank."""
    ranks = np.asarray(ranks, dtype=np.float64)
    out = {f"R@{k}": float(100.0 * (ranks <= k).mean()) for k in (1, 5, 10)}
    out.update(MdR=float(np.floor(np.median(ranks))), MnR=float(ranks.mean()))
    return out


def retrieval_ranks(sim: torch.Tensor, text_to_video: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """sim [Nt,Nv] text-video similarities, text_to_video [Nt] the video of each caption ->
    (t2v ranks [Nt], v2t ranks [Nv]), 1-based; ties count against the query (a constant score ranks last)."""
    nt, nv = sim.shape
    own = sim[torch.arange(nt), text_to_video]  # [Nt] each caption's score with its own video
    t2v = (sim >= own[:, None]).sum(1)  # its own video included
    v2t = torch.empty(nv, dtype=torch.long)
    for v in range(nv):
        mine = text_to_video == v
        if not bool(mine.any()):
            raise ValueError(f"video {v} has no caption")
        # the best-placed of its captions; other videos' captions that tie or beat it count against it, its
        # own do not (official UMT retrieval_utils takes the best own caption's position)
        v2t[v] = (sim[~mine, v] >= sim[mine, v].max()).sum() + 1
    return t2v.numpy(), v2t.numpy()


def load_dual_encoder(run_dir: str | Path):  # noqa: ANN201 - a DualEncoder
    """The :class:`~vidfm.models.heads.DualEncoder` of a run, from its recipe."""
    from vidfm.recipes import load_run_config

    cfg = load_run_config(run_dir)
    if not cfg.has_text_tower:
        raise ValueError(f"{run_dir} is a {cfg.recipe!r} run: it has no text tower to evaluate zero-shot")
    return cfg.dual_encoder(run_dir), cfg


@torch.no_grad()
def embed_videos(
    model,  # noqa: ANN001 - a DualEncoder
    cfg,  # noqa: ANN001 - the run config (data sampling)
    records: list,
    batch_size: int,
    workers: int,
    device: torch.device,
    progress: bool,
) -> torch.Tensor:
    """Unit embeddings [N,E] of ``records``' videos: deterministic clips (segment middles / centred), centre
    crop at the tower's size, its normalisation."""
    from vidfm.data.datasets import VideoDataset, build_loader
    from vidfm.data.sampling import SamplingConfig
    from vidfm.data.transforms import center_crop, normalize, to_float

    data = cfg.data
    sampling = SamplingConfig(mode=data.sampling, num_frames=data.num_frames, stride=data.stride)
    dataset = VideoDataset(records, sampling, short_side=model.size, train=False, seed=0)
    loader = build_loader(dataset, batch_size, workers=workers)
    mean = torch.tensor(model.mean, device=device)
    std = torch.tensor(model.std, device=device)
    out, order = [], []
    for batch in tqdm(loader, desc="videos", disable=not on_terminal(progress), leave=False):
        clip = normalize(center_crop(to_float(batch["video"].to(device)), model.size), mean, std)
        out.append(model.embed_video(clip).cpu())
        order += batch["index"].tolist()
    if order != list(range(len(records))):
        # A video that failed to decode was replaced by another one: its row would be wrong.
        raise RuntimeError(
            f"videos failed to decode: {dataset.failed_paths()}; fix or drop them from the manifest"
        )
    return torch.cat(out)


@torch.no_grad()
def embed_texts(model, texts: list[str], batch_size: int = 256) -> torch.Tensor:  # noqa: ANN001
    return torch.cat(
        [model.embed_text(texts[i : i + batch_size]).cpu() for i in range(0, len(texts), batch_size)]
    )


def evaluate_retrieval(
    run_dir: str | Path,
    manifest: str | Path,
    split: str | None = "test",
    batch_size: int = 16,
    workers: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    top: int = 10,
) -> RetrievalResult:
    """Zero-shot text<->video retrieval of a run on a caption manifest.

    Args:
        run_dir: a ``umt_stage2`` or ``clip_image`` run (its latest checkpoint).
        manifest: CSV with ``path`` and ``caption`` columns (one row per caption; several per video allowed).
        split: rows of this split (None = all).
        batch_size, workers: video decoding and encoding.
        device: where the towers run.
        progress: show a progress bar.
        top: captions kept in ``examples`` (video, caption, rank, top-1 video) for reports.
    """
    from vidfm.data.datasets import group_captions, read_manifest

    device = torch.device(device)
    records = read_manifest(manifest, split=split, caption_column="caption")
    videos, captions = group_captions(records)
    if not any(captions):
        raise ValueError(f"{manifest}: no captions (a 'caption' column is needed) in split {split!r}")
    keep = [i for i, c in enumerate(captions) if c]
    videos, captions = [videos[i] for i in keep], [captions[i] for i in keep]
    model, cfg = load_dual_encoder(run_dir)
    model = model.to(device).eval()
    v = embed_videos(model, cfg, videos, batch_size, workers, device, progress)
    texts = [c for cs in captions for c in cs]
    owner = torch.tensor([i for i, cs in enumerate(captions) for _ in cs])
    t = embed_texts(model, texts)
    sim = t @ v.t()  # [Nt,Nv] cosine similarities
    t2v, v2t = retrieval_ranks(sim, owner)
    best = sim.argmax(1)
    examples = [
        (videos[int(owner[j])].path, texts[j], int(t2v[j]), videos[int(best[j])].path)
        for j in range(min(top, len(texts)))
    ]
    result = RetrievalResult(rank_metrics(t2v), rank_metrics(v2t), len(videos), len(texts), examples)
    log.info(
        "retrieval on %s (%s): t2v R@1 %.1f, v2t R@1 %.1f",
        manifest,
        split,
        result.t2v["R@1"],
        result.v2t["R@1"],
    )
    return result


def zero_shot_classify(
    run_dir: str | Path,
    manifest: str | Path,
    label_column: str,
    prompts: str | Sequence[str] | Mapping[str, Sequence[str]] = "a video of {}",
    split: str | None = "test",
    batch_size: int = 16,
    workers: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> float:
    """Top-1 accuracy of classifying each video as the class whose prompt embedding is closest.

    Args:
        prompts: a template with ``{}`` for the class name, several templates (their text embeddings are
            averaged, CLIP's prompt ensembling), or ``{class name: [texts]}`` for hand-written prompts.
        (others as :func:`evaluate_retrieval`; ``label_column`` names the classes in the manifest.)
    """
    from vidfm.data.datasets import read_manifest

    device = torch.device(device)
    records = read_manifest(manifest, split=split, label_columns=[label_column], caption_column="caption")
    names = records.classes[label_column]
    if isinstance(prompts, str):
        prompts = [prompts]
    if isinstance(prompts, Mapping):
        missing = [n for n in names if n not in prompts]
        if missing:
            raise KeyError(f"no prompts for classes {missing}")
        per_class = [list(prompts[n]) for n in names]
    else:
        per_class = [[p.format(n) for p in prompts] for n in names]
    records = [r for r in records if r.labels[label_column] >= 0]
    videos = list({r.path: r for r in records}.values())  # one row per video
    model, cfg = load_dual_encoder(run_dir)
    model = model.to(device).eval()
    v = embed_videos(model, cfg, videos, batch_size, workers, device, progress)
    classes = torch.stack(
        [torch.nn.functional.normalize(embed_texts(model, p).mean(0), dim=0) for p in per_class]
    )
    pred = (v @ classes.t()).argmax(1)
    truth = torch.tensor([r.labels[label_column] for r in videos])
    return float((pred == truth).float().mean())


__all__ = [
    "RetrievalResult",
    "evaluate_retrieval",
    "load_dual_encoder",
    "rank_metrics",
    "retrieval_ranks",
    "zero_shot_classify",
]
