"""InternVideo2 stage 2: what each modality's clip embedding knows — linear probes on video-only, audio-only and
video + audio embeddings, against the same model at random init and a trivial baseline.

On digits-motion with sound (``vidfm data digits OUT --audio``) the labels split by modality: ``sound`` is in
the audio alone, ``digit`` and ``motion`` in the frames alone, ``motion_sound`` only in both. The embeddings are
those the stage-2 losses train (:meth:`InternVideo2Stage2Task.modality_embeddings`): the video projection of
the mean token, the audio projection of the pooled audio tokens, and their sum. Trivial baseline: colour
histogram + frame differences (:func:`vidfm.eval.baselines.trivial_clip_features`) for video, the mean and
standard deviation over time of the log-mel filterbank for audio, both concatenated for video + audio.

    python benchmarks/internvideo2_modalities.py --data DIGITS/manifest.csv --run stage2=runs/iv2_s2 \\
        --run scratch=runs/iv2_s2_scratch --random-init

Prints one Markdown table (rows: source × modality, columns: labels, linear-probe top-1 on the test split).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

MODALITIES = ("video", "audio", "video+audio")
LABELS = ("sound", "digit", "motion", "motion_sound")


def clip_loader(cfg, manifest: str, split: str, labels: list[str], batch: int, workers: int):  # noqa: ANN001, ANN201
    """Deterministic clips (segment middles / centred) of ``split`` with their audio, as the run reads them."""
    from vidfm.data.audio import AudioVideoDataset, collate_av, sounds_of
    from vidfm.data.datasets import VideoDataset, read_manifest
    from vidfm.data.sampling import SamplingConfig

    records = read_manifest(manifest, split=split, label_columns=labels)
    sampling = SamplingConfig(mode=cfg.data.sampling, num_frames=cfg.data.num_frames, stride=cfg.data.stride)
    videos = VideoDataset(records, sampling, short_side=cfg.augment.size, train=False, seed=0)
    dataset = AudioVideoDataset(videos, cfg.audio_input, sounds_of(manifest))
    return torch.utils.data.DataLoader(dataset, batch_size=batch, num_workers=workers, collate_fn=collate_av)


def trivial_features(batch: dict) -> dict[str, torch.Tensor]:
    """Per-clip trivial features of each modality: video [B,43], audio [B,2M] (mean, std of valid frames)."""
    from vidfm.eval.baselines import trivial_clip_features

    video = torch.stack([trivial_clip_features(v) for v in batch["video"]])
    valid = batch["audio_valid"][..., None].float()  # [B,F,1]
    n = valid.sum(1).clamp(min=1)
    mean = (batch["audio"] * valid).sum(1) / n  # [B,M]
    std = (((batch["audio"] - mean[:, None]) ** 2 * valid).sum(1) / n).sqrt()
    audio = torch.cat([mean, std], dim=1)
    return {"video": video, "audio": audio, "video+audio": torch.cat([video, audio], dim=1)}


@torch.no_grad()
def embed(task, loader, progress: bool) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:  # noqa: ANN001
    """{modality: [N,E]} and {label: [N]} over the loader; ``task`` None gives the trivial features."""
    from vidfm.data.transforms import center_crop, to_float

    feats: dict[str, list] = {m: [] for m in MODALITIES}
    labels: dict[str, list] = {}
    for batch in tqdm(loader, desc="clips", disable=not progress, leave=False):
        if task is None:
            out = trivial_features(batch)
        else:
            clip = task.augment.normalize(center_crop(to_float(batch["video"]), task.augment.cfg.size))
            out = task.modality_embeddings(clip, batch)
        for m in MODALITIES:
            feats[m].append(out[m].float().numpy())
        for col, y in batch["labels"].items():
            labels.setdefault(col, []).append(y.numpy())
    return {m: np.concatenate(v) for m, v in feats.items()}, {c: np.concatenate(v) for c, v in labels.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="manifest of digits-motion with sound (train/test splits)")
    ap.add_argument(
        "--run", action="append", required=True, metavar="NAME=RUN", help="internvideo2_stage2 run"
    )
    ap.add_argument("--random-init", action="store_true", help="add the first run's model at random init")
    ap.add_argument("--labels", nargs="+", default=list(LABELS))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    from vidfm.eval.probes import linear_probe
    from vidfm.recipes import load_run_config
    from vidfm.utils import on_terminal

    runs = [r.split("=", 1) if "=" in r else [Path(r).name, r] for r in args.run]
    first = load_run_config(runs[0][1])
    if first.recipe != "internvideo2_stage2":
        raise SystemExit(f"{runs[0][1]} is a {first.recipe!r} run, not internvideo2_stage2")
    sources: list[tuple[str, object]] = [("trivial baseline", None)]
    if args.random_init:
        torch.manual_seed(first.train.seed)
        sources.append(("random init", replace(first, init="").build_task().eval()))
    sources += [(name, load_run_config(run).trained_task(run)) for name, run in runs]

    progress = on_terminal(not args.no_progress)
    loaders = {
        s: clip_loader(first, args.data, s, args.labels, args.batch, args.workers) for s in ("train", "test")
    }
    print("| source | embedding | " + " | ".join(args.labels) + " |")
    print("|---|---|" + "---|" * len(args.labels))
    for name, task in sources:
        (tr_x, tr_y), (te_x, te_y) = (embed(task, loaders[s], progress) for s in ("train", "test"))
        for m in MODALITIES:
            accs = [linear_probe(tr_x[m], tr_y[c], te_x[m], te_y[c]).top1 for c in args.labels]
            print(f"| {name} | {m} | " + " | ".join(f"{a:.3f}" for a in accs) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
