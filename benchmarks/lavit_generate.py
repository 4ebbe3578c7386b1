"""Video-LaVIT text-to-video on digits-motion, judged in pixels by classifiers trained on real clips.

For each test caption the ``lavit_lm`` run samples one clip's tokens (temperature ``--temperature``), the
keyframe is rendered from its visual tokens, the motion decoded from its motion tokens, and the detokenizer
generates the frames: the path of ``vidfm generate``, batched. Two classifiers trained on the real train
clips, at the detokenizer's frame size, judge what comes out:

- ``digit``: a linear probe (:func:`vidfm.eval.probes.linear_probe`) on frozen ImageNet EfficientNet-Lite0
  features (stride-32 map pooled over positions and over frames 0, 5, 10, 15, frames up-sampled to 128 px);
- ``motion``: a linear probe on the motion a codec finds in the clip (frames up-sampled to the source's 64 px,
  x264 as the dataset, vectors on the 4 x 4 macroblock grid: ``lavit_detokenizer.codec_motion``).

Rows: the real test clips (the classifiers' ceiling); the real clips' own tokens through the detokenizer
(what the tokenizers and detokenizer keep, with no LM); clips generated from the clip's caption; the same
clips scored against another test clip's caption (shuffled: what matching the caption adds); chance.
A strip of clips generated for six prompts is saved.

    OMP_NUM_THREADS=1 python benchmarks/lavit_generate.py --lm-run runs/lm --detokenizer-run runs/detok \\
        --clips 160 --strip docs/img/lavit_generated_strip.png
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from lavit_detokenizer import codec_motion
from lavit_lm import PROMPTS

from vidfm.data.digits import MOTIONS


@torch.no_grad()
def digit_features(frames: torch.Tensor, net: torch.nn.Module) -> np.ndarray:
    """uint8 clips ``[B, T, S, S, 3]`` -> frozen EfficientNet-Lite0 stride-32 features (frames up-sampled to
    128 px), pooled over positions and over frames 0, 5, 10, 15: ``[B, 320]``."""
    out = []
    for clip in frames.split(32):
        x = clip[:, [0, 5, 10, 15]].permute(0, 4, 1, 2, 3).float() / 255.0  # [b, 3, 4, S, S] in [0, 1]
        out.append(net(x).pooled)
    return torch.cat(out).numpy()


def motion_features(frames: torch.Tensor, tmp: Path) -> np.ndarray:
    """uint8 clips ``[B, T, S, S, 3]`` -> the codec's motion field, flattened ``[B, 2·T·4·4]``."""
    return codec_motion(frames, 64, (4, 4), tmp).flatten(1).numpy()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lm-run", required=True, help="a lavit_lm run (its tokenizer runs are used)")
    p.add_argument("--detokenizer-run", required=True, help="a motion_vq:detokenizer run on the same data")
    p.add_argument("--manifest", default=None, help="labelled clips (default: the detokenizer run's data)")
    p.add_argument("--clips", type=int, default=160, help="test captions generated")
    p.add_argument("--train-clips", type=int, default=1600, help="real train clips the classifiers see")
    p.add_argument("--temperature", type=float, default=1.0, help="token sampling temperature")
    p.add_argument("--frame-temperature", type=float, default=0.0, help="the detokenizer's noise scale")
    p.add_argument("--steps", type=int, default=8, help="the detokenizer's Heun steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--strip", type=Path, default=None, help="PNG of clips generated for six prompts")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    from vidfm.data.datasets import read_manifest
    from vidfm.eval.probes import linear_probe
    from vidfm.lavit.tokenize import conditions, load_tokenizers
    from vidfm.recipes import load_run_config
    from vidfm.recipes.lavit_lm import load_video_lavit
    from vidfm.teachers.efficientnet import efficientnet_teacher

    vl, cfg = load_video_lavit(a.lm_run)
    tok = load_tokenizers(cfg.motion_run, cfg.keyframe_run, str(a.detokenizer_run))
    net = efficientnet_teacher(size=128, stride=32)
    g = torch.Generator().manual_seed(a.seed)

    # ---- real clips at the detokenizer's size, with their labels and first caption
    dcfg = load_run_config(a.detokenizer_run)
    if a.manifest:
        dcfg.data.manifest = a.manifest
    records = read_manifest(dcfg.data.manifest, label_columns=["digit", "motion"])
    classes = records.classes
    label = {}
    for r in records:
        label.setdefault(r.path, (int(classes["digit"][r.labels["digit"]]),
                                  MOTIONS.index(classes["motion"][r.labels["motion"]]), r.caption))  # fmt: skip
    real = {s: dcfg.build_dataset(split=s) for s in ("train", "test")}
    rows_of = {s: [label[d.paths[int(v)]] for v in d.video] for s, d in real.items()}
    train, test = real["train"], real["test"]
    n_train, n = min(a.train_clips, len(train)), min(a.clips, len(test))
    train_digit = np.array([d for d, _, _ in rows_of["train"][:n_train]])
    train_motion = np.array([m for _, m, _ in rows_of["train"][:n_train]])
    digits = np.array([d for d, _, _ in rows_of["test"][:n]])
    motions = np.array([m for _, m, _ in rows_of["test"][:n]])
    caps = [c for _, _, c in rows_of["test"][:n]]

    def decode(visual: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        """Token ids -> frames, the path of ``vidfm generate`` in batches of 16."""
        out = []
        for sv, sm in zip(visual.split(16), motion.split(16), strict=True):
            key, cond = conditions(tok, sv, sm)
            out.append(tok.detokenizer.sample(key, cond, steps=a.steps, generator=g,
                                              temperature=a.frame_temperature))  # fmt: skip
        return torch.cat(out)

    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        t0 = time.time()
        frames = train.frames[:n_train]
        train_x = (digit_features(frames, net), motion_features(frames, Path(tmp)))
        print(f"classifier features of {n_train} real train clips: {time.time() - t0:.0f} s", flush=True)

        own = decode(tok.keyframe.tokenize(test.keyframe[:n]), tok.motion.tokenize(test.motion[:n]))
        t0 = time.time()
        gv, gm = vl.generate(caps, 1, a.temperature, 0, generator=g)
        generated = decode(gv, gm)
        secs = (time.time() - t0) / n
        clips = {"truth": test.frames[:n], "own": own, "generated": generated}
        # One probe per label, fitted once and asked about every clip set together: its predictions do not
        # depend on what else it is asked about (features standardised with train statistics alone).
        test_x = (
            np.concatenate([digit_features(c, net) for c in clips.values()]),
            np.concatenate([motion_features(c, Path(tmp)) for c in clips.values()]),
        )
        probes = ((train_x[0], train_digit, digits), (train_x[1], train_motion, motions))
        predicted = [
            np.split(linear_probe(x, y, tx, np.tile(ty, len(clips))).predictions, len(clips))
            for (x, y, ty), tx in zip(probes, test_x, strict=True)
        ]
        pred = {name: (predicted[0][i], predicted[1][i]) for i, name in enumerate(clips)}

        def judge(name: str, d: np.ndarray, mo: np.ndarray) -> tuple[float, float, float]:
            pd, pm = pred[name][0] == d, pred[name][1] == mo
            return pd.mean(), pm.mean(), (pd & pm).mean()

        perm = torch.randperm(n, generator=g).numpy()
        rows = [
            ("real test clips (the classifiers' ceiling)", judge("truth", digits, motions)),
            ("the clips' own tokens, detokenized (no LM)", judge("own", digits, motions)),
            ("LM, from the clip's caption", judge("generated", digits, motions)),
            ("LM, scored against a shuffled caption", judge("generated", digits[perm], motions[perm])),
        ]
    print(f"\nText to video, {n} test captions (token temperature {a.temperature}, frame temperature "
          f"{a.frame_temperature}, {a.steps} Heun steps; {secs:.2f} s per clip)\n")  # fmt: skip
    print("| clips | digit recognised | motion recognised | both |\n|---|---:|---:|---:|")
    for name, (d, mo, both) in rows:
        print(f"| {name} | {d:.3f} | {mo:.3f} | {both:.3f} |")
    print(f"| chance (uniform) | 0.100 | {1 / len(MOTIONS):.3f} | {0.1 / len(MOTIONS):.4f} |")
    if a.strip:
        save_strip(vl, decode, a.strip, g, a.temperature)
        print(f"strip: {a.strip}")
    return 0


def save_strip(vl, decode, path: Path, g: torch.Generator, temperature: float) -> None:  # noqa: ANN001
    """Two clips generated for each of six prompts, every other frame, the prompt above each row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gv, gm = vl.generate(list(PROMPTS), 2, temperature, 0, generator=g)
    clips = decode(gv, gm).numpy()[:, ::2]  # [12, 8, S, S, 3]
    fig, axes = plt.subplots(len(clips), 1, figsize=(6, 0.95 * len(clips)))
    for i, (ax, clip) in enumerate(zip(axes, clips, strict=True)):
        ax.imshow(np.concatenate(list(clip), axis=1))
        ax.axis("off")
        ax.set_title(f"{PROMPTS[i // 2]!r}, sample {i % 2 + 1}", loc="left", fontsize=8, pad=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    sys.exit(main())
