"""``vidfm data``: generate the digits-motion dataset, inspect videos (codec, size, frames, damage), write
streaming shards."""

from __future__ import annotations

import argparse
from pathlib import Path

from vidfm.commands import Command
from vidfm.commands.options import add_recipe


def digits_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("out_dir", metavar="OUT_DIR", help="output folder (created)")
    p.add_argument("--n", type=int, default=3000, help="number of clips (default 3000)")
    p.add_argument("--frames", type=int, default=16, help="frames per clip (default 16)")
    p.add_argument("--size", type=int, default=64, help="frame side in pixels, even (default 64)")
    p.add_argument(
        "--contrast",
        type=float,
        default=0.5,
        help="background texture, 0 = plain .. 1 = strong (default 0.5)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--workers", type=int, default=0, help="encoder processes, 0 = this process (default 0)")
    p.add_argument(
        "--audio",
        action="store_true",
        help="add a tone track (labels 'sound', from the audio alone, and 'motion_sound', from both)",
    )


def inspect_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="PATH", help="video file, folder or CSV manifest")
    p.add_argument(
        "--no-decode", action="store_true", help="only open and demux (fast; misses damaged frames)"
    )


def shard_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("manifest", metavar="MANIFEST", help="CSV manifest or class-per-folder root")
    p.add_argument("out", metavar="OUT", help="output folder (created)")
    p.add_argument("--size", default="1GB", help="shard size limit, e.g. 1GB, 256MB (default 1GB)")
    p.add_argument("--short-side", type=int, default=256, help="stored short side in pixels (default 256)")
    p.add_argument("--crf", type=int, default=23, help="x264 quality, lower is better (default 23)")
    p.add_argument("--split", default=None, help="only rows of this split (default: all rows)")
    p.add_argument("--seed", type=int, default=0, help="shuffle seed (default 0)")
    p.add_argument("--no-shuffle", action="store_true", help="keep the manifest order")
    p.add_argument("--workers", type=int, default=0, help="encoding processes, 0 = this one (default 0)")


def cache_targets_options(p: argparse.ArgumentParser) -> None:
    add_recipe(p, "mvd:tiny")
    p.add_argument("--out", required=True, help="cache folder (created; finished shards are kept)")
    p.add_argument("--views", type=int, default=4, help="augmented views per clip (default 4)")
    p.add_argument("--dtype", choices=["fp16", "bf16"], default="fp16", help="storage type (default fp16)")
    p.add_argument("--size", default="1GB", help="shard size, e.g. 1GB (default 1GB)")
    p.add_argument("--batch", type=int, default=8, help="clips per teacher forward (default 8)")
    p.add_argument("--workers", type=int, default=4, help="decoding workers (default 4)")


def cache_clips_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("manifest", metavar="MANIFEST", help="CSV manifest or class-per-folder root")
    p.add_argument("out", metavar="OUT", help="store folder (created; replaced if present)")
    p.add_argument("--frames", type=int, default=16, help="frames per clip (default 16)")
    p.add_argument("--stride", type=int, default=4, help="dense frame step (default 4)")
    p.add_argument("--sampling", choices=["dense", "segment"], default="dense", help="frame choice")
    p.add_argument("--short-side", type=int, default=224, help="stored side S (default 224)")
    p.add_argument("--clips-per-video", type=int, default=4, help="fixed clips per video (default 4)")
    p.add_argument("--split", default=None, help="only rows of this split (default: all rows)")
    p.add_argument("--workers", type=int, default=0, help="decoding processes, 0 = this one (default 0)")


def run_digits(args: argparse.Namespace) -> int:
    """generate the digits-motion dataset (clips + manifest.csv)

    Render moving handwritten digits (8 motions: left, right, up, down, rotate_cw, rotate_ccw, zoom_in,
    zoom_out) over a textured background, encode them as H.264 mp4 and write OUT_DIR/manifest.csv
    (path,digit,motion,caption,split,source). Same arguments, same bytes.
    """
    from vidfm.data.digits import make_digits_motion

    manifest = make_digits_motion(
        args.out_dir,
        n=args.n,
        num_frames=args.frames,
        size=args.size,
        contrast=args.contrast,
        seed=args.seed,
        workers=args.workers,
        audio=args.audio,
    )
    print(f"wrote {args.n} clips and {manifest}")
    return 0


def _files(path: Path) -> tuple[list[Path], Path]:
    """The videos named by ``path`` and the folder their names are shown relative to."""
    from vidfm.data.datasets import VIDEO_EXTENSIONS, read_manifest

    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
        return found, path
    if path.suffix.lower() == ".csv":
        records = read_manifest(path, label_columns=[])
        return list(dict.fromkeys(Path(r.path) for r in records)), path.parent
    return [path], path.parent


def _inspect_one(path: Path, decode: bool) -> tuple[list[str], str, str]:
    """(table cells, status, reason) of one file; never raises."""
    from vidfm.data.decode import VideoDecodeError, check_decode, probe

    try:
        info = probe(path, keyframes=True)
    except VideoDecodeError as e:
        return ["-"] * 6, "error", e.reason
    except Exception as e:  # a report must cover every file, whatever went wrong
        return ["-"] * 6, "error", f"{type(e).__name__}: {e}"
    cells = [
        info.format.split(",")[0],
        info.codec,
        f"{info.width}x{info.height}",
        f"{info.fps:.2f}",
        str(info.num_frames),
        str(len(info.keyframes or [])),
    ]
    status, reasons = "ok", list(info.problems)
    if info.declared_frames and info.declared_frames != info.num_frames:
        status = "partial"
    elif reasons:
        status = "warning"
    if decode:
        try:
            check = check_decode(path)
        except Exception as e:
            return cells, "error", f"{type(e).__name__}: {e}"
        if check.decoded < check.stored:
            status = "partial"
            reasons.insert(0, f"only {check.decoded} of {check.stored} frames decode")
        elif check.errors or check.warnings:
            status = "warning" if status == "ok" else status
        reasons += [f"decoder: {m}" for m in (check.errors + check.warnings)[:3]]
    return cells, status, "; ".join(reasons)


def run_inspect(args: argparse.Namespace) -> int:
    """check that videos decode; table of codec, size, fps, frames, keyframes, status

    PATH is a video file, a folder (searched recursively for video files) or a CSV manifest with a `path`
    column. Every file is opened, demuxed and (unless --no-decode) fully decoded. Status: ok; warning (all
    frames decode but the decoder complained or timestamps are unusable); partial (fewer frames than declared
    or stored); error (cannot be opened or decoded). Exit code 0 even when files fail; the last line says how
    many did.
    """
    from vidfm.errors import UserError, one_line

    path = Path(args.path)
    if not path.exists():
        raise UserError(f"{path} does not exist")
    try:
        files, root = _files(path)
    except Exception as e:  # an unreadable manifest is a one-line error, not a traceback
        raise UserError(f"{path}: {one_line(e)}") from e
    if not files:
        print(f"no video files under {path}")
        return 0
    header = ["file", "container", "codec", "size", "fps", "frames", "keyframes", "status"]
    rows, notes = [], []
    for f in files:
        cells, status, reason = _inspect_one(f, decode=not args.no_decode)
        name = str(f.relative_to(root)) if f.is_relative_to(root) else str(f)
        rows.append([name, *cells, status])
        if status != "ok":
            notes.append(f"{status:8s} {name}: {reason}")
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    if notes:
        print()
        print("\n".join(notes))
    failed = sum(r[-1] in ("error", "partial") for r in rows)
    warned = sum(r[-1] == "warning" for r in rows)
    print(f"\n{failed} of {len(rows)} files failed" + (f", {warned} with warnings" if warned else ""))
    return 0


def run_shard(args: argparse.Namespace) -> int:
    """write webdataset-style tar shards of resized, re-encoded clips

    Decode every clip of MANIFEST (a CSV manifest or a class-per-folder root), resize its short side,
    re-encode it as H.264 and pack it with its labels and caption into OUT/shard-*.tar files of at most --size
    bytes, plus OUT/index.json. Clips are shuffled before packing. Videos that cannot be decoded are reported
    and skipped. Train from OUT with vidfm.data.shards.ShardDataset.
    """
    from vidfm.data.datasets import DataError, source_records
    from vidfm.data.shards import parse_size, write_shards

    try:
        size = parse_size(args.size)
        records = source_records(args.manifest, args.split)
    except (DataError, ValueError) as e:
        from vidfm.errors import UserError

        raise UserError(str(e)) from e
    index = write_shards(
        records,
        args.out,
        max_bytes=size,
        short_side=args.short_side,
        crf=args.crf,
        seed=None if args.no_shuffle else args.seed,
        workers=args.workers,
    )
    n = index["total"]
    per_clip = index["bytes"] / max(n, 1)
    print(
        f"wrote {n} clips in {len(index['shards'])} shard(s) to {args.out}: {index['bytes'] / 2**20:.1f} MiB, "
        f"{per_clip / 2**10:.1f} KiB per clip, {n / max(index['seconds'], 1e-9):.1f} clips/s"
    )
    return _print_failures(index["failed"], len(records))


def run_cache_targets(args: argparse.Namespace) -> int:
    """precompute a distillation recipe's teacher outputs for K augmented views per clip

    Build the recipe's dataset and task (as `vidfm pretrain` does), run its teachers on K fixed augmented
    views (frames and crop) of every clip and store their outputs in fp16/bf16 shards under --out. Train with
    --set train.teacher_cache=OUT: each epoch then picks one cached view per clip and no teacher is loaded or
    run. Under torchrun the shards are split over the processes.
    """
    import time

    from vidfm.config import apply_overrides
    from vidfm.data.config import build_dataset
    from vidfm.data.datasets import collate
    from vidfm.data.shards import parse_size
    from vidfm.recipes import get_recipe
    from vidfm.teachers.cache import build_teacher_cache
    from vidfm.train.distributed import init_distributed

    cfg = apply_overrides(get_recipe(args.recipe), args.overrides)
    info = init_distributed(device=cfg.train.device)
    dataset = build_dataset(cfg.data, seed=cfg.train.seed)  # the dataset `vidfm pretrain` trains on
    t0 = time.perf_counter()
    index = build_teacher_cache(
        cfg.build_task,
        dataset,
        args.out,
        views=args.views,
        collate=collate,
        batch_size=args.batch,
        dtype=args.dtype,
        max_bytes=parse_size(args.size),
        seed=cfg.train.seed,
        workers=args.workers,
        device=info.device,
        rank=info.rank,
        world_size=info.world_size,
    )
    seconds = time.perf_counter() - t0
    n, per_clip = index["num_clips"], index["bytes_per_clip"]
    if info.is_main:
        print(
            f"cached {args.views} view(s) of {n} clips in {args.out}: {per_clip / 2**20:.2f} MiB per clip "
            f"({args.dtype}), {n * per_clip / 2**30:.2f} GiB in all, {len(index['shards'])} shard(s), "
            f"{n * args.views / seconds:.1f} views/s; train with --set train.teacher_cache={args.out}"
        )
    return 0


def run_cache_clips(args: argparse.Namespace) -> int:
    """decode every video once into a memory-mappable store of uint8 clips

    Decode a few fixed clips per video of MANIFEST (evenly spaced; every distinct window for short videos),
    resize the short side to --short-side, centre-crop it square and write them as raw uint8 [N,T,S,S,3]
    (OUT/clips.u8) with labels, captions and splits (OUT/store.json). Train from it with --set
    data.clip_store=OUT (add data.resident=true to keep it on the training device). Videos that cannot be
    decoded are reported and left out.
    """
    import time

    from vidfm.data.clip_store import write_clip_store
    from vidfm.data.datasets import DataError, source_records
    from vidfm.data.sampling import SamplingConfig

    try:
        sampling = SamplingConfig(mode=args.sampling, num_frames=args.frames, stride=args.stride)
        records = source_records(args.manifest, args.split)
    except (DataError, ValueError) as e:
        from vidfm.errors import UserError

        raise UserError(str(e)) from e
    t0 = time.perf_counter()
    index = write_clip_store(
        records, args.out, sampling, args.short_side, args.clips_per_video, workers=args.workers
    )
    seconds = time.perf_counter() - t0
    n, videos = index["shape"][0], len(index["videos"])
    mb = n * args.frames * args.short_side**2 * 3 / 2**20
    print(
        f"wrote {n} clips of {videos} videos to {args.out}: {mb:.1f} MiB, {videos / max(seconds, 1e-9):.1f} "
        f"videos/s; train with --set data.clip_store={args.out}"
    )
    return _print_failures(index["failed"], len(index["failed"]) + videos)


def _print_failures(failed: list[dict[str, str]], total: int) -> int:
    """Print each skipped video and the count; the exit code (0: failures are reported, not fatal)."""
    for f in failed:
        print(f"skipped {f['path']}: {f['reason']}")
    print(f"{len(failed)} of {total} videos failed")
    return 0


COMMANDS = (
    Command(
        "data",
        doc="""generate digits-motion, inspect videos, write shards and caches

        Data tools: `digits` generates the embedded digits-motion dataset; `inspect` checks that videos decode
        and reports their codec, size, frame rate, frames and keyframes; `shard` writes streaming tar shards of
        re-encoded, resized clips; `cache-targets` stores a distillation recipe's teacher outputs; `cache-clips`
        decodes every video once into a memory-mappable clip store.
        """,
        subcommands=(
            Command("digits", run_digits, digits_options),
            Command("inspect", run_inspect, inspect_options),
            Command("shard", run_shard, shard_options),
            Command("cache-targets", run_cache_targets, cache_targets_options),
            Command("cache-clips", run_cache_clips, cache_clips_options),
        ),
    ),
)
