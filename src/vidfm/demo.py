"""``vidfm demo``: the main job on the embedded digits-motion data, end to end on a laptop CPU.

1. make digits-motion (real H.264 clips of real handwritten digits, moving); 2. the headline: students
distilled from a real pretrained teacher, ImageNet EfficientNet-Lite0 (:mod:`vidfm.demo_distil`, two seeds);
3. pre-train a tiny VideoMAE and take the language route (:mod:`vidfm.demo_language`), both kept to show
the recipes run, and marked as not paying at CPU scale; 4. probe frozen features of every encoder, the
random-init encoder and the trivial baseline on ``digit`` (appearance) and ``motion`` (temporal); 5. print
the table (the headline first, one line per row saying what it is) and write a report folder.

A second demo into the same folder reuses what the first finished — data, teacher targets, trained runs and
probe results — and its notes say what it reused or added, so it prints the same rows in a fraction of the
time.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch

from vidfm.demo_stages import DemoConfig, probe_rows, train_stage
from vidfm.utils import cpu_seconds, default_device, log

# One line per row of the table: what the encoder is (printed under the table, in its order).
ROW_MEANING = {
    "UMT-style student of ImageNet EfficientNet-Lite0": "a ViT-T/8 student trained here for 100 steps to "
    "match a real pretrained CNN's feature map (umt:effnet, 4 frames); mean of 2 training seeds, ± its "
    "standard error; measured at CPU scale it does NOT yet beat its encoder at random init (README)",
    "random init, the student's encoder": "the headline students' encoder (ViT-T/8, 4 frames, tubelet 1) "
    "with random weights: the row the headline must beat",
    "random init": "the VideoMAE encoder (ViT-T/8, 16 frames, tubelet 2) with random weights: the row "
    "VideoMAE and the language route must beat",
    "trivial baseline": "colour histogram + frame differences, no learned encoder",
    "VideoMAE pre-trained": "videomae:tiny, 500 steps: does NOT pay at CPU scale (the official small-data "
    "schedule is 3,200 epochs; these are 5), kept to show the recipe runs",
    "UMT stage 1": "umt:tiny student of a clip_image teacher trained here from scratch: does not pay at CPU "
    "scale (its teacher knows little after 200 steps)",
    "UMT stage 2": "umt_stage2:tiny video-text alignment on top of stage 1: does not pay at CPU scale",
}


def row_meaning(name: str) -> str:
    """The one-line description of a table row (by the start of its encoder name)."""
    return next((text for key, text in ROW_MEANING.items() if name.startswith(key)), "")


def run_demo(demo: DemoConfig) -> str:
    """Run the whole demo; returns the markdown table (also written to ``OUT/report/results.md``)."""
    from vidfm.data.config import with_clip_store
    from vidfm.data.digits import make_digits_motion
    from vidfm.eval.report import plot_loss_curves, save_table
    from vidfm.models.encoder import VideoEncoder
    from vidfm.recipes.videomae import tiny
    from vidfm.train.checkpoint import load_model_weights

    start, cpu_start = time.perf_counter(), cpu_seconds()
    out = Path(demo.out)
    report = out / "report"
    report.mkdir(parents=True, exist_ok=True)
    device = default_device()
    data_dir = out / "digits-motion"
    manifest = data_dir / "manifest.csv"
    notes: list[str] = []
    if manifest.exists():
        notes.append(f"digits-motion: reused the clips in {data_dir}")
    else:
        log.info("writing digits-motion (%d clips) to %s", demo.clips, data_dir)
        manifest = make_digits_motion(data_dir, n=demo.clips, seed=demo.seed, workers=demo.workers)
    rows: list[list] = []
    seeds = tuple(range(demo.seed, demo.seed + 2))  # the headline students' training seeds
    if demo.distil:
        from vidfm.demo_distil import distil_rows

        distil, distil_notes = distil_rows(manifest, out, demo, seeds=seeds)
        rows += distil
        notes += distil_notes
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
    if train_stage(cfg, run_dir)[1]:
        notes.append(f"VideoMAE: reused the finished run in {run_dir} (remove it to train again)")

    torch.manual_seed(demo.seed)
    random_encoder = VideoEncoder(cfg.encoder)
    task = cfg.build_task()
    load_model_weights(run_dir, task)
    single = [
        r[:3] + ["1 seed"] + r[3:]
        for r in baseline_rows(demo, cfg, manifest, random_encoder, task, run_dir, notes)
    ]
    rows += single
    curves = {"VideoMAE": run_dir / "metrics.jsonl"}
    curves.update({f"EfficientNet student, seed {s}": out / f"effnet-s{s}" / "metrics.jsonl" for s in seeds})
    if demo.language:
        from vidfm.demo_language import language_rows

        lang_rows, lang_notes = language_rows(
            manifest, out, demo, budget_s=demo.language_budget_s, steps=demo.language_steps
        )
        rows += [r[:3] + ["1 seed"] + r[3:] for r in lang_rows]
        notes += lang_notes
        stages = {"clip_image teacher": "clip", "UMT stage 1": "umt", "UMT stage 2": "umt2"}
        curves.update({name: out / folder / "metrics.jsonl" for name, folder in stages.items()})
    header = ["encoder", "label", "linear top-1", "± (seeds)", "kNN top-1"]
    table = save_table(header, rows, report / "results.md", report / "results.csv")
    meanings = [f"{name}: {row_meaning(name)}" for name in dict.fromkeys(r[0] for r in rows)]
    table += "\n\n" + "".join(f"- {line}\n" for line in meanings)
    with open(report / "results.md", "a") as f:
        f.write("\n" + "".join(f"- {line}\n" for line in meanings + notes))
    curves = {name: path for name, path in curves.items() if path.exists()}
    plot_loss_curves(curves, report / "loss.png")
    save_reconstruction(task, cfg, manifest, report / "reconstruction.png", demo.seed, device)
    elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
    summary = {"seconds": elapsed, "cpu_seconds": cpu, "steps": train.steps, "notes": notes}
    (report / "summary.json").write_text(json.dumps(summary, indent=2))
    table += "".join(f"\n- {line}" for line in notes)
    return table + (
        f"\n\n(chance: digit 0.100, motion 0.125; {elapsed / 60:.1f} min wall, {cpu / 60:.1f} min CPU; "
        f"report in {report})"
    )


def baseline_rows(
    demo: DemoConfig,
    cfg: Any,
    manifest: Path,
    random_encoder: torch.nn.Module,
    task: Any,
    run_dir: Path,
    notes: list[str],
) -> list[list]:
    """The single-seed rows every demo has: random init, the trivial baseline, VideoMAE."""
    rows = probe_rows("random init", random_encoder, cfg, manifest, demo, notes=notes)
    trivial = "trivial baseline (colour histogram + frame differences)"
    rows += probe_rows(trivial, None, cfg, manifest, demo, notes=notes)
    rows += probe_rows(
        "VideoMAE pre-trained", task.encoder, cfg, manifest, demo, weights=run_dir, notes=notes
    )
    return rows


@torch.no_grad()
def save_reconstruction(task, cfg, manifest: Path, out: Path, seed: int, device: torch.device) -> None:
    """One test clip: the input, what the encoder saw (masked tubes grey), and the decoder's reconstruction."""
    from vidfm.data.config import build_dataset
    from vidfm.eval.report import plot_reconstruction
    from vidfm.masking import make_mask
    from vidfm.objectives.pixel import patchify, unpatchify
    from vidfm.utils import make_generator

    task = task.eval().to(device)
    item = build_dataset(
        dataclasses.replace(cfg.data, manifest=str(manifest)), seed=seed, split="test", train=False
    )[0]
    clip = task.augment(item["video"][None].to(device), train=False)  # [1,C,T,H,W] in [0, 1]
    g = make_generator(seed, 0, device="cpu")
    mask = make_mask(cfg.mask, 1, task.encoder.grid, g, torch.device("cpu"))
    mask.visible, mask.masked = mask.visible.to(device), mask.masked.to(device)
    pred, _ = task.reconstruct(clip, mask)  # [1,Nm,P·C] in per-patch normalised units
    t, p = cfg.encoder.tubelet, task.encoder.patch
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
        caption=f"A test clip of digits-motion. Row 1: the clip. Row 2: what the encoder saw, {cfg.mask.kind} "
        f"masking with {cfg.mask.ratio:.0%} of the {t}x{p}x{p} tubes masked (grey). Row 3: the visible tubes as "
        "given and the masked ones as the pre-trained decoder predicts them.",
    )


def _idx(index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[B,K] token index expanded to gather/scatter along dim 1 of ``like`` [B,N,...]."""
    return index.view(*index.shape, *([1] * (like.ndim - 2))).expand(-1, -1, *like.shape[2:])
