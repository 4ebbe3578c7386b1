"""``vidfm tokenize VIDEO`` and ``vidfm detokenize TOKENS``: Video-LaVIT tokens in and out.

Examples::

    vidfm tokenize clip.mp4 --motion-run runs/mvq --keyframe-run runs/kf --out clip.tokens.json
    vidfm detokenize clip.tokens.json --detokenizer-run runs/detok --out clip.mp4
"""

from __future__ import annotations

import argparse
import json
import sys

from vidfm.commands import Command


def tokenize_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("video", help="video file")
    p.add_argument("--motion-run", required=True, help="run folder of a motion_vq (stage motion) run")
    p.add_argument("--keyframe-run", default="", help="run folder of a motion_vq:keyframe run")
    p.add_argument("--out", default="-", help="output JSON file ('-' = stdout)")
    p.add_argument("--no-reencode", action="store_true", help="use the stream's own I-frames and vectors")
    p.add_argument("--max-clips", type=int, default=None, help="at most this many clips, evenly spaced")
    p.add_argument("--device", default="cpu")


def detokenize_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("tokens", help="JSON written by vidfm tokenize")
    p.add_argument("--detokenizer-run", required=True, help="run folder of a motion_vq:detokenizer run")
    p.add_argument("--motion-run", default="", help="override the motion run named in TOKENS")
    p.add_argument("--keyframe-run", default="", help="override the keyframe run named in TOKENS")
    p.add_argument("--out", required=True, help="output .mp4")
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the run's)")
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance on motion")
    p.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="scale of the sampler's starting noise: 1 samples the model, 0 decodes from the run's base clip "
        "(e.g. the warped keyframe) deterministically: higher PSNR, less variety (docs/lavit.md)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")


def run_tokenize(args: argparse.Namespace) -> int:
    """turn a video into Video-LaVIT visual + motion tokens (JSON)

    Split VIDEO into shots and 24-frame clips at I-frames (re-encoded to MPEG-4 at 6 fps unless the motion run
    says otherwise), tokenize each clip's keyframe and motion, and write the interleaved <visual ...><motion
    ...> sequence with token statistics as JSON.
    """
    import dataclasses

    from vidfm.lavit.tokenize import load_tokenizers, tokenize_video

    tok = load_tokenizers(args.motion_run, args.keyframe_run, device=args.device)
    clips = dataclasses.replace(tok.clips, max_clips=args.max_clips)
    if args.no_reencode:
        clips = dataclasses.replace(clips, reencode=False)
    doc = tokenize_video(args.video, tok, clips)  # an unreadable video is a one-line error (exit 2)
    text = json.dumps(doc, indent=1)
    if args.out == "-":
        print(text)
    else:
        from pathlib import Path

        from vidfm.io import atomic_write_text

        atomic_write_text(Path(args.out), text + "\n")
        s = doc["stats"]
        print(f"{s['clips']} clips, {s['tokens']} tokens, {s['tokens_per_second']:.1f} tokens/s "
              f"(per-frame ViT {s['vit']}: {s['vit_tokens_per_second']:.0f} tokens/s) -> {args.out}",
              file=sys.stderr)  # fmt: skip
    return 0


def run_detokenize(args: argparse.Namespace) -> int:
    """generate a video (MP4) from a Video-LaVIT token document

    Render each clip's keyframe from its visual tokens, decode its motion tokens, and generate its frames with
    the detokenizer; clips of one shot continue from the previous clip's last frame.
    """
    from pathlib import Path

    from vidfm.data.digits import encode_mp4
    from vidfm.errors import UserError
    from vidfm.lavit.tokenize import detokenize, load_tokenizers

    try:
        doc = json.loads(Path(args.tokens).read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {args.tokens}: {e}") from e
    runs = doc.get("runs", {})
    motion_run = args.motion_run or runs.get("motion", "")
    keyframe_run = args.keyframe_run or runs.get("keyframe", "")
    if not motion_run or not keyframe_run:
        raise UserError(f"{args.tokens} names no motion/keyframe run: pass --motion-run and --keyframe-run")
    tok = load_tokenizers(motion_run, keyframe_run, args.detokenizer_run, device=args.device)
    try:
        frames = detokenize(
            doc, tok, steps=args.steps, guidance=args.guidance, seed=args.seed, temperature=args.temperature
        )
    except ValueError as e:  # tokens that do not fit these runs
        raise UserError(str(e)) from e
    fps = max(1, round(float(doc.get("fps", 6))))
    encode_mp4(Path(args.out), frames, fps=fps)
    print(f"{len(frames)} frames of {frames.shape[2]}x{frames.shape[1]} at {fps} fps -> {args.out}",
          file=sys.stderr)  # fmt: skip
    return 0


COMMANDS = (
    Command("tokenize", run_tokenize, tokenize_options),
    Command("detokenize", run_detokenize, detokenize_options),
)
