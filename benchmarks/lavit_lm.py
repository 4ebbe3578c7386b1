"""Video-LaVIT's LM on digits-motion: understanding (tokens -> caption) and generation (caption -> tokens).

Trains ``lavit_lm:tiny`` over frozen tokenizer runs (or reuses ``--lm-run``), then prints two tables on the
test split:

- Understanding: digit / motion / both accuracy of greedy captions parsed with
  :func:`vidfm.data.digits.parse_caption`, from the clip's tokens against the text-only prior (captions
  sampled after ``<bos>`` alone), uniform random tokens, another clip's tokens (shuffled), each half of
  the tokens shuffled alone, and the same LM untrained (random init).
- Generation: clips' tokens sampled from their captions, recognised by classifiers trained on the real
  train-split tokens (logistic regression on one-hot position x code: digit from the visual tokens, motion
  from the motion tokens), against chance, shuffled captions (the generated tokens scored against another
  clip's caption) and the untrained LM. The classifiers' accuracy on the real test tokens is the ceiling.

Example::

    OMP_NUM_THREADS=1 python benchmarks/lavit_lm.py --manifest DIGITS/manifest.csv --motion-run runs/mvq \\
        --keyframe-run runs/kf --out runs/lavit_lm --steps 600
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from vidfm.config import apply_overrides
from vidfm.data.digits import MOTIONS, parse_caption
from vidfm.lavit.language import VideoLaVIT
from vidfm.models.lm import CausalLM
from vidfm.recipes import get_recipe
from vidfm.recipes.lavit_lm import LavitLMRecipe, load_video_lavit
from vidfm.train.pretrain import pretrain


def one_hot(ids: torch.Tensor, codes: int):
    """Sparse ``[N, L * codes]`` one-hot rows of ``ids [N, L]``."""
    from scipy.sparse import csr_matrix

    n, length = ids.shape
    cols = (torch.arange(length) * codes + ids).flatten().numpy()
    return csr_matrix(
        (np.ones(n * length), (np.repeat(np.arange(n), length), cols)), shape=(n, length * codes)
    )


def scores(captions: list[str], digits: np.ndarray, motions: np.ndarray) -> tuple[float, float, float]:
    parsed = [parse_caption(c) for c in captions]
    d = np.array([p[0] == t for p, t in zip(parsed, digits, strict=True)])
    m = np.array([p[1] == MOTIONS[t] for p, t in zip(parsed, motions, strict=True)])
    return d.mean(), m.mean(), (d & m).mean()


def clip_table(ds, text) -> tuple[torch.Tensor | None, torch.Tensor, np.ndarray, np.ndarray, list[str]]:
    """One row per clip (its first caption): visual, motion, digit and motion labels, caption."""
    seen: dict[int, int] = {}
    for i, (c, _) in enumerate(ds.pairs):
        seen.setdefault(c, i)
    rows = list(seen.values())
    items = [ds[i] for i in rows]
    caps = [text.decode(t["text"][: int(t["text_len"])].tolist()) for t in items]
    labels = [parse_caption(c) for c in caps]
    clips = torch.tensor(list(seen))
    visual = ds.visual[clips] if ds.visual is not None else None
    return (
        visual,
        ds.motion[clips],
        np.array([x[0] for x in labels]),
        np.array([MOTIONS.index(x[1]) for x in labels]),
        caps,
    )


PROMPTS = ("a handwritten 0 zooming in", "a handwritten 3 moving to the left", "a handwritten 4 moving up",
           "a handwritten 7 rotating clockwise", "a handwritten 8 moving down", "a handwritten 9 zooming out")  # fmt: skip


def keyframe_strip(vl: VideoLaVIT, cfg: LavitLMRecipe, path: Path, samples: int, g: torch.Generator,
                   temperature: float, top_k: int) -> None:  # fmt: skip
    """Keyframes rendered (keyframe tokenizer's pixel head) from visual tokens the LM sampled for each
    prompt: one column per prompt, ``samples`` rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vidfm.lavit.tokenize import load_tokenizers

    tok = load_tokenizers(cfg.motion_run, cfg.keyframe_run)
    fig, axes = plt.subplots(samples, len(PROMPTS), figsize=(1.9 * len(PROMPTS), 1.9 * samples + 0.4))
    for j, prompt in enumerate(PROMPTS):
        visual, _ = vl.generate(prompt, samples, temperature, top_k, generator=g)
        images = tok.keyframe.render(visual).numpy()
        for i in range(samples):
            axes[i, j].imshow(images[i])
            axes[i, j].axis("off")
        axes[0, j].set_title(prompt.replace("a handwritten ", "").replace(" ", "\n", 1), fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", required=True)
    p.add_argument("--motion-run", required=True)
    p.add_argument("--keyframe-run", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--lm-run", default="", help="reuse a trained lavit_lm run")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--cache", default="")
    p.add_argument("--max-test", type=int, default=320)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", nargs="*", default=[], help="more overrides of the LM run, e.g. loss_on=second")
    p.add_argument("--strip", type=Path, default=Path("docs/img/lavit_lm_keyframes.png"))
    a = p.parse_args()
    torch.set_num_threads(1)
    out = Path(a.out)
    sets = [f"data.manifest={a.manifest}", f"motion_run={a.motion_run}", f"keyframe_run={a.keyframe_run}",
            f"train.steps={a.steps}", f"train.warmup_steps={max(1, a.steps // 20)}", "train.progress=false"]  # fmt: skip
    if a.cache:
        sets.append(f"data.cache_dir={a.cache}")
    sets += a.set
    run = Path(a.lm_run) if a.lm_run else out / "lm"
    if not a.lm_run:
        t0 = time.time()
        pretrain(apply_overrides(get_recipe("lavit_lm:tiny"), sets), run)
        print(f"LM trained: {a.steps} steps in {(time.time() - t0) / 60:.1f} min")
    vl, cfg = load_video_lavit(run)
    assert isinstance(cfg, LavitLMRecipe)
    train_v, train_m, train_d, train_mo, _ = clip_table(cfg.build_dataset(split="train"), vl.text)
    v, m, digits, motions, caps = clip_table(cfg.build_dataset(split="test"), vl.text)
    v, m, digits, motions, caps = (
        v[: a.max_test],
        m[: a.max_test],
        digits[: a.max_test],
        motions[: a.max_test],
        caps[: a.max_test],
    )
    n = len(m)
    g = torch.Generator().manual_seed(a.seed)
    perm = torch.randperm(n, generator=g)
    torch.manual_seed(a.seed)
    untrained = VideoLaVIT(
        CausalLM(cfg.lm, vl.vocab.size).eval(), vl.vocab, vl.text, vl.num_visual, vl.num_motion
    )

    # ---- understanding
    rand_v = torch.randint(0, cfg.visual_codes, v.shape, generator=g)
    rand_m = torch.randint(0, cfg.motion_codes, m.shape, generator=g)
    rows = [
        ("LM, the clip's tokens", vl.caption(v, m)),
        ("LM, visual shuffled (motion true)", vl.caption(v[perm], m)),
        ("LM, motion shuffled (visual true)", vl.caption(v, m[perm])),
        ("LM, both shuffled (another clip)", vl.caption(v[perm], m[perm])),
        ("LM, uniform random tokens", vl.caption(rand_v, rand_m)),
        ("LM text-only prior (sampled after <bos>)", vl.prior_captions(n, generator=g)),
        ("untrained LM (random init), the clip's tokens", untrained.caption(v, m)),
    ]
    print(f"\nUnderstanding, {n} test clips (greedy captions)\n")
    print("| captions from | digit | motion | both |\n|---|---:|---:|---:|")
    for name, c in rows:
        print("| {} | {:.3f} | {:.3f} | {:.3f} |".format(name, *scores(c, digits, motions)))
    maj_d = np.bincount(digits).max() / n
    maj_m = np.bincount(motions).max() / n
    print(f"| chance (uniform) | 0.100 | 0.125 | 0.013 |\n| majority class | {maj_d:.3f} | {maj_m:.3f} | |")
    for name, c in rows[:1]:
        print(f"\nexamples ({name}):", *[f"  {caps[i]!r} -> {c[i]!r}" for i in range(4)], sep="\n")

    # ---- generation
    from sklearn.linear_model import LogisticRegression

    clf_d = LogisticRegression(max_iter=2000, C=1.0).fit(one_hot(train_v, cfg.visual_codes), train_d)
    clf_m = LogisticRegression(max_iter=2000, C=1.0).fit(one_hot(train_m, cfg.motion_codes), train_mo)

    def recognised(
        gv: torch.Tensor, gm: torch.Tensor, d: np.ndarray, mo: np.ndarray
    ) -> tuple[float, float, float]:
        pd = clf_d.predict(one_hot(gv, cfg.visual_codes)) == d
        pm = clf_m.predict(one_hot(gm, cfg.motion_codes)) == mo
        return pd.mean(), pm.mean(), (pd & pm).mean()

    t0 = time.time()
    gv, gm = vl.generate(caps, 1, a.temperature, a.top_k, generator=g)
    secs = time.time() - t0
    uv, um = untrained.generate(caps, 1, a.temperature, a.top_k, generator=g)
    print(
        f"\nGeneration, {n} test captions (temperature {a.temperature}, top-k {a.top_k}; {secs / n:.2f} s per clip)\n"
    )
    print("| tokens | digit recognised | motion recognised | both |\n|---|---:|---:|---:|")
    print(
        "| real test clips (classifier ceiling) | {:.3f} | {:.3f} | {:.3f} |".format(
            *recognised(v, m, digits, motions)
        )
    )
    print(
        "| LM, from the clip's caption | {:.3f} | {:.3f} | {:.3f} |".format(
            *recognised(gv, gm, digits, motions)
        )
    )
    pd, pmo = digits[perm.numpy()], motions[perm.numpy()]
    print("| LM, from a shuffled caption | {:.3f} | {:.3f} | {:.3f} |".format(*recognised(gv, gm, pd, pmo)))
    print(
        "| untrained LM (random init) | {:.3f} | {:.3f} | {:.3f} |".format(
            *recognised(uv, um, digits, motions)
        )
    )
    print("| chance (uniform) | 0.100 | 0.125 | 0.013 |")
    keyframe_strip(vl, cfg, a.strip, 3, g, a.temperature, a.top_k)
    print(f"strip: {a.strip}")


if __name__ == "__main__":
    main()
