"""Video-LaVIT motion tokenizer: reconstruction and codebook use against codebook size; tokens per second.

For each codebook size, a small motion VQ-VAE (``motion_vq`` recipe, stage ``motion``) trains on the train
split and is measured on the test split:

- ``mse``: mean squared error of the reconstructed motion field, in the official units (pixels / frame
  size / (std / 10)); ``rel`` = mse / mean square of the field (the error of predicting no motion is 1);
- ``perplexity``: exp(entropy) of the code histogram over all test tokens; ``used``: codes used at least once.

Data: digits-motion (16-frame 64² H.264 clips, 4 x 4 macroblocks, 8 tokens per clip; generated into
``--out``) and ``../shared/data/surv_fight`` (re-encoded in-process to MPEG-4 Part 2 with GOP 12; the clips
last about 2 s, so 24-frame clips are taken at 12 fps rather than the official 6, which would leave half of
every clip padding; 8 x 16 macroblocks, 24 tokens per clip).

Last, tokens per second of the interleaved sequence against one token per patch per frame (a per-frame ViT),
for the official layout and for the measured clips.

``--parts fixes`` trains the digits-motion VQ-VAE once per ``--fix NAME=KEY=VALUE,...`` (recipe overrides)
and seed, to find which change takes it off its zero-motion plateau; besides the columns above it prints
``motion from tokens``: a linear probe of the manifest's ``motion`` class from the test clips' token ids
(one-hot, position x code), what a language model reading the tokens could know.

    python benchmarks/lavit_tokenizer.py --out runs/lavit_tokenizer            # ~3 h on 2 busy CPU cores
    python benchmarks/lavit_tokenizer.py --out runs/lt --parts surv rates --surv-sizes 64 --surv-steps 20
    python benchmarks/lavit_tokenizer.py --out runs/fix --parts fixes --manifest DIGITS/manifest.csv \
        --fix default= --fix beta-0.25=beta=0.25 --fix lr-3e-4=train.lr=3e-4 --seeds 0 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from common import clip_labels, print_table

SURV = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "surv_fight"


def digits_config(
    manifest: Path, codes: int, steps: int, cache: Path | None = None, overrides: tuple[str, ...] = ()
):
    from vidfm.config import apply_overrides
    from vidfm.recipes.motion_vq import config

    return apply_overrides(
        config("tiny"),
        [f"data.manifest={manifest}", f"motion.quantizer.num_codes={codes}", f"train.steps={steps}",
         "train.progress=false", f"train.warmup_steps={steps // 20}",
         *([f"data.cache_dir={cache}"] if cache else []), *overrides],
    )  # fmt: skip


def surv_config(codes: int, steps: int, cache: Path, batch: int):
    from vidfm.lavit.clips import ClipConfig
    from vidfm.recipes.motion_vq import config, tiny_motion

    cfg = config("tiny")
    clips = ClipConfig(clip_frames=24, fps=12.0, gop=12, min_frames=12, keyframe_size=64)
    motion = dataclasses.replace(
        tiny_motion(codes), num_frames=24, grid=(8, 16), strides=((1, 2, 2), (2, 1, 1), (2, 1, 1), (2, 2, 2)),
        stage_depths=(1, 1, 1, 1),
    )  # fmt: skip
    data = dataclasses.replace(cfg.data, manifest=str(SURV / "manifest.csv"), clips=clips, grid=(8, 16),
                               cache_dir=str(cache))  # fmt: skip
    train = dataclasses.replace(
        cfg.train, steps=steps, batch_size=batch, warmup_steps=steps // 20, progress=False
    )
    return dataclasses.replace(cfg, data=data, motion=motion, train=train)


@torch.no_grad()
def evaluate(run_dir: Path, test) -> dict:
    """Reconstruction error and code statistics of a run's VQ-VAE on a ClipDataset."""
    from vidfm.tasks.detokenizer import load_motion_vq

    model = load_motion_vq(str(run_dir))
    k = model.cfg.quantizer.num_codes
    se = sq = count = 0.0
    hist = torch.zeros(k)
    for s in range(0, len(test), 64):
        x = test.motion[s : s + 64]
        out = model(x)
        se += float((out.recon - x).pow(2).sum())
        sq += float(x.pow(2).sum())
        count += x.numel()
        hist += torch.bincount(out.quant.indices.flatten(), minlength=k).float()
    p = hist / hist.sum()
    return {
        "codes": k,
        "mse": se / count,
        "rel": se / max(sq, 1e-12),
        "perplexity": float(torch.exp(-(p * p.clamp_min(1e-12).log()).sum())),
        "used": int((hist > 0).sum()),
        "tokens_per_clip": math.prod(model.tokens_grid),
    }


def sweep(name: str, make, sizes: list[int], out: Path, evaluate_only: bool = False) -> list[dict]:
    """Train (or, with ``evaluate_only``, only measure the finished runs ``OUT/{name}_k{codes}``) and
    evaluate each codebook size on the test split of the run's own data."""
    from vidfm.recipes import load_run_config
    from vidfm.train.pretrain import pretrain as train

    rows, test = [], None
    for codes in sizes:
        run = out / f"{name}_k{codes}"
        t0 = time.perf_counter()
        if evaluate_only:
            cfg = load_run_config(run)
            steps = int((run / "checkpoints" / "latest").read_text().strip().rpartition("_")[2])
        else:
            cfg = make(codes)
            steps = train(cfg, run)["step"]
        train_s = None if evaluate_only else time.perf_counter() - t0
        if test is None:
            test = cfg.build_dataset(split="test")
            print(f"{name}: {len(test)} test clips", flush=True)
        row = {"data": name, **evaluate(run, test), "train_s": train_s, "steps": steps}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def motion_from_tokens(run_dir: Path, train, test, manifest: Path) -> float:
    """Linear-probe accuracy of the manifest's ``motion`` class from one-hot token ids (test split)."""
    from vidfm.eval.probes import linear_probe
    from vidfm.tasks.detokenizer import load_motion_vq

    model = load_motion_vq(str(run_dir))

    def features(ds) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            ids = torch.cat([model.tokenize(ds.motion[s : s + 256]) for s in range(0, len(ds), 256)])
        k = model.cfg.quantizer.num_codes
        x = torch.nn.functional.one_hot(ids, k).flatten(1).float().numpy()  # [N, tokens * codes]
        return x, clip_labels(ds, manifest, "motion")

    (xa, ya), (xb, yb) = features(train), features(test)
    return linear_probe(xa, ya, xb, yb).top1


def fix_sweep(
    manifest: Path, fixes: list[str], seeds: list[int], codes: int, steps: int, out: Path, cache: Path
) -> list[dict]:
    """One digits-motion run per ``NAME=KEY=VALUE,...`` fix and seed; each measured on the test split."""
    from vidfm.train.pretrain import pretrain as train

    rows, data = [], None
    for fix in fixes:
        name, _, spec = fix.partition("=")
        overrides = tuple(o for o in spec.split(",") if o)
        for seed in seeds:
            cfg = digits_config(manifest, codes, steps, cache, (*overrides, f"train.seed={seed}"))
            run = out / f"fix_{name}_s{seed}"
            t0 = time.perf_counter()
            steps_done = train(cfg, run)["step"]
            train_s = time.perf_counter() - t0
            if data is None:
                data = {s: cfg.build_dataset(split=s) for s in ("train", "test")}
            row = {"data": "digits", "fix": name, "seed": seed, **evaluate(run, data["test"]),
                   "motion_acc": motion_from_tokens(run, data["train"], data["test"], manifest),
                   "train_s": train_s, "steps": steps_done}  # fmt: skip
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def token_rates(out: Path) -> list[dict]:
    """Interleaved tokens per second against one token per patch per frame."""
    from vidfm.lavit.clips import ClipConfig
    from vidfm.lavit.dataset import ClipDataset

    rows = []
    # Official layout: 24 frames at 6 fps = 4 s per clip; 135 motion tokens; visual tokens: our keyframe
    # tokenizer gives one per 16-pixel patch of a 224² keyframe (LaVIT's dynamic tokenizer keeps fewer).
    official = 196 + 135 + 4
    rows.append({"setting": "official layout (224², 24 f @ 6 fps)", "tokens_per_clip": official,
                 "seconds_per_clip": 4.0, "lavit_tok_s": official / 4.0,
                 "vit_tok_s_6fps": 196 * 6.0, "vit_tok_s_source": None})  # fmt: skip
    # digits-motion, tiny tokenizers: 64 visual (64² / 8²) + 8 motion + 4 per 16-frame clip at 8 fps.
    tiny = 64 + 8 + 4
    rows.append({"setting": "digits tiny (64², 16 f @ 8 fps)", "tokens_per_clip": tiny, "seconds_per_clip": 2.0,
                 "lavit_tok_s": tiny / 2.0, "vit_tok_s_6fps": 64 * 6.0, "vit_tok_s_source": 64 * 8.0})  # fmt: skip
    # surv_fight as prepared with the official 6-fps setting: every clip counts its full token budget,
    # seconds are the frames it really covers.
    records = sorted({str(p) for p in SURV.glob("*/*.mp4")})
    ds = ClipDataset(records, ClipConfig(keyframe_size=32), (20, 36), str(out / "cache_official"), workers=0)
    secs = float(ds.num_frames.sum()) / 6.0
    lavit = len(ds) * official / secs
    from vidfm.data.decode import probe

    src_fps = float(np.mean([probe(p).fps for p in records[:20]]))
    rows.append({"setting": f"surv_fight official ({len(ds)} clips, {secs:.0f} s)", "tokens_per_clip": official,
                 "seconds_per_clip": secs / len(ds), "lavit_tok_s": lavit, "vit_tok_s_6fps": 196 * 6.0,
                 "vit_tok_s_source": 196 * src_fps})  # fmt: skip
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/lavit_tokenizer"))
    p.add_argument("--sizes", type=int, nargs="+", default=[16, 64, 256, 1024])
    p.add_argument("--surv-sizes", type=int, nargs="+", default=[64, 256, 1024])
    p.add_argument("--manifest", type=Path, default=None, help="an existing digits-motion manifest")
    p.add_argument("--clips", type=int, default=1500, help="digits-motion clips to generate")
    p.add_argument("--steps", type=int, default=300, help="digits training steps per size")
    p.add_argument("--surv-steps", type=int, default=150, help="surv_fight training steps per size")
    p.add_argument("--surv-batch", type=int, default=8)
    p.add_argument(
        "--parts",
        nargs="+",
        default=["digits", "surv", "rates"],
        choices=["digits", "surv", "rates", "fixes"],
    )
    p.add_argument(
        "--fix", action="append", default=[], metavar="NAME=KEY=VALUE,...", help="for --parts fixes"
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="for --parts fixes")
    p.add_argument("--fix-codes", type=int, default=256, help="codebook size for --parts fixes")
    p.add_argument(
        "--evaluate-only", action="store_true", help="measure the finished runs in OUT, no training"
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy machine)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from vidfm.data.digits import make_digits_motion
    from vidfm.utils import setup_logging

    setup_logging()
    args.out.mkdir(parents=True, exist_ok=True)
    rows, rates = [], []
    if "digits" in args.parts:
        manifest = args.manifest or args.out / "digits-motion" / "manifest.csv"
        if not manifest.is_file():
            manifest = make_digits_motion(manifest.parent, n=args.clips, seed=0)
        cache = args.out / "cache_digits"
        make = lambda k: digits_config(manifest, k, args.steps, cache)  # noqa: E731
        rows += sweep("digits", make, args.sizes, args.out, args.evaluate_only)
    if "fixes" in args.parts:
        if args.manifest is None:
            p.error("--parts fixes needs --manifest")
        fixes = fix_sweep(args.manifest, args.fix or ["default="], args.seeds, args.fix_codes, args.steps,
                          args.out, args.out / "cache_digits")  # fmt: skip
        print()
        print_table(
            ["fix", "seed", "codes", "steps", "test MSE", "rel. MSE", "perplexity", "codes used",
             "motion from tokens", "train s"],
            [[r["fix"], r["seed"], r["codes"], r["steps"], f"{r['mse']:.4f}", f"{r['rel']:.3f}",
              f"{r['perplexity']:.1f}", r["used"], f"{r['motion_acc']:.3f}", f"{r['train_s']:.0f}"]
             for r in fixes],
        )  # fmt: skip
        (args.out / "results_fixes.json").write_text(json.dumps(fixes, indent=1))
        if args.parts == ["fixes"]:
            return
    if "surv" in args.parts and SURV.is_dir():
        cache = args.out / "cache_surv"
        make = lambda k: surv_config(k, args.surv_steps, cache, args.surv_batch)  # noqa: E731
        rows += sweep("surv_fight", make, args.surv_sizes, args.out, args.evaluate_only)
    if "rates" in args.parts and SURV.is_dir():
        rates = token_rates(args.out)
    (args.out / f"results_{'_'.join(args.parts)}.json").write_text(
        json.dumps({"vq": rows, "rates": rates}, indent=1)
    )

    print()
    print_table(
        ["data", "codes", "steps", "tokens/clip", "test MSE", "rel. MSE", "perplexity", "codes used", "train s"],
        [
            [r["data"], r["codes"], r["steps"], r["tokens_per_clip"], f"{r['mse']:.4f}", f"{r['rel']:.3f}",
             f"{r['perplexity']:.1f}", r["used"], "" if r["train_s"] is None else f"{r['train_s']:.0f}"]
            for r in rows
        ],
    )  # fmt: skip
    print()
    print_table(
        ["setting", "tokens/clip", "s/clip", "LaVIT tokens/s", "per-frame ViT @6 fps", "per-frame ViT @source"],
        [
            [r["setting"], r["tokens_per_clip"], f"{r['seconds_per_clip']:.2f}", f"{r['lavit_tok_s']:.0f}",
             f"{r['vit_tok_s_6fps']:.0f}", "" if r["vit_tok_s_source"] is None else f"{r['vit_tok_s_source']:.0f}"]
            for r in rates
        ],
    )  # fmt: skip


if __name__ == "__main__":
    main()
