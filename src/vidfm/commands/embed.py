"""``vidfm embed``: clip embeddings of a folder of videos with a run's encoder, to .npy or .parquet."""

from __future__ import annotations

import argparse

from vidfm.commands import Command
from vidfm.commands.options import add_clip_views


def options(p: argparse.ArgumentParser) -> None:
    p.add_argument("videos", nargs="+", help="folder, manifest.csv, list.txt or video files")
    p.add_argument("--checkpoint", required=True, help="vidfm run folder")
    p.add_argument("--out", required=True, help="output file: .npy or .parquet")
    p.add_argument("--random-init", action="store_true", help="a random-init encoder of the run's config")
    add_clip_views(p)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--part-size", type=int, default=512, help="videos per saved part (the resume unit)")
    p.add_argument("--workers", type=int, default=2, help="decoding worker processes")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    """export clip embeddings of many videos (npy or parquet with paths), resumable

    Embed every video of VIDEOS (a folder, searched recursively; a CSV manifest; a text file with one path per
    line; or video files) with the encoder of a run. Writes OUT (.npy: float32 [N,D] with OUT.paths.txt giving
    the row order; .parquet: path + embedding columns). Work is saved in parts under OUT.parts/, so an
    interrupted export resumes where it stopped. Unreadable videos are reported, listed in OUT.failed.txt and
    skipped.
    """
    from vidfm.eval.embed import embed_videos

    source = args.videos[0] if len(args.videos) == 1 else list(args.videos)
    res = embed_videos(
        source,
        args.checkpoint,
        args.out,
        pool=args.pool,
        clips=args.clips,
        crops=args.crops,
        batch_size=args.batch_size,
        part_size=args.part_size,
        workers=args.workers,
        random_init=args.random_init,
        progress=not args.no_progress,
    )  # a missing run, unreadable list or wrong --out suffix is a one-line error (vidfm.errors.UserError)
    print(
        f"{res.count} embeddings of dimension {res.dim} -> {res.out} ({len(res.failed)} unreadable, skipped)"
    )
    return 0


COMMANDS = (Command("embed", run, options),)
