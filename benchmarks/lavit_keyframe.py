"""Keyframe tokenizers compared: what their visual tokens keep of the picture and of its content.

For each ``motion_vq`` keyframe run, on the test split's keyframes: reconstruction PSNR of the keyframe rendered
from its tokens, codes used and code perplexity, and the `digit` (or any label) read by a linear probe from
the tokens (their code vectors, flattened in patch order: what an LM reading the ids could know) and from the
frozen features before quantisation (mean over patches), and from the bag of codes (how often each code
occurs, positions dropped: a digit that moves keeps its codes). Trivial baseline: the keyframe's pixels at 16 x 16.

    python benchmarks/lavit_keyframe.py --run random-vit=runs/kf --run efficientnet=runs/kf_effnet --label digit

Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common import clip_labels


@torch.no_grad()
def measure(tok, keyframes: torch.Tensor, batch: int = 64) -> dict[str, np.ndarray | float]:  # noqa: ANN001
    """Token code vectors [N, n·d], pooled frozen features [N, D], rendered PSNR per image and code stats."""
    codes, pooled, psnr, ids = [], [], [], []
    for x in keyframes.split(batch):
        features, quant = tok.encode(x)
        codes.append(quant.quantized.flatten(1).float())
        pooled.append(features.mean(1))
        ids.append(quant.indices)
        rendered = tok.render(quant.indices).float()
        mse = ((rendered - x.float()) ** 2).mean(dim=(1, 2, 3))
        psnr.append(10 * torch.log10(255.0**2 / mse.clamp(min=1e-8)))
    used = torch.cat(ids).flatten()
    p = torch.bincount(used, minlength=tok.cfg.quantizer.num_codes).float() / used.numel()
    perplexity = float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))
    return {
        "codes": torch.cat(codes).numpy(),
        "bag": F.one_hot(torch.cat(ids), tok.cfg.quantizer.num_codes).sum(1).float().numpy(),
        "pooled": torch.cat(pooled).numpy(),
        "psnr": torch.cat(psnr).numpy(),
        "used": int((p > 0).sum()),
        "perplexity": perplexity,
    }


def pixels(keyframes: torch.Tensor) -> np.ndarray:
    """The trivial feature: keyframes [N,S,S,3] at 16 x 16, flattened."""
    x = keyframes.permute(0, 3, 1, 2).float() / 255.0
    return F.interpolate(x, size=(16, 16), mode="area").flatten(1).numpy()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--run", action="append", required=True, metavar="NAME=RUN", help="motion_vq keyframe run"
    )
    ap.add_argument("--label", default="digit", help="manifest column to probe (default digit)")
    ap.add_argument("--manifest", default=None, help="default: the first run's data.manifest")
    args = ap.parse_args(argv)

    from vidfm.eval.probes import linear_probe
    from vidfm.lavit.keyframe import KeyframeTokenizer, KeyframeTokenizerConfig
    from vidfm.recipes import load_run_config
    from vidfm.runs import open_run

    runs = [r.split("=", 1) if "=" in r else [Path(r).name, r] for r in args.run]
    first = load_run_config(runs[0][1])
    if args.manifest:
        first.data.manifest = args.manifest
    data = {s: first.build_dataset(split=s) for s in ("train", "test")}
    y = {s: clip_labels(d, first.data.manifest, args.label) for s, d in data.items()}

    def probe(train_x: np.ndarray, test_x: np.ndarray) -> float:
        return linear_probe(train_x, y["train"], test_x, y["test"]).top1

    chance = float(np.bincount(y["test"]).max() / len(y["test"]))
    lab = args.label
    print(f"| keyframes | PSNR dB | codes used | perplexity | {lab} from tokens | {lab} from the bag of codes "
          f"| {lab} from features |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    print(f"| majority class | - | - | - | {chance:.3f} | - | - |")
    base = probe(pixels(data["train"].keyframe), pixels(data["test"].keyframe))
    print(f"| trivial baseline (pixels at 16x16) | - | - | - | {base:.3f} | - | - |", flush=True)
    for name, run_dir in runs:
        run = open_run(run_dir)
        tok = KeyframeTokenizer(run.section("keyframe", KeyframeTokenizerConfig), load_encoder=False)
        run.load(tok, "tokenizer.")
        tok.eval()
        size = data["test"].keyframe.shape[1]
        if size != tok.cfg.image_size:
            raise SystemExit(f"{run_dir}: keyframes of {tok.cfg.image_size} px, the data gives {size} px")
        train, test = measure(tok, data["train"].keyframe), measure(tok, data["test"].keyframe)
        row = [
            f"{test['psnr'].mean():.2f} ± {test['psnr'].std():.2f}",
            f"{test['used']} / {tok.cfg.quantizer.num_codes}",
            f"{test['perplexity']:.0f}",
            f"{probe(train['codes'], test['codes']):.3f}",
            f"{probe(train['bag'], test['bag']):.3f}",
            f"{probe(train['pooled'], test['pooled']):.3f}",
        ]
        print(f"| {name} ({tok.cfg.features}) | " + " | ".join(row) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
