"""MVD's claims on digits-motion: which teacher makes which student, and what it costs.

Stage 1 trains the two teachers once (``mae_image:tiny`` on frames, ``videomae:tiny`` on clips); stage 2
distils three ``mvd:tiny`` students per seed (image teacher only, video teacher only, both) and probes their
frozen features (linear and kNN top-1) on ``digit`` (appearance: one frame suffices) and ``motion``
(dynamics: a single frame is at chance). The cost column counts the teachers' pre-training time in every
student that used them, as the paper's Table 7 does. Last, the teachers' cross-frame feature similarity.

The paper's claims (MVD, CVPR 2023; ``../shared/PAPERS.md`` §1):
  1. image-teacher student >= video-teacher student on the spatial task (digit);
  2. video-teacher student >= image-teacher student on the temporal task (motion);
  3. co-teaching >= both single-teacher students on both;
  4. the video teacher's features are less similar across frames than the image teacher's.

    python benchmarks/mvd_claims.py --out runs/mvd_claims                 # tiny, CPU (~1.5 h on 2 busy cores)
    python benchmarks/mvd_claims.py --out runs/mvd_gpu --steps 3000       # longer, on a GPU

Runs already finished in ``--out`` are reused (their recorded cost included), so an interrupted benchmark
continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

STUDENTS = {"image": (1.0, 0.0), "video": (0.0, 1.0), "both": (1.0, 1.0)}  # (λ_img, λ_vid)
LABELS = ("digit", "motion")


def teachers_of(kind: str) -> list[str]:
    """The teachers a student kind distils from (those with a non-zero weight)."""
    return [name for name, w in zip(("image", "video"), STUDENTS[kind], strict=True) if w]


def overrides(manifest: Path, seed: int, steps: int | None, workers: int) -> list[str]:
    out = [
        f"data.manifest={manifest}",
        f"train.seed={seed}",
        f"train.workers={workers}",
        "train.progress=false",
    ]
    if steps is not None:
        out += [
            f"train.steps={steps}",
            f"train.warmup_steps={max(steps // 10, 0)}",
            f"train.ckpt_every={steps}",
        ]
    return out


def train(recipe: str, sets: list[str], run_dir: Path) -> float:
    """Run (or reuse) one pre-training run; returns its wall-clock seconds, recorded in ``cost.json``."""
    from vidfm.config import apply_overrides
    from vidfm.recipes import get_recipe
    from vidfm.train.pretrain import pretrain

    cost = run_dir / "cost.json"
    if cost.is_file():
        return json.loads(cost.read_text())["seconds"]
    start = time.perf_counter()
    pretrain(apply_overrides(get_recipe(recipe), sets), run_dir)
    seconds = time.perf_counter() - start
    cost.write_text(json.dumps({"recipe": recipe, "seconds": seconds}) + "\n")
    return seconds


def probe(
    run_dir: Path, manifest: Path, workers: int, device: torch.device, random_init: bool = False
) -> dict[str, tuple[float, float]]:
    """{label: (linear top-1, kNN top-1)} of a run's frozen encoder (mean-pooled tokens; or a random-init
    encoder of the same config), cached in the run folder."""
    cache = run_dir / ("probe_random_init.json" if random_init else "probe.json")
    if cache.is_file():
        return {k: tuple(v) for k, v in json.loads(cache.read_text()).items()}
    from vidfm.recipes import load_run_encoder

    encoder, cfg = load_run_encoder(run_dir, random_init=random_init)
    result = probe_encoder(encoder, cfg, manifest, workers, device)
    cache.write_text(json.dumps(result) + "\n")
    return result


def probe_encoder(encoder, cfg, manifest: Path, workers: int, device: torch.device) -> dict:  # noqa: ANN001
    """Features of the train and test splits, then the linear and kNN probes per label (``encoder`` None:
    the trivial colour-histogram + frame-difference baseline)."""
    import dataclasses

    from vidfm.eval.frozen import probe_features, split_features

    data = dataclasses.replace(cfg.data, manifest=str(manifest))
    feats = split_features(encoder, data, cfg.augment, workers=workers, device=device, progress=False)
    rows = probe_features(feats["train"], feats["test"], list(LABELS))
    return {r.label: (r.linear, r.knn) for r in rows}


def similarity(teachers: dict[str, Path], manifest: Path, workers: int, device: torch.device, out: Path):
    from torch.utils.data import DataLoader

    from vidfm.data.config import DataConfig, build_dataset
    from vidfm.data.datasets import collate
    from vidfm.teachers.analysis import plot_similarity, teacher_similarity
    from vidfm.teachers.vit import load_teacher

    data = DataConfig(manifest=str(manifest), split="test", num_frames=16, stride=1, short_side=64)
    dataset = build_dataset(data, train=False)
    results = {}
    for name, path in teachers.items():
        loader = DataLoader(dataset, batch_size=16, num_workers=workers, collate_fn=collate)
        results[name] = teacher_similarity(
            load_teacher(path), loader, tubelet=2, device=device, max_clips=256
        )
    plot_similarity(results, out)
    return results


def mean_pm(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def results_table(
    results: dict[str, list[dict]], teacher_cost: dict[str, float], reference: dict[str, tuple[float, dict]]
) -> str:
    """Markdown: per student kind, cost in minutes (student + its teachers' pre-training) and probe top-1."""
    from vidfm.eval.report import markdown_table

    header = ["encoder", "cost min (student + teachers)"]
    header += [f"{label} {probe}" for label in LABELS for probe in ("linear", "kNN")]
    rows = []
    for kind, runs in results.items():
        student = statistics.mean(r["student_s"] for r in runs) / 60
        teachers = sum(teacher_cost[t] for t in teachers_of(kind)) / 60
        row = [
            f"MVD student, {kind} teacher(s)",
            f"{student + teachers:.1f} ({student:.1f} + {teachers:.1f})",
        ]
        row += [mean_pm([r[label][i] for r in runs]) for label in LABELS for i in (0, 1)]
        rows.append(row)
    for name, (seconds, scores) in reference.items():
        rows.append(
            [name, f"{seconds / 60:.1f}"] + [f"{scores[label][i]:.3f}" for label in LABELS for i in (0, 1)]
        )
    return markdown_table(header, rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/mvd_claims")
    p.add_argument("--clips", type=int, default=2000, help="digits-motion clips")
    p.add_argument("--steps", type=int, default=None, help="steps of every run (default: the tiny recipes')")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="student seeds")
    p.add_argument("--workers", type=int, default=1, help="decoding worker processes")
    p.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1 avoids spin-waiting on busy cores)"
    )
    args = p.parse_args()

    from vidfm.data.digits import make_digits_motion
    from vidfm.recipes import load_run_config
    from vidfm.teachers.analysis import format_similarity
    from vidfm.utils import default_device, setup_logging

    setup_logging()
    torch.set_num_threads(args.threads)
    device = default_device()
    out = Path(args.out)
    manifest = out / "digits-motion" / "manifest.csv"
    if not manifest.is_file():
        manifest = make_digits_motion(manifest.parent, n=args.clips, seed=0, workers=args.workers)

    # Stage 1: the teachers, once (seed 0).
    base = overrides(manifest, 0, args.steps, args.workers)
    teacher_runs = {"image": out / "teacher_image", "video": out / "teacher_video"}
    teacher_cost = {
        "image": train("mae_image:tiny", base, teacher_runs["image"]),
        "video": train("videomae:tiny", base, teacher_runs["video"]),
    }

    # Stage 2: three students per seed.
    results: dict[str, list[dict]] = {kind: [] for kind in STUDENTS}
    for seed in args.seeds:
        for kind, (w_img, w_vid) in STUDENTS.items():
            sets = overrides(manifest, seed, args.steps, args.workers) + [
                f"teachers.image_weight={w_img}",
                f"teachers.video_weight={w_vid}",
            ]
            sets += [f"teachers.image={teacher_runs['image']}"] if w_img else []
            sets += [f"teachers.video={teacher_runs['video']}"] if w_vid else []
            run_dir = out / f"student_{kind}_seed{seed}"
            seconds = train("mvd:tiny", sets, run_dir)
            total = seconds + sum(teacher_cost[t] for t in teachers_of(kind))
            results[kind].append(
                {
                    "seed": seed,
                    "student_s": seconds,
                    "total_s": total,
                    **probe(run_dir, manifest, args.workers, device),
                }
            )
    first = out / f"student_both_seed{args.seeds[0]}"
    reference = {
        "random init (student architecture)": (
            0.0,
            probe(first, manifest, args.workers, device, random_init=True),
        ),
        "trivial baseline (colour histogram + frame difference)": (
            0.0,
            probe_encoder(None, load_run_config(first), manifest, args.workers, device),
        ),
        "VideoMAE teacher itself": (
            teacher_cost["video"],
            probe(teacher_runs["video"], manifest, args.workers, device),
        ),
    }
    table = results_table(results, teacher_cost, reference)

    sims = similarity(
        {"image teacher (MAE)": teacher_runs["image"], "video teacher (VideoMAE)": teacher_runs["video"]},
        manifest,
        args.workers,
        device,
        out / "similarity.png",
    )
    sim_table = format_similarity(sims)

    def lin(kind: str, label: str) -> float:
        return statistics.mean(r[label][0] for r in results[kind])

    img_sim, vid_sim = (s.off_diagonal for s in sims.values())
    claims = [
        (
            "image-teacher student >= video-teacher student on digit",
            lin("image", "digit") >= lin("video", "digit"),
        ),
        (
            "video-teacher student >= image-teacher student on motion",
            lin("video", "motion") >= lin("image", "motion"),
        ),
        (
            "co-teaching >= both single teachers on digit and motion",
            all(lin("both", label) >= max(lin("image", label), lin("video", label)) for label in LABELS),
        ),
        ("video-teacher features less similar across frames", vid_sim < img_sim),
    ]
    steps = args.steps or "recipe default (300)"
    text = "\n\n".join(
        [
            f"digits-motion, {args.clips} clips; steps per run: {steps}; student seeds {args.seeds}; "
            f"device {device}; linear/kNN top-1 on the test split, mean ± std over seeds (chance: digit 0.100, "
            "motion 0.125)",
            table,
            "Cross-frame cosine similarity of the teachers' targets (off-diagonal mean; by temporal distance):",
            sim_table,
            "Claims (linear probe means):\n"
            + "\n".join(f"- {c}: {'yes' if ok else 'NO'}" for c, ok in claims),
        ]
    )
    (out / "results.md").write_text(text + "\n")
    (out / "results.json").write_text(
        json.dumps(
            {
                "students": results,
                "teacher_cost_s": teacher_cost,
                "similarity_off_diagonal": {k: s.off_diagonal for k, s in sims.items()},
                "claims": dict(claims),
            },
            indent=2,
        )
        + "\n"
    )
    print(text)


if __name__ == "__main__":
    main()
