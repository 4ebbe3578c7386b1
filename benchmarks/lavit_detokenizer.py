"""Video-LaVIT detokenizer on digits-motion: PSNR and motion agreement against two model-free baselines.

Trains the tiny stages of the ``motion_vq`` recipe on digits-motion (motion VQ-VAE, keyframe tokenizer, and
the motion-conditioned U-Net detokenizer), then, on test clips (16 frames, 32 x 32), compares:

- ``keyframe repeat``: the first frame shown 16 times;
- ``warped keyframe``: the keyframe moved along the motion (:func:`vidfm.lavit.warp.warp_keyframe`, the
  same warp the residual detokenizer predicts against), with the real motion vectors and, given a motion
  VQ-VAE, with the motion decoded from its tokens;
- ``detokenizer``: sampled from the true keyframe and the motion it is conditioned on (decoded from the
  motion tokens, or with ``--real-motion`` the real vectors), at each ``--temperatures``;
- ablations: the motion zeroed, and the keyframe rendered from its visual tokens (the whole token path).

Columns: PSNR over all 16 frames per clip (mean ± std and median over clips) and motion agreement. The
motion of a clip is what a codec finds in it: frames up-sampled to the source's 64 x 64, encoded as the
dataset (x264, crf 18, preset fast), motion vectors read back on the 4 x 4 macroblock grid. Against the
source's own vectors: end-point error in pixels of the 64-pixel frame (mean over cells and frames 1..15)
and the cosine of the two fields as flat vectors (0 for a still clip). ``truth, re-encoded`` is the ceiling
of this measurement (the truth's frames at 32 x 32 through the same path). A picture strip (truth / repeat /
warped / detokenizer, every other frame) of two test clips is saved.

    python benchmarks/lavit_detokenizer.py --out runs/lavit_detokenizer        # ~1.5 h on 2 busy CPU cores
    python benchmarks/lavit_detokenizer.py --out runs/ld --real-motion --detok-steps 300 --clips 32 \
        --temperatures 0 1                                                     # ~25 min: no tokenizers
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


def _detokenizer(run_dir: Path):  # noqa: ANN202 - a Detokenizer
    from vidfm.lavit.detokenizer import Detokenizer, DetokenizerConfig
    from vidfm.runs import open_run

    run = open_run(run_dir)
    det = Detokenizer(run.section("detokenizer", DetokenizerConfig))
    run.load(det, "detokenizer.")
    return det.eval()


def to_pixels(motion: torch.Tensor, frame_size: int) -> torch.Tensor:
    """Tokenizer-unit motion ``[B, 2, T, h, w]`` -> pixels of a ``frame_size`` square frame."""
    from vidfm.lavit.clips import MOTION_RESCALE, MOTION_STD

    std = torch.tensor(MOTION_STD).view(1, 2, 1, 1, 1) / MOTION_RESCALE
    return motion.float() * std * frame_size


def codec_motion(frames: torch.Tensor, size: int, grid: tuple[int, int], tmp: Path) -> torch.Tensor:
    """The motion a codec finds in clips: uint8 ``[B, T, S, S, 3]`` up-sampled (nearest) to the source
    size, encoded as the digits-motion videos are (x264, crf 18, preset fast), motion vectors read back and
    prepared like the dataset's (tokenizer units, frame 0 zero) -> ``[B, 2, T, gh, gw]``."""
    from vidfm.data.decode import read_motion_vectors
    from vidfm.data.digits import encode_yuv420p, rgb_to_yuv420p
    from vidfm.lavit.clips import normalize_motion, resize_motion

    k = size // frames.shape[2]
    up = frames.repeat_interleave(k, dim=2).repeat_interleave(k, dim=3)
    out = []
    for i, yuv in enumerate(rgb_to_yuv420p(up).numpy()):
        path = tmp / f"clip{i}.mp4"
        encode_yuv420p(path, yuv)
        field = read_motion_vectors(path)
        m = normalize_motion(field.vectors, field.frame_size)
        m[0] = 0.0
        out.append(resize_motion(m, grid))
    return torch.stack(out)


def motion_agreement(motion: torch.Tensor, source: torch.Tensor, size: int) -> tuple[list, list]:
    """Per clip, a re-encoded clip's motion against the source's (both ``[B, 2, T, gh, gw]``, frames 1..):
    end-point error in pixels of the ``size`` source frame (mean over cells and frames), and the cosine
    of the two fields as flat vectors (0 when the clip has no motion at all)."""
    a = to_pixels(motion[:, :, 1:], size).flatten(1)
    b = to_pixels(source[:, :, 1:], size).flatten(1)
    epe = (
        (to_pixels(motion[:, :, 1:], size) - to_pixels(source[:, :, 1:], size)).norm(dim=1).flatten(1).mean(1)
    )
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-8)
    return epe.tolist(), cos.tolist()


@torch.no_grad()
def evaluate(
    runs: dict[str, Path],
    clips: int,
    steps: int,
    seed: int,
    temperatures: tuple[float, ...] = (1.0,),
    source_size: int = 64,
) -> tuple[dict, dict]:
    """The table's rows: PSNR (per clip, all frames) and motion agreement of every method's clips. The
    detokenizer samples at each temperature; its ablations at the first."""
    import tempfile

    from vidfm.lavit.clips import resize_square
    from vidfm.lavit.detokenizer import to_uint8, to_unit
    from vidfm.lavit.warp import warp_keyframe
    from vidfm.recipes import load_run_config

    det = _detokenizer(runs["detokenizer"])
    mvq = keyframe = None
    if runs.get("motion"):
        from vidfm.lavit.tokenize import load_tokenizers

        tok = load_tokenizers(str(runs["motion"]), str(runs.get("keyframe") or ""))
        mvq, keyframe = tok.motion, tok.keyframe
    cfg = load_run_config(runs["detokenizer"])
    test = cfg.build_dataset(split="test")
    n = min(clips, len(test))
    truth, motion = test.frames[:n], test.motion[:n]  # [n, T, S, S, 3], [n, 2, T, gh, gw]
    grid = tuple(motion.shape[-2:])
    cond = "tokens" if mvq is not None else "real"
    names = ["truth, re-encoded", "keyframe repeat", "warped keyframe (real motion)"]
    if mvq is not None:
        names.append("warped keyframe (motion tokens)")
    tau = temperatures[0]
    main_rows = {f"detokenizer ({cond} motion), T={t:g}": t for t in temperatures}
    names += [*main_rows, f"detokenizer, motion zeroed, T={tau:g}"]
    if keyframe is not None:
        names.append(f"detokenizer, keyframe from tokens, T={tau:g}")
    results: dict[str, dict[str, list]] = {k: {"psnr": [], "epe": [], "cos": []} for k in names}
    samples = []
    gen = torch.Generator().manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        for s in range(0, n, 8):
            x, m = truth[s : s + 8], motion[s : s + 8]
            key = x[:, 0]
            m_cond = mvq.detokenize(mvq.tokenize(m)) if mvq is not None else m  # what the detokenizer sees
            out = {"truth, re-encoded": x, "keyframe repeat": key[:, None].expand_as(x).contiguous()}
            out["warped keyframe (real motion)"] = to_uint8(warp_keyframe(to_unit(key[:, None])[:, :, 0], m))
            if mvq is not None:
                out["warped keyframe (motion tokens)"] = to_uint8(
                    warp_keyframe(to_unit(key[:, None])[:, :, 0], m_cond)
                )
            for row, t in main_rows.items():
                out[row] = det.sample(key, m_cond, steps=steps, generator=gen, temperature=t)
            out[f"detokenizer, motion zeroed, T={tau:g}"] = det.sample(
                key, torch.zeros_like(m_cond), steps=steps, generator=gen, temperature=tau
            )
            if keyframe is not None:
                rendered = keyframe.render(keyframe.tokenize(test.keyframe[s : s + 8]))
                rendered = torch.from_numpy(resize_square(rendered.numpy(), det.cfg.size))
                out[f"detokenizer, keyframe from tokens, T={tau:g}"] = det.sample(
                    rendered, m_cond, steps=steps, generator=gen, temperature=tau
                )
            for name, y in out.items():
                epe, cos = motion_agreement(codec_motion(y, source_size, grid, Path(tmp)), m, source_size)
                results[name]["psnr"] += psnr(y, x).tolist()
                results[name]["epe"] += epe
                results[name]["cos"] += cos
            if s == 0:
                rows = ("keyframe repeat", "warped keyframe (real motion)", *main_rows)
                samples = [(x[i], *(out[r][i] for r in rows)) for i in (0, 1)]
    table = {
        k: {f"{m}_{f.__name__}": float(f(v[m])) for m in v for f in (np.mean, np.std, np.median)}
        | {"clips": n}
        for k, v in results.items()
    }
    return table, {"samples": samples}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/lavit_detokenizer"))
    p.add_argument("--manifest", type=Path, default=None, help="an existing digits-motion manifest")
    p.add_argument("--n", type=int, default=1500, help="digits-motion clips to generate")
    p.add_argument("--cache", type=Path, default=None, help="clip cache (default OUT/cache_digits)")
    p.add_argument("--real-motion", action="store_true",
                   help="condition the detokenizer on the real motion vectors: no motion VQ-VAE or keyframe "
                        "tokenizer is trained or used")  # fmt: skip
    p.add_argument("--motion-run", type=Path, default=None,
                   help="an existing motion_vq:tiny run on the same manifest (e.g. the tokenizer benchmark's "
                        "digits_k256) instead of training one")  # fmt: skip
    p.add_argument("--keyframe-run", type=Path, default=None,
                   help="an existing motion_vq:keyframe-tiny run instead of training one")  # fmt: skip
    p.add_argument("--detokenizer-run", type=Path, default=None,
                   help="an existing motion_vq:detokenizer-tiny run: evaluate only")  # fmt: skip
    p.add_argument("--motion-steps", type=int, default=600)
    p.add_argument("--keyframe-steps", type=int, default=400)
    p.add_argument("--detok-steps", type=int, default=2000)
    p.add_argument("--detok-set", nargs="*", default=[],
                   help="more overrides of the detokenizer run, e.g. detokenizer.base=none")  # fmt: skip
    p.add_argument("--clips", type=int, default=48, help="test clips evaluated")
    p.add_argument("--sample-steps", type=int, default=12, help="Heun steps of the sampler")
    p.add_argument("--temperatures", type=float, nargs="+", default=[1.0],
                   help="noise temperatures of the detokenizer's samples (ablations use the first)")  # fmt: skip
    p.add_argument("--strip", type=Path, default=Path("docs/img/lavit_detokenizer_strip.png"))
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy machine)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from vidfm.data.digits import make_digits_motion
    from vidfm.utils import setup_logging

    setup_logging()
    args.out.mkdir(parents=True, exist_ok=True)  # also when every run is given and nothing is trained
    manifest = args.manifest or args.out / "digits-motion" / "manifest.csv"
    if not manifest.is_file():
        manifest = make_digits_motion(manifest.parent, n=args.n, seed=0)
    cache = (f"data.cache_dir={args.cache or args.out / 'cache_digits'}",)
    runs: dict[str, Path | None] = {"motion": None, "keyframe": None}
    if not args.real_motion:
        runs["motion"] = args.motion_run or stage(
            "motion", "tiny", manifest, args.out, args.motion_steps, cache
        )
        runs["keyframe"] = args.keyframe_run or stage(
            "keyframe", "keyframe-tiny", manifest, args.out, args.keyframe_steps, cache
        )
    motion_set = (f"motion_run={runs['motion']}",) if runs["motion"] else ()
    runs["detokenizer"] = args.detokenizer_run or stage(
        "detokenizer",
        "detokenizer-tiny",
        manifest,
        args.out,
        args.detok_steps,
        (*cache, *motion_set, *args.detok_set),
    )
    t0 = time.perf_counter()
    table, extra = evaluate(
        runs, args.clips, args.sample_steps, seed=0, temperatures=tuple(args.temperatures)
    )
    rows = []
    for frames in extra["samples"]:
        rows += [f.numpy()[::2] for f in frames]
    strip(rows, args.strip)
    (args.out / "results.json").write_text(json.dumps(table, indent=1))
    print(f"\nevaluated in {time.perf_counter() - t0:.0f} s; strip: {args.strip}")
    n = next(iter(table.values()))["clips"]
    print(f"\n| 16 frames, 32 x 32, {n} test clips | PSNR (dB) | median | motion EPE (px) | motion cosine |")
    print("|---|---:|---:|---:|---:|")
    for name, r in table.items():
        same = name.startswith("truth")  # PSNR of the truth against itself is infinite
        mean = "—" if same else f"{r['psnr_mean']:.2f} ± {r['psnr_std']:.2f}"
        median = "—" if same else f"{r['psnr_median']:.2f}"
        print(f"| {name} | {mean} | {median} "
              f"| {r['epe_mean']:.3f} ± {r['epe_std']:.3f} | {r['cos_mean']:.2f} ± {r['cos_std']:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
