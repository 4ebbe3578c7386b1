"""V-JEPA against VideoMAE at equal steps and equal training time: frozen linear and attentive probes.

Both pre-train the same 4-block ViT-T/8 at 16×64² (512 tokens per clip) on the train split of digits-motion:

- VideoMAE: ``videomae:tiny`` (tube mask 0.9, pixel decoder of depth 2, normalised-pixel MSE);
- V-JEPA: ``vjepa:tiny`` (short- and long-range multi-block masks, predictor of depth 2, L1 on the layer-normalised
  tokens of the EMA target encoder; the target encoder is the one probed, as V-JEPA evaluates it).

Runs: VideoMAE and V-JEPA for ``--steps`` each (equal steps), then V-JEPA for as many steps as fit in
VideoMAE's training time (equal time; its own full schedule, not a cut of the longer run). Time is process CPU
seconds by default (``--match cpu``): training runs in one process with one thread and in-process decoding
(``--workers 0``), so on an idle machine it equals wall-clock, while on a shared one wall-clock mostly measures
the neighbours; ``--match wall`` matches wall-clock instead. Both are reported.
Each encoder, a random-init one and the trivial baseline (colour histogram + frame differences) are probed
frozen: linear (logistic regression on mean-pooled tokens, C chosen on a held-out fold of train) and attentive
(MAP head on the tokens, ``vidfm.eval.attentive``), on ``digit`` and ``motion`` of digits-motion and on
``label`` of surv_fight (encoders pre-trained on digits-motion only: surv_fight measures transfer). Clips are
decoded once per data set and shared by every encoder. Every phase is kept in ``--out`` and skipped when
done, so an interrupted run continues. Not run by CI. The run in docs/vjepa.md:

    OMP_NUM_THREADS=1 python benchmarks/vjepa_vs_videomae.py --out runs/vjepa_bench --clips 1000 --steps 150

GPU (prepared, not measured here): ``python benchmarks/vjepa_vs_videomae.py --out runs/vjepa_gpu --clips 3000
--steps 2000 --workers 8 --attentive-epochs 20`` (the trainer and the probes use CUDA when present).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch
from common import digits_manifest

from vidfm.config import apply_overrides
from vidfm.data.config import DataConfig, build_dataset
from vidfm.eval.attentive import AttentiveConfig, attentive_probe, extract_tokens
from vidfm.eval.baselines import extract_trivial
from vidfm.eval.probes import linear_probe
from vidfm.eval.report import markdown_table
from vidfm.recipes import get_recipe, load_run_encoder
from vidfm.train.pretrain import pretrain
from vidfm.utils import default_device, setup_logging

SURV = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "surv_fight" / "manifest.csv"
HEADER = [
    "encoder",
    "steps",
    "train wall s",
    "train CPU s",
    "data",
    "label",
    "linear top-1",
    "attentive top-1",
]


def train(name: str, spec: str, steps: int, common: list[str], out: Path) -> dict:
    """Pre-train ``spec`` for ``steps`` into ``out/name`` (skipped when done); returns its cost record."""
    run, cost = out / name, out / name / "cost.json"
    if cost.exists():
        return json.loads(cost.read_text())
    cfg = apply_overrides(get_recipe(spec), [*common, f"train.steps={steps}"])
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, warmup_steps=max(1, steps // 10)))
    wall0, cpu0 = time.perf_counter(), time.process_time()
    summary = pretrain(cfg, run)
    record = {
        "steps": steps,
        "wall_s": time.perf_counter() - wall0,
        "cpu_s": time.process_time() - cpu0,
        "loss": summary["loss"],
        "resumed": summary["resumed"],  # a resumed run's cost covers only its last part
    }
    cost.write_text(json.dumps(record))
    return record


def decoded(data: DataConfig, size: int) -> dict[str, list[dict]]:
    """Every clip of the train and test splits, decoded once (centred test clip, square crop)."""
    data = dataclasses.replace(data, short_side=size)
    out = {}
    for split in ("train", "test"):
        ds = build_dataset(data, seed=0, split=split, views=1, train=False, crop_square=True)
        out[split] = [ds[i] for i in range(len(ds))]
    return out


def probe_rows(
    name: str, cost: dict, encoder, augment, sets: dict, labels: dict, att: AttentiveConfig, device
) -> list:  # noqa: ANN001
    rows = []
    for data_name, clips in sets.items():
        tok = {s: extract_tokens(encoder, clips[s], augment, device=device, progress=False) for s in clips}
        tr, te = tok["train"], tok["test"]
        for label in labels[data_name]:
            lin = linear_probe(tr.pooled, tr.labels[label], te.pooled, te.labels[label]).top1
            a = attentive_probe(tr.x, tr.labels[label], te.x, te.labels[label], att, device=device)
            rows.append(
                [
                    name,
                    cost.get("steps", 0),
                    cost.get("wall", "-"),
                    cost.get("cpu", "-"),
                    data_name,
                    label,
                    lin,
                    a.top1,
                ]
            )
            print(markdown_table(HEADER, rows[-1:]).splitlines()[-1], f"({a.detail})", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/vjepa_bench")
    p.add_argument("--clips", type=int, default=1000, help="digits-motion clips (80%% train)")
    p.add_argument(
        "--manifest", default=None, help="an existing digits-motion manifest (default: made in --out)"
    )
    p.add_argument("--surv", default=str(SURV), help="surv_fight manifest ('' to skip)")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--workers", type=int, default=0, help="decoding processes while training")
    p.add_argument(
        "--match",
        choices=["cpu", "wall"],
        default="cpu",
        help="time matched for the equal-time run: process CPU seconds (robust on a shared machine, equal "
        "to wall with one thread on an idle one) or wall-clock seconds",
    )
    p.add_argument("--attentive-epochs", type=int, default=10)
    p.add_argument(
        "--only",
        choices=["videomae", "vjepa", "train", "probe"],
        default=None,
        help="one phase (e.g. the two equal-step runs in two processes); default: all in order",
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    setup_logging()
    out, device = Path(args.out), default_device()
    manifest = digits_manifest(out, args.manifest, args.clips, args.seed)
    common = [
        f"data.manifest={manifest}",
        f"train.workers={args.workers}",
        "train.progress=false",
        f"train.seed={args.seed}",
        "train.ckpt_every=0",
        "train.log_every=10",
    ]
    if args.only in (None, "videomae", "train"):
        train("videomae", "videomae:tiny", args.steps, common, out)
    if args.only in (None, "vjepa", "train"):
        train("vjepa", "vjepa:tiny", args.steps, common, out)
    if args.only in ("videomae", "vjepa"):
        return
    vmae, vj = (json.loads((out / n / "cost.json").read_text()) for n in ("videomae", "vjepa"))
    # Equal time: the V-JEPA steps that fit in VideoMAE's training time at V-JEPA's measured step time.
    key = f"{args.match}_s"
    time_steps = max(1, round(args.steps * vmae[key] / vj[key]))
    vj_time = train("vjepa_time", "vjepa:tiny", time_steps, common, out)
    if args.only == "train":
        return

    cfg = get_recipe("videomae:tiny")
    data = dataclasses.replace(cfg.data, manifest=str(manifest))
    sets = {"digits-motion": decoded(data, cfg.augment.size)}
    labels = {"digits-motion": ["digit", "motion"]}
    if args.surv:
        sets["surv_fight"] = decoded(dataclasses.replace(data, manifest=args.surv), cfg.augment.size)
        labels["surv_fight"] = ["label"]
    att = AttentiveConfig(epochs=args.attentive_epochs, seed=args.seed)
    rows = []
    for data_name, clips in sets.items():  # the trivial baseline: linear only (no tokens to attend over)
        feats = {s: extract_trivial(clips[s], progress=False) for s in clips}
        for label in labels[data_name]:
            lin = linear_probe(
                feats["train"].x, feats["train"].labels[label], feats["test"].x, feats["test"].labels[label]
            )
            rows.append(["trivial baseline", "-", "-", "-", data_name, label, lin.top1, "n/a"])
    encoders = [
        ("random init", out / "videomae", True, {}),
        ("VideoMAE", out / "videomae", False, vmae),
        ("V-JEPA (equal steps)", out / "vjepa", False, vj),
        ("V-JEPA (equal time)", out / "vjepa_time", False, vj_time),
    ]
    for name, run, random_init, cost in encoders:
        encoder, run_cfg = load_run_encoder(run, random_init=random_init, seed=args.seed)
        cost = {
            "steps": cost.get("steps", 0),
            "wall": round(cost.get("wall_s", 0)),
            "cpu": round(cost.get("cpu_s", 0)),
        }
        rows += probe_rows(name, cost, encoder.to(device).eval(), run_cfg.augment, sets, labels, att, device)
    table = markdown_table(HEADER, rows)
    (out / "results.md").write_text(table + "\n")
    tests = ", ".join(f"{k} {len(v['test'])}" for k, v in sets.items())
    print(f"\n{table}\n\ndevice: {device}; torch threads {torch.get_num_threads()}; test clips: {tests}")


if __name__ == "__main__":
    main()
