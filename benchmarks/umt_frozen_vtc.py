"""Is the video-text signal in a run's frozen features? VTC with two linear projections on cached features.

A diagnostic for the tiny language route (docs/umt.md): when ``umt_stage2:tiny`` leaves VTC at ln(batch),
this separates "the encoder's features carry no caption information" from "the end-to-end run is too short
or the features too collapsed for SGD". The run's encoder gives one feature per clip (mean of all tokens,
the dual encoder's video tower before ``vision_proj``); the frozen MiniLM gives one per caption (mean
pooling). Two fresh linear maps into a 128-d space are trained with VTC (:func:`vidfm.objectives.contrastive.
vtc_loss`, learnable temperature from 0.07 clamped to [0.001, 0.5] as UMT, batch 24, AdamW lr 5e-4, weight
decay 0.02: the ``umt_stage2:tiny`` settings) on the train split. Reported: test text->video R@1/R@10 and
median rank, with and without per-dimension standardisation of the video features (train mean/std).

    python benchmarks/umt_frozen_vtc.py --run runs/umt2 --data DIGITS/manifest.csv
"""

from __future__ import annotations

import argparse
import types

import torch
import torch.nn.functional as F

from vidfm.data.datasets import read_manifest
from vidfm.eval.retrieval import embed_videos
from vidfm.models.encoder import VideoEncoder
from vidfm.models.text import TextEncoderConfig
from vidfm.objectives.contrastive import clamp_temperature_, vtc_loss
from vidfm.recipes import load_run_config
from vidfm.train.checkpoint import load_model_weights
from vidfm.utils import setup_logging


@torch.no_grad()
def features(run: str, manifest: str, workers: int) -> tuple[dict, dict]:
    """({split: video features [N,D]}, {split: caption features [N,384]}) for train and test."""
    cfg = load_run_config(run)
    encoder = VideoEncoder(cfg.encoder)
    load_model_weights(run, encoder, prefix="encoder.")
    encoder.eval()
    tower = types.SimpleNamespace(
        size=cfg.augment.size,
        mean=cfg.augment.mean,
        std=cfg.augment.std,
        embed_video=lambda clip: encoder(clip).tokens.mean(1),  # [B,D]
    )
    text, tokenizer = TextEncoderConfig(trainable=False).build()
    text.eval()
    videos, captions = {}, {}
    for split in ("train", "test"):
        records = list(read_manifest(manifest, split=split, caption_column="caption"))
        videos[split] = embed_videos(tower, cfg, records, 32, workers, torch.device("cpu"), False)
        texts = [r.caption for r in records]
        batches = (tokenizer(texts[i : i + 256], device="cpu") for i in range(0, len(texts), 256))
        captions[split] = torch.cat([text(b["ids"], b["mask"]).pooled for b in batches])
    return videos, captions


def align(videos: dict, captions: dict, steps: int, seed: int) -> tuple[float, dict[str, float]]:
    """Train the two projections for ``steps``; (last train VTC, test t2v metrics)."""
    torch.manual_seed(seed)
    video_proj = torch.nn.Linear(videos["train"].shape[1], 128)
    text_proj = torch.nn.Linear(captions["train"].shape[1], 128)
    temp = torch.nn.Parameter(torch.tensor(0.07))
    params = [*video_proj.parameters(), *text_proj.parameters(), temp]
    opt = torch.optim.AdamW(params, lr=5e-4, weight_decay=0.02)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        i = torch.randperm(len(videos["train"]), generator=gen)[:24]
        loss = vtc_loss(video_proj(videos["train"][i]), text_proj(captions["train"][i]), temp)
        opt.zero_grad()
        loss.backward()
        opt.step()
        clamp_temperature_(temp)
    with torch.no_grad():
        sim = (
            F.normalize(text_proj(captions["test"]), dim=-1)
            @ F.normalize(video_proj(videos["test"]), dim=-1).t()
        )
        rank = (
            (sim >= sim.diag()[:, None]).sum(1).float()
        )  # caption j belongs to test video j; ties count against
    metrics = {
        "R@1": 100 * float((rank == 1).float().mean()),
        "R@10": 100 * float((rank <= 10).float().mean()),
    }
    metrics["MdR"] = float(rank.median())
    return loss.item(), metrics


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a vidfm run whose encoder is read (prefix encoder.)")
    p.add_argument(
        "--data", required=True, help="caption manifest with train/test splits, one caption per clip"
    )
    p.add_argument("--steps", type=int, nargs="+", default=[120, 2000])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    setup_logging()
    videos, captions = features(args.run, args.data, args.workers)
    mu, sd = videos["train"].mean(0), videos["train"].std(0) + 1e-6
    print("| video features | steps | train VTC | test t2v R@1 | R@10 | MdR |\n|---|---|---|---|---|---|")
    for name, v in (("raw", videos), ("standardised", {k: (x - mu) / sd for k, x in videos.items()})):
        for steps in args.steps:
            loss, m = align(v, captions, steps, args.seed)
            print(
                f"| {name} | {steps} | {loss:.3f} | {m['R@1']:.2f} | {m['R@10']:.2f} | {m['MdR']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
