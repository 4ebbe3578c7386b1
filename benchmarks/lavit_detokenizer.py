"""Video-LaVIT detokenizer on digits-motion: PSNR of generated clips against the truth and a keyframe baseline.

Trains the three tiny stages of the ``motion_vq`` recipe on digits-motion (motion VQ-VAE, keyframe tokenizer,
motion-conditioned U-Net detokenizer conditioned on the VQ-VAE's reconstruction of the motion), then, on
test clips (16 frames, 32 x 32), compares the PSNR over all 16 frames of:

- ``keyframe repeat``: the first frame shown 16 times (what a detokenizer without motion could at best do
  if it only copied the keyframe);
- ``generated``: the detokenizer from the true keyframe and the clip's motion tokens;
- ``generated, no motion``: the same with the motion condition zeroed (an ablation);
- ``tokens only``: the keyframe rendered from its visual tokens (keyframe tokenizer pixel head), then the
  detokenizer from it and the motion tokens: the whole token path.

A picture strip (truth / keyframe repeat / generated, every other frame) of two test clips is saved.

    python benchmarks/lavit_detokenizer.py --out runs/lavit_detokenizer        # ~1.5 h on 2 busy CPU cores
    python benchmarks/lavit_detokenizer.py --out runs/ld --detok-steps 50 --clips 8   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-clip PSNR over all frames: uint8 ``[B, T, H, W, 3]`` pairs -> ``[B]`` dB."""
    mse = (a.float() - b.float()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(255.0**2 / mse.clamp_min(1e-10))


def stage(name: str, variant: str, manifest: Path, out: Path, steps: int, sets: tuple[str, ...] = ()) -> Path:
    from vidfm.config import apply_overrides
    from vidfm.recipes import get_recipe
    from vidfm.train.pretrain import pretrain as train

    cfg = apply_overrides(get_recipe(f"motion_vq:{variant}"),
                          [f"data.manifest={manifest}", "train.progress=false", f"train.steps={steps}",
                           f"train.warmup_steps={steps // 20}", *sets])  # fmt: skip
    t0 = time.perf_counter()
    summary = train(cfg, out / name)
    print(
        f"{name}: {summary['step']} steps, loss {summary['loss']}, {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    return out / name


def strip(rows: list[np.ndarray], path: Path, scale: int = 3) -> None:
    """Rows of frames ``[T, H, W, 3]`` -> one PNG, frames side by side, rows stacked, 2-pixel gaps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h, w = rows[0].shape[1:3]
    gap = 2
    canvas = np.full((len(rows) * (h + gap), rows[0].shape[0] * (w + gap), 3), 255, np.uint8)
    for r, frames in enumerate(rows):
        for t, f in enumerate(frames):
            canvas[r * (h + gap) : r * (h + gap) + h, t * (w + gap) : t * (w + gap) + w] = f
    canvas = canvas.repeat(scale, 0).repeat(scale, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, canvas)


@torch.no_grad()
def evaluate(runs: dict[str, Path], manifest: Path, clips: int, steps: int, seed: int) -> tuple[dict, dict]:
    from vidfm.lavit.clips import resize_square
    from vidfm.lavit.tokenize import load_tokenizers
    from vidfm.recipes import load_run_config

    tok = load_tokenizers(str(runs["motion"]), str(runs["keyframe"]), str(runs["detokenizer"]))
    cfg = load_run_config(runs["detokenizer"])
    test = cfg.build_dataset(split="test")
    n = min(clips, len(test))
    truth = test.frames[:n]  # [n, 16, 32, 32, 3]
    motion = test.motion[:n]
    det, mvq = tok.detokenizer, tok.motion
    results = {k: [] for k in ("keyframe repeat", "generated", "generated, no motion", "tokens only")}
    samples = []
    gen = torch.Generator().manual_seed(seed)
    for s in range(0, n, 8):
        x, m = truth[s : s + 8], motion[s : s + 8]
        key = x[:, 0]
        m_hat = mvq.detokenize(mvq.tokenize(m))  # what the motion tokens carry
        repeat = key[:, None].expand_as(x)
        generated = det.sample(key, m_hat, steps=steps, generator=gen)
        still = det.sample(key, torch.zeros_like(m_hat), steps=steps, generator=gen)
        rendered = tok.keyframe.render(tok.keyframe.tokenize(test.keyframe[s : s + 8]))
        rendered = torch.from_numpy(resize_square(rendered.numpy(), det.cfg.size))
        from_tokens = det.sample(rendered, m_hat, steps=steps, generator=gen)
        for name, y in zip(results, (repeat, generated, still, from_tokens), strict=True):
            results[name] += psnr(y, x).tolist()
        if s == 0:
            samples = [(x[i], repeat[i], generated[i]) for i in (0, 1)]
    table = {
        k: {"psnr": float(np.mean(v)), "std": float(np.std(v)), "clips": len(v)} for k, v in results.items()
    }
    return table, {"samples": samples}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/lavit_detokenizer"))
    p.add_argument("--manifest", type=Path, default=None, help="an existing digits-motion manifest")
    p.add_argument("--n", type=int, default=1500, help="digits-motion clips to generate")
    p.add_argument("--cache", type=Path, default=None, help="clip cache (default OUT/cache_digits)")
    p.add_argument("--motion-run", type=Path, default=None,
                   help="an existing motion_vq:tiny run on the same manifest (e.g. the tokenizer benchmark's "
                        "digits_k256) instead of training one")  # fmt: skip
    p.add_argument("--keyframe-run", type=Path, default=None,
                   help="an existing motion_vq:keyframe-tiny run instead of training one")  # fmt: skip
    p.add_argument("--motion-steps", type=int, default=600)
    p.add_argument("--keyframe-steps", type=int, default=400)
    p.add_argument("--detok-steps", type=int, default=2000)
    p.add_argument("--clips", type=int, default=48, help="test clips evaluated")
    p.add_argument("--sample-steps", type=int, default=12, help="Heun steps of the sampler")
    p.add_argument("--strip", type=Path, default=Path("docs/img/lavit_detokenizer_strip.png"))
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy machine)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from vidfm.data.digits import make_digits_motion
    from vidfm.utils import setup_logging

    setup_logging()
    manifest = args.manifest or args.out / "digits-motion" / "manifest.csv"
    if not manifest.is_file():
        manifest = make_digits_motion(manifest.parent, n=args.n, seed=0)
    cache = (f"data.cache_dir={args.cache or args.out / 'cache_digits'}",)
    if args.motion_run is not None:
        runs = {"motion": args.motion_run}
    else:
        runs = {"motion": stage("motion", "tiny", manifest, args.out, args.motion_steps, cache)}
    if args.keyframe_run is not None:
        runs["keyframe"] = args.keyframe_run
    else:
        runs["keyframe"] = stage("keyframe", "keyframe-tiny", manifest, args.out, args.keyframe_steps, cache)
    runs["detokenizer"] = stage("detokenizer", "detokenizer-tiny", manifest, args.out, args.detok_steps,
                                (*cache, f"motion_run={runs['motion']}"))  # fmt: skip
    t0 = time.perf_counter()
    table, extra = evaluate(runs, manifest, args.clips, args.sample_steps, seed=0)
    rows = []
    for truth, repeat, generated in extra["samples"]:
        rows += [truth.numpy()[::2], repeat.numpy()[::2], generated.numpy()[::2]]
    strip(rows, args.strip)
    (args.out / "results.json").write_text(json.dumps(table, indent=1))
    print(f"\nevaluated in {time.perf_counter() - t0:.0f} s; strip: {args.strip}")
    print("\n| 16 frames, 32 x 32, test clips | PSNR (dB) | std |")
    print("|---|---:|---:|")
    for name, r in table.items():
        print(f"| {name} ({r['clips']} clips) | {r['psnr']:.2f} | {r['std']:.2f} |")


if __name__ == "__main__":
    main()
