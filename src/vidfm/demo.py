"""``vidfm demo``: the main job on the embedded digits-motion data, end to end on a laptop CPU.

1. make digits-motion (real H.264 clips of real handwritten digits, moving), 2. pre-train a tiny VideoMAE,
3. probe frozen features of the random-init and the pre-trained encoder on ``digit`` (appearance) and
``motion`` (temporal), 4. print the table and write a report folder (table, loss curve, reconstruction).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import torch

from vidfm.demo_stages import DemoConfig, probe_rows, train_stage
from vidfm.utils import default_device, log


def run_demo(demo: DemoConfig) -> str:
    """Run the whole demo; returns the markdown table (also written to ``OUT/report/results.md``)."""
    from vidfm.data.config import with_clip_store
    from vidfm.data.digits import make_digits_motion
    from vidfm.eval.report import plot_loss_curves, save_table
    from vidfm.models.encoder import VideoEncoder
    from vidfm.recipes.videomae import tiny
    from vidfm.train.checkpoint import load_model_weights

    start = time.perf_counter()
    out = Path(demo.out)
    report = out / "report"
    report.mkdir(parents=True, exist_ok=True)
    device = default_device()
    data_dir = out / "digits-motion"
    manifest = data_dir / "manifest.csv"
    if not manifest.exists():
        log.info("writing digits-motion (%d clips) to %s", demo.clips, data_dir)
        manifest = make_digits_motion(data_dir, n=demo.clips, seed=demo.seed, workers=demo.workers)
    cfg = tiny()
    data = dataclasses.replace(cfg.data, manifest=str(manifest))
    # Decoded once into a clip store: pre-training epochs, probes and the picture all read it.
    data = with_clip_store(data, str(out / "clips"), workers=demo.workers)
    cfg = dataclasses.replace(cfg, data=data)
    train = dataclasses.replace(cfg.train, seed=demo.seed, workers=demo.workers)
    if demo.steps is not None:
        train = dataclasses.replace(
            train, steps=demo.steps, warmup_steps=min(train.warmup_steps, demo.steps // 10)
        )
    cfg = dataclasses.replace(cfg, train=train)
    run_dir = out / "run"
    log.info(
        "pre-training VideoMAE (%s, depth %s) for %d steps", cfg.encoder.size, cfg.encoder.depth, train.steps
    )
    notes: list[str] = []
    if train_stage(cfg, run_dir)[1]:
        notes.append(f"VideoMAE: reused the finished run in {run_dir} (remove it to train again)")

    torch.manual_seed(demo.seed)
    random_encoder = VideoEncoder(cfg.encoder)
    task = cfg.build_task()
    load_model_weights(run_dir, task)
    rows = probe_rows("trivial baseline (colour histogram + frame differences)", None, cfg, manifest, demo)
    rows += probe_rows("random init", random_encoder, cfg, manifest, demo)
    rows += probe_rows("VideoMAE pre-trained", task.encoder, cfg, manifest, demo)
    curves = {"VideoMAE": run_dir / "metrics.jsonl"}
    if demo.language:
        from vidfm.demo_language import language_rows

        lang_rows, lang_notes = language_rows(
            manifest, out, demo, budget_s=demo.language_budget_s, steps=demo.language_steps
        )
        rows += lang_rows
        notes += lang_notes
        stages = {"clip_image teacher": "clip", "UMT stage 1": "umt", "UMT stage 2": "umt2"}
        curves.update({name: out / folder / "metrics.jsonl" for name, folder in stages.items()})
    header = ["encoder", "label", "linear top-1", "kNN top-1"]
    table = save_table(header, rows, report / "results.md", report / "results.csv")
    if notes:
        with open(report / "results.md", "a") as f:
            f.write("\n" + "".join(f"- {line}\n" for line in notes))
    curves = {name: path for name, path in curves.items() if path.exists()}
    plot_loss_curves(curves, report / "loss.png")
    save_reconstruction(task, cfg, manifest, report / "reconstruction.png", demo.seed, device)
    elapsed = time.perf_counter() - start
    summary = {"seconds": elapsed, "steps": train.steps, "notes": notes}
    (report / "summary.json").write_text(json.dumps(summary, indent=2))
    table += "".join(f"\n- {line}" for line in notes)
    return table + f"\n\n(chance: digit 0.100, motion 0.125; {elapsed / 60:.1f} min; report in {report})"


@torch.no_grad()
def save_reconstruction(task, cfg, manifest: Path, out: Path, seed: int, device: torch.device) -> None:
    """One test clip: the input, what the encoder saw (masked tubes grey), and the decoder's reconstruction."""
    from vidfm.data.config import build_dataset
    from vidfm.eval.report import plot_reconstruction, to_unit_range
    from vidfm.masking import make_mask
    from vidfm.objectives.pixel import patchify, unpatchify
    from vidfm.utils import make_generator

    task = task.eval().to(device)
    item = build_dataset(
        dataclasses.replace(cfg.data, manifest=str(manifest)), seed=seed, split="test", train=False
    )[0]
    video = task.augment(item["video"][None].to(device), train=False)  # [1,C,T,H,W]
    g = make_generator(seed, 0, device="cpu")
    mask = make_mask(cfg.mask, 1, task.encoder.grid, g, torch.device("cpu"))
    mask.visible, mask.masked = mask.visible.to(device), mask.masked.to(device)
    pred, _ = task.reconstruct(video, mask)  # [1,Nm,P·C] in per-patch normalised units
    t, p = cfg.encoder.tubelet, task.encoder.patch
    clip = to_unit_range(video[0], task.mean, task.std)[None]  # [1,C,T,H,W]
    patches = patchify(clip, t, p)  # [1,N,P,C]
    if task.normalize_target:  # undo the per-patch normalisation with the true patch statistics
        mu, sd = patches.mean(-2, keepdim=True), patches.var(-2, keepdim=True).sqrt() + task.target_eps
        pred = pred.view(1, -1, patches.shape[2], patches.shape[3])
        pred = pred * torch.gather(sd, 1, _idx(mask.masked, sd)) + torch.gather(mu, 1, _idx(mask.masked, mu))
    recon, masked_view = patches.clone(), patches.clone()
    recon.scatter_(1, _idx(mask.masked, patches), pred.view(1, -1, patches.shape[2], patches.shape[3]))
    masked_view.scatter_(1, _idx(mask.masked, patches), 0.5)  # masked tubelets shown grey
    grid = task.encoder.grid
    plot_reconstruction(
        {
            "clip": clip[0],
            "encoder input": unpatchify(masked_view.flatten(2), grid, t, p)[0],
            "reconstruction": unpatchify(recon.flatten(2), grid, t, p)[0],
        },
        out,
    )


def _idx(index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[B,K] token index expanded to gather/scatter along dim 1 of ``like`` [B,N,...]."""
    return index.view(*index.shape, *([1] * (like.ndim - 2))).expand(-1, -1, *like.shape[2:])
