"""``vidfm teacher``: inspect teachers. ``vidfm teacher similarity``: cross-frame feature similarity."""

from __future__ import annotations

import argparse

from vidfm.commands import Command


def similarity_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--teacher",
        action="append",
        required=True,
        metavar="[NAME=]PATH",
        help="teacher source (run folder, converted checkpoint, HF folder, official .pth); repeatable",
    )
    p.add_argument("--data", required=True, help="CSV manifest or class-per-folder root")
    p.add_argument("--split", default="test", help="manifest split (default: test; 'all' for every row)")
    p.add_argument("--frames", type=int, default=16, help="frames per clip")
    p.add_argument("--stride", type=int, default=4, help="frame stride")
    p.add_argument("--size", type=int, default=None, help="clip side on decode (default: first teacher's)")
    p.add_argument("--tubelet", type=int, default=2, help="an image teacher sees frames[::tubelet]")
    p.add_argument("--max-clips", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default=None, help="figure path (.png); none written when omitted")


def run_similarity(args: argparse.Namespace) -> int:
    """cosine similarity of a teacher's features between the time steps of a clip

    For each teacher, the mean cosine similarity between its feature maps at different time steps of the same
    clip (position by position), over the clips of a manifest: the MVD paper's evidence that a video teacher's
    features change more over time than an image teacher's. An image teacher sees frames[::tubelet], as in
    MVD. Prints a table and writes a heat-map figure.
    """
    from torch.utils.data import DataLoader

    from vidfm.data.config import DataConfig, build_dataset
    from vidfm.data.datasets import collate
    from vidfm.teachers.analysis import format_similarity, plot_similarity, teacher_similarity
    from vidfm.teachers.vit import load_teacher
    from vidfm.utils import default_device

    teachers = {}
    for spec in args.teacher:
        name, _, path = spec.rpartition("=")
        teachers[name or path] = load_teacher(path, num_frames=args.frames)
    size = args.size or next(iter(teachers.values())).size
    data = DataConfig(
        manifest=args.data,
        split=None if args.split == "all" else args.split,
        num_frames=args.frames,
        stride=args.stride,
        short_side=size,
    )
    dataset = build_dataset(data, train=False)
    results = {}
    for name, teacher in teachers.items():
        loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers, collate_fn=collate)
        results[f"{name} ({teacher.kind})"] = teacher_similarity(
            teacher, loader, args.tubelet, default_device(), args.max_clips
        )
    print(format_similarity(results))
    if args.out:
        plot_similarity(results, args.out)
        print(f"figure: {args.out}")
    return 0


COMMANDS = (
    Command(
        "teacher",
        doc="inspect distillation teachers (cross-frame feature similarity)",
        subcommands=(Command("similarity", run_similarity, similarity_options),),
    ),
)
