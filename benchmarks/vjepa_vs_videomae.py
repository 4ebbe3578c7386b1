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
--steps 2000 --workers 8 --attentive-epochs 20 --match wall`` (the trainer and the probes use CUDA when present;
``--match wall`` because process CPU time does not count GPU work).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
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


def decoded(data: DataConfig, size: int, cache: Path) -> dict[str, list[dict]]:
    """Every clip of the train and test splits (centred test clip, square crop), decoded once into ``cache``
    and read from there by every later probe phase."""
    if cache.exists():
        return torch.load(cache, weights_only=False)
    data = dataclasses.replace(data, short_side=size)
    out = {}
    for split in ("train", "test"):
        ds = build_dataset(data, seed=0, split=split, views=1, train=False, crop_square=True)
        out[split] = [ds[i] for i in range(len(ds))]
    tmp = cache.with_suffix(f".tmp{os.getpid()}")
    torch.save(out, tmp)
    os.replace(tmp, cache)  # atomic: phases in other processes read a complete file or decode themselves
    return out


def probe_rows(name: str, cost: dict, encoder, augment, sets: dict, labels: dict, att, device) -> list:  # noqa: ANN001
    """Linear and attentive top-1 of a frozen encoder on every (data set, label)."""
    rows = []
    for data_name, clips in sets.items():
        tok = {s: extract_tokens(encoder, clips[s], augment, device=device, progress=False) for s in clips}
        tr, te = tok["train"], tok["test"]
        for label in labels[data_name]:
            lin = linear_probe(tr.pooled, tr.labels[label], te.pooled, te.labels[label]).top1
            a = attentive_probe(tr.x, tr.labels[label], te.x, te.labels[label], att, device=device)
            rows.append([name, cost["steps"], cost["wall"], cost["cpu"], data_name, label, lin, a.top1])
            print(markdown_table(HEADER, rows[-1:]).splitlines()[-1], f"({a.detail})", flush=True)
    return rows


def baseline_rows(sets: dict, labels: dict) -> list:
    """The trivial baseline: linear only (there are no tokens to attend over)."""
    rows = []
    for data_name, clips in sets.items():
        feats = {s: extract_trivial(clips[s], progress=False) for s in clips}
        for label in labels[data_name]:
            tr, te = feats["train"], feats["test"]
            lin = linear_probe(tr.x, tr.labels[label], te.x, te.labels[label]).top1
            rows.append(["trivial baseline", "-", "-", "-", data_name, label, lin, "n/a"])
    return rows


# Phases in order; each keeps its result in --out and is skipped when done.
TRAIN = ["videomae", "vjepa", "vjepa_time"]
PROBE = ["baseline", "random", "probe_videomae", "probe_vjepa", "probe_vjepa_time"]
ENCODERS = {  # probe phase -> (row name, run folder, random init)
    "random": ("random init", "videomae", True),
    "probe_videomae": ("VideoMAE", "videomae", False),
    "probe_vjepa": ("V-JEPA (equal steps)", "vjepa", False),
    "probe_vjepa_time": ("V-JEPA (equal time)", "vjepa_time", False),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/vjepa_bench")
    p.add_argument("--clips", type=int, default=1000, help="digits-motion clips (80%% train)")
    p.add_argument(
        "--manifest", default=None, help="an existing digits-motion manifest (default: made in --out)"
    )
    p.add_argument("--surv", default=str(SURV), help="surv_fight manifest ('' to skip)")
    p.add_argument(
        "--sets",
        nargs="+",
        choices=["digits-motion", "surv_fight"],
        default=["digits-motion", "surv_fight"],
        help="data sets a probe phase covers (one phase can run as one process per set)",
    )
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
        choices=[*TRAIN, *PROBE, "report"],
        default=None,
        help="one phase (phases in separate processes run side by side); default: all in order",
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
    phases = [args.only] if args.only else [*TRAIN, *PROBE, "report"]
    for phase in [ph for ph in phases if ph in TRAIN]:
        if phase == "vjepa_time":
            vmae, vj = (json.loads((out / n / "cost.json").read_text()) for n in ("videomae", "vjepa"))
            # Equal time: the V-JEPA steps that fit in VideoMAE's training time at V-JEPA's measured step time.
            steps = max(1, round(args.steps * vmae[f"{args.match}_s"] / vj[f"{args.match}_s"]))
        else:
            steps = args.steps
        train(phase, "vjepa:tiny" if phase.startswith("vjepa") else "videomae:tiny", steps, common, out)

    cfg = get_recipe("videomae:tiny")
    data = dataclasses.replace(cfg.data, manifest=str(manifest))
    (out / "probes").mkdir(parents=True, exist_ok=True)
    names = [n for n in args.sets if args.surv or n != "surv_fight"]
    labels = {n: {"digits-motion": ["digit", "motion"], "surv_fight": ["label"]}[n] for n in names}
    for phase in [ph for ph in phases if ph in PROBE]:
        result = out / "probes" / f"{phase}.{'+'.join(names)}.json"
        if result.exists():
            continue
        sets = {}
        if "digits-motion" in names:
            sets["digits-motion"] = decoded(data, cfg.augment.size, out / "digits_clips.pt")
        if "surv_fight" in names:
            surv = dataclasses.replace(data, manifest=args.surv)
            sets["surv_fight"] = decoded(surv, cfg.augment.size, out / "surv_clips.pt")
        if phase == "baseline":
            rows = baseline_rows(sets, labels)
        else:
            name, run, random_init = ENCODERS[phase]
            encoder, run_cfg = load_run_encoder(out / run, random_init=random_init, seed=args.seed)
            c = {} if random_init else json.loads((out / run / "cost.json").read_text())
            cost = {
                "steps": c.get("steps", 0),
                "wall": round(c.get("wall_s", 0)),
                "cpu": round(c.get("cpu_s", 0)),
            }
            att = AttentiveConfig(epochs=args.attentive_epochs, seed=args.seed)
            rows = probe_rows(
                name, cost, encoder.to(device).eval(), run_cfg.augment, sets, labels, att, device
            )
        result.write_text(json.dumps(rows))
    if "report" in phases:
        rows = [
            r
            for ph in PROBE
            for f in sorted((out / "probes").glob(f"{ph}.*json"))
            for r in json.loads(f.read_text())
        ]
        table = markdown_table(HEADER, rows)
        (out / "results.md").write_text(table + "\n")
        print(f"\n{table}\n\ndevice: {device}; torch threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
