"""Attentive against linear probing of frozen VideoMAE features: why VideoGLUE probes attentively.

A linear probe sees the mean of the tokens, which throws away where (and when) each token was; a motion
label lives exactly in that arrangement. The attentive (MAP) probe weighs tokens by content and position.
One token pass per encoder serves both: the cached tokens give the linear probe's and kNN's mean-pooled
features and the attentive probe's tokens. Prints one markdown row per encoder × label; not run by CI.

    python benchmarks/attentive_vs_linear.py --checkpoint runs/evaldemo/run --labels motion digit --random
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from vidfm.eval.attentive import AttentiveConfig, attentive_probe, split_tokens
from vidfm.eval.probes import knn_probe, linear_probe
from vidfm.eval.report import markdown_table
from vidfm.recipes import load_run_encoder
from vidfm.utils import default_device, setup_logging


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a VideoMAE run folder (e.g. the demo's OUT/run)")
    p.add_argument("--data", default=None, help="CSV manifest (default: the run's own data.manifest)")
    p.add_argument("--labels", nargs="+", default=["motion"])
    p.add_argument(
        "--random", action="store_true", help="also probe a random-init encoder of the same config"
    )
    p.add_argument("--epochs", type=int, default=AttentiveConfig.epochs)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    setup_logging()

    device = default_device()
    rows = []
    for random_init in [False, True] if args.random else [False]:
        encoder, cfg = load_run_encoder(args.checkpoint, random_init=random_init, seed=args.seed)
        data = dataclasses.replace(cfg.data, manifest=args.data or cfg.data.manifest)
        t0 = time.perf_counter()
        tok = split_tokens(encoder, data, cfg.augment, workers=args.workers, seed=args.seed, device=device)
        extract_s = time.perf_counter() - t0
        tr, te = tok["train"], tok["test"]
        name = f"{cfg.recipe} {'random init' if random_init else 'pre-trained'}"
        for label in args.labels:
            ytr, yte = tr.labels[label], te.labels[label]
            lin = linear_probe(tr.pooled, ytr, te.pooled, yte, seed=args.seed)
            knn = knn_probe(tr.pooled, ytr, te.pooled, yte)
            t1 = time.perf_counter()
            att = attentive_probe(
                tr.x, ytr, te.x, yte, AttentiveConfig(epochs=args.epochs, seed=args.seed), device=device
            )
            rows.append(
                [name, label, lin.top1, knn.top1, att.top1, att.detail, f"{time.perf_counter() - t1:.0f}"]
            )
            print(markdown_table(HEADER, rows[-1:]).splitlines()[-1], flush=True)
        print(f"({name}: token pass {extract_s:.0f} s, tokens {tuple(tr.x.shape)} float16)", flush=True)
    print()
    print(markdown_table(HEADER, rows))


HEADER = ["encoder", "label", "linear (mean) top-1", "kNN top-1", "attentive top-1", "attentive setting", "s"]

if __name__ == "__main__":
    main()
