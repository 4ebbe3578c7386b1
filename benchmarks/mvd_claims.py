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

    python benchmarks/mvd_claims.py --out runs/mvd_claims                 # the tiny recipes as they are
    python benchmarks/mvd_claims.py --out runs/mvd_cpu --manifest M.csv \
        --teacher-steps 300 --steps 100 --lr 1e-3                           # ~1 h wall on 2 busy CPU cores
    python benchmarks/mvd_claims.py --out runs/mvd_gpu --teacher-steps 3000 --steps 3000   # on a GPU

Cost is counted per run as wall-clock and CPU seconds (this process and its reaped data workers), in
``RUN/cost.json``; every student's cost includes its teachers'.

Runs already finished in ``--out`` are reused (their recorded cost included), so an interrupted benchmark
continues where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch
from common import LABELS, cpu_seconds, probe_encoder, probe_run, train_run

STUDENTS = {"image": (1.0, 0.0), "video": (0.0, 1.0), "both": (1.0, 1.0)}  # (λ_img, λ_vid)


def teachers_of(kind: str) -> list[str]:
    """The teachers a student kind distils from (those with a non-zero weight)."""
    return [name for name, w in zip(("image", "video"), STUDENTS[kind], strict=True) if w]


def overrides(
    manifest: Path, seed: int, steps: int | None, workers: int, lr: float | None = None
) -> list[str]:
    """``--set`` items of one run: data, seed, and (when given) steps with 10 % warm-up and a fixed lr."""
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
    if lr is not None:  # one lr for every run instead of each recipe's own (replaces the scaling rule)
        out += [f"train.lr={lr}"]
    return out


def run_teacher(run_dir: Path, random_init: bool = False):  # noqa: ANN201
    """A teacher run as MVD loads it, or (``random_init``) the same architecture untrained: the control that
    tells what the training added to the cross-frame similarity and what the architecture alone gives."""
    from vidfm.recipes import load_run_encoder
    from vidfm.teachers.vit import ViTTeacher, load_teacher

    if not random_init:
        return load_teacher(run_dir)
    encoder, cfg = load_run_encoder(run_dir, random_init=True)
    return ViTTeacher(encoder.eval(), mean=tuple(cfg.augment.mean), std=tuple(cfg.augment.std))


class Centred(torch.nn.Module):
    """A teacher whose tokens have each clip's mean token removed ([B,N,D] - mean over N).

    Cosine similarity is dominated by a component that every token shares; when a teacher's tokens are
    nearly one vector (a collapsed last block), its raw cross-frame similarity is ~1 whatever the motion.
    Measured with and without this component, the similarity tells a collapsed teacher from a static one."""

    def __init__(self, teacher: torch.nn.Module) -> None:
        super().__init__()
        self.teacher = teacher
        self.per_frame = getattr(teacher, "per_frame", False)

    def forward(self, video: torch.Tensor):  # noqa: ANN201
        out = self.teacher(video)
        share = out.tokens.mean(1).norm(dim=-1) / out.tokens.norm(dim=-1).mean(1)  # [B], 1 = all one vector
        self.shared = getattr(self, "shared", []) + share.tolist()
        return dataclasses.replace(out, tokens=out.tokens - out.tokens.mean(1, keepdim=True))


def similarity(teachers: dict, manifest: Path, workers: int, device: torch.device, out: Path) -> dict:
    """Cross-frame similarity of each teacher's targets over (up to) 256 test clips; heat maps to ``out``."""
    from torch.utils.data import DataLoader

    from vidfm.data.config import DataConfig, build_dataset
    from vidfm.data.datasets import collate
    from vidfm.teachers.analysis import plot_similarity, teacher_similarity

    data = DataConfig(manifest=str(manifest), split="test", num_frames=16, stride=1, short_side=64)
    dataset = build_dataset(data, train=False)
    results = {}
    for name, teacher in teachers.items():
        loader = DataLoader(dataset, batch_size=16, num_workers=workers, collate_fn=collate)
        results[name] = teacher_similarity(teacher, loader, tubelet=2, device=device, max_clips=256)
    plot_similarity(results, out)
    return results


def mean_pm(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def cost_cell(student: dict[str, float], teachers: list[dict[str, float]], key: str) -> str:
    """``total (student + teachers)`` in minutes for one kind of cost (``wall`` or ``cpu``)."""
    own, theirs = student[key] / 60, sum(t[key] for t in teachers) / 60
    return f"{own + theirs:.1f} ({own:.1f} + {theirs:.1f})"


def results_table(
    results: dict[str, list[dict]],
    teacher_cost: dict[str, dict[str, float]],
    reference: dict[str, tuple[dict[str, float] | None, dict]],
) -> str:
    """Markdown: per encoder, pre-training cost in minutes (a student's includes its teachers') and top-1."""
    from vidfm.eval.report import markdown_table

    header = ["encoder", "CPU min (student + teachers)", "wall min (student + teachers)"]
    header += [f"{label} {probe}" for label in LABELS for probe in ("linear", "kNN")]
    rows = []
    for kind, runs in results.items():
        student = {k: statistics.mean(r["cost"][k] for r in runs) for k in ("wall", "cpu")}
        teachers = [teacher_cost[t] for t in teachers_of(kind)]
        row = [f"MVD student, {kind} teacher(s)"]
        row += [cost_cell(student, teachers, "cpu"), cost_cell(student, teachers, "wall")]
        row += [mean_pm([r[label][i] for r in runs]) for label in LABELS for i in (0, 1)]
        rows.append(row)
    for name, (cost, scores) in reference.items():
        row = [name] + ([f"{cost['cpu'] / 60:.1f}", f"{cost['wall'] / 60:.1f}"] if cost else ["0", "0"])
        rows.append(row + [f"{scores[label][i]:.3f}" for label in LABELS for i in (0, 1)])
    return markdown_table(header, rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/mvd_claims")
    p.add_argument("--manifest", default=None, help="an existing digits-motion manifest (default: make one)")
    p.add_argument("--clips", type=int, default=2000, help="digits-motion clips, when making them")
    p.add_argument("--steps", type=int, default=None, help="steps of every student (default: mvd:tiny's)")
    p.add_argument(
        "--teacher-steps", type=int, default=None, help="steps of each teacher (default: each tiny recipe's)"
    )
    p.add_argument("--lr", type=float, default=None, help="one lr for every run (default: each recipe's)")
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
    start, cpu_start = time.perf_counter(), cpu_seconds()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.manifest:
        manifest = Path(args.manifest)
    else:
        manifest = out / "digits-motion" / "manifest.csv"
        if not manifest.is_file():
            manifest = make_digits_motion(manifest.parent, n=args.clips, seed=0, workers=args.workers)
    clips = sum(1 for _ in manifest.open()) - 1  # minus the header

    # Stage 1: the teachers, once (seed 0).
    base = overrides(manifest, 0, args.teacher_steps, args.workers, args.lr)
    teacher_runs = {"image": out / "teacher_image", "video": out / "teacher_video"}
    teacher_cost = {
        "image": train_run("mae_image:tiny", base, teacher_runs["image"]),
        "video": train_run("videomae:tiny", base, teacher_runs["video"]),
    }

    # Stage 2: three students per seed.
    results: dict[str, list[dict]] = {kind: [] for kind in STUDENTS}
    for seed in args.seeds:
        for kind, (w_img, w_vid) in STUDENTS.items():
            sets = overrides(manifest, seed, args.steps, args.workers, args.lr) + [
                f"teachers.image_weight={w_img}",
                f"teachers.video_weight={w_vid}",
            ]
            sets += [f"teachers.image={teacher_runs['image']}"] if w_img else []
            sets += [f"teachers.video={teacher_runs['video']}"] if w_vid else []
            run_dir = out / f"student_{kind}_seed{seed}"
            cost = train_run("mvd:tiny", sets, run_dir)
            results[kind].append(
                {"seed": seed, "cost": cost, **probe_run(run_dir, manifest, args.workers, device)}
            )
    first = out / f"student_both_seed{args.seeds[0]}"
    reference = {
        "random init (student architecture)": (
            None,
            probe_run(first, manifest, args.workers, device, kind="random"),
        ),
        "trivial baseline (colour histogram + frame difference)": (
            None,
            probe_encoder(None, load_run_config(first), manifest, args.workers, device),
        ),
        "video teacher itself (videomae:tiny)": (
            teacher_cost["video"],
            probe_run(teacher_runs["video"], manifest, args.workers, device),
        ),
    }
    table = results_table(results, teacher_cost, reference)

    named = {"image teacher (MAE)": "image", "video teacher (VideoMAE)": "video"}
    sim_teachers = {name: run_teacher(teacher_runs[kind]) for name, kind in named.items()}
    sim_teachers |= {
        f"{name}, random init": run_teacher(teacher_runs[kind], random_init=True)
        for name, kind in named.items()
    }
    centred = {f"{name}, clip mean removed": Centred(t) for name, t in sim_teachers.items()}
    sim_teachers |= centred
    sims = similarity(
        sim_teachers,
        manifest,
        args.workers,
        device,
        out / "similarity.png",
    )
    sim_table = format_similarity(sims)
    shared = {
        name.removesuffix(", clip mean removed"): statistics.mean(t.shared) for name, t in centred.items()
    }
    shared_text = "; ".join(f"{name} {value:.3f}" for name, value in shared.items())

    def mean(kind: str, label: str, i: int) -> float:
        return statistics.mean(r[label][i] for r in results[kind])

    def margins(a: str, b: str, label: str) -> str:
        """a - b on the linear and the kNN probe."""
        return f"linear {mean(a, label, 0) - mean(b, label, 0):+.3f}, kNN {mean(a, label, 1) - mean(b, label, 1):+.3f}"

    img_sim, vid_sim = (sims[name].off_diagonal for name in named)
    claims = [
        (
            "image-teacher student >= video-teacher student on digit",
            mean("image", "digit", 0) >= mean("video", "digit", 0),
            "image - video: " + margins("image", "video", "digit"),
        ),
        (
            "video-teacher student >= image-teacher student on motion",
            mean("video", "motion", 0) >= mean("image", "motion", 0),
            "video - image: " + margins("video", "image", "motion"),
        ),
        (
            "co-teaching >= both single teachers on digit and motion",
            all(
                mean("both", label, 0) >= max(mean("image", label, 0), mean("video", label, 0))
                for label in LABELS
            ),
            "; ".join(
                f"both - {k} on {label}: {margins('both', k, label)}"
                for label in LABELS
                for k in ("image", "video")
            ),
        ),
        (
            "video-teacher features less similar across frames",
            vid_sim < img_sim,
            f"off-diagonal similarity: image {img_sim:.3f}, video {vid_sim:.3f}; untrained: image "
            f"{sims['image teacher (MAE), random init'].off_diagonal:.3f}, video "
            f"{sims['video teacher (VideoMAE), random init'].off_diagonal:.3f}; clip mean removed: image "
            f"{sims['image teacher (MAE), clip mean removed'].off_diagonal:.3f}, video "
            f"{sims['video teacher (VideoMAE), clip mean removed'].off_diagonal:.3f}",
        ),
    ]
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
    steps = f"teachers {args.teacher_steps or 'recipe default (300 / 500)'}, students {args.steps or 'recipe default (300)'}"
    text = "\n\n".join(
        [
            f"digits-motion, {clips} clips ({manifest}); steps per run: {steps}; lr: "
            f"{args.lr or 'each recipe its own'}; student seeds {args.seeds}; device {device}; linear/kNN top-1 on "
            "the test split, mean ± std over seeds (chance: digit 0.100, motion 0.125)",
            table,
            "Cross-frame cosine similarity of the teachers' targets (off-diagonal mean; by temporal distance):",
            sim_table,
            "Share of the clip's mean token in its tokens (|mean token| / mean |token|; 1 = every token the "
            "same vector): " + shared_text,
            "Claims (held = linear-probe means in the claimed order; margins are differences of seed means):\n"
            + "\n".join(f"- {c}: {'holds' if ok else 'does NOT hold'} ({why})" for c, ok, why in claims),
            f"This invocation: {wall / 60:.1f} min wall, {cpu / 60:.1f} min CPU (runs reused from an earlier "
            "invocation count in the table, not here).",
        ]
    )
    (out / "results.md").write_text(text + "\n")
    (out / "results.json").write_text(
        json.dumps(
            {
                "args": vars(args),
                "students": results,
                "teacher_cost": teacher_cost,
                "reference": {k: v[1] for k, v in reference.items()},
                "similarity_off_diagonal": {k: s.off_diagonal for k, s in sims.items()},
                "similarity_by_distance": {k: s.by_distance().tolist() for k, s in sims.items()},
                "mean_token_share": shared,
                "claims": {c: ok for c, ok, _ in claims},
                "invocation": {"wall_s": wall, "cpu_s": cpu},
            },
            indent=2,
        )
        + "\n"
    )
    print(text)


if __name__ == "__main__":
    main()
