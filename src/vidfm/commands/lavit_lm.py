"""``vidfm generate PROMPT`` and ``vidfm caption VIDEO``: text to video and video to text with a ``lavit_lm`` run.

Examples::

    vidfm generate "a 3 moving to the left" --checkpoint runs/lm --out clip.mp4
    vidfm caption clip.mp4 --checkpoint runs/lm
"""

from __future__ import annotations

import argparse
import sys

from vidfm.commands import Command


def generate_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("prompt", help="the caption, e.g. 'a 3 moving to the left'")
    p.add_argument("--checkpoint", required=True, help="run folder of a lavit_lm run")
    p.add_argument("--out", required=True, help="output .mp4")
    p.add_argument("--detokenizer-run", default="", help="motion_vq:detokenizer run (default: the LM run's)")
    p.add_argument("--temperature", type=float, default=1.0, help="token sampling temperature (0 = greedy)")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest tokens (0 = all)")
    p.add_argument("--steps", type=int, default=None, help="detokenizer sampler steps (default: the run's)")
    p.add_argument(
        "--frame-temperature",
        type=float,
        default=1.0,
        help="the detokenizer's starting-noise scale: 1 samples the model, 0 decodes deterministically",
    )
    p.add_argument("--fps", type=int, default=8, help="MP4 frame rate (digits-motion 8; official clips 6)")
    p.add_argument("--tokens-out", default="", help="also write the sampled token document (JSON)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")


def caption_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("video", help="video file")
    p.add_argument("--checkpoint", required=True, help="run folder of a lavit_lm run")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--max-clips", type=int, default=None, help="at most this many clips, evenly spaced")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")


def run_generate(args: argparse.Namespace) -> int:
    """generate a video (MP4) from a caption with a Video-LaVIT language model

    Sample one clip's keyframe and motion tokens after PROMPT (in the layout the tokenizers emit), render the
    keyframe from its tokens, decode the motion, and generate the frames with the detokenizer.
    """
    import json
    from pathlib import Path

    import torch

    from vidfm.data.digits import encode_mp4
    from vidfm.errors import UserError
    from vidfm.io import atomic_write_text
    from vidfm.lavit.tokenize import FORMAT, detokenize, load_tokenizers
    from vidfm.recipes.lavit_lm import load_video_lavit

    vl, cfg = load_video_lavit(args.checkpoint, args.device)
    detok_run = args.detokenizer_run or cfg.detokenizer_run
    if not detok_run or not cfg.keyframe_run:
        raise UserError(
            f"generating needs a keyframe run and a detokenizer run; {args.checkpoint} has "
            f"keyframe_run={cfg.keyframe_run!r}, detokenizer_run={detok_run!r} (set --detokenizer-run)"
        )
    gen = torch.Generator(device=args.device).manual_seed(args.seed)
    # A prompt without a known word is a PromptError (a UserError): one line, exit 2.
    visual, motion = vl.generate(args.prompt, 1, args.temperature, args.top_k, gen)
    tok = load_tokenizers(cfg.motion_run, cfg.keyframe_run, detok_run, device=args.device)
    frames_per_clip = tok.motion.cfg.num_frames
    clip = {"start": 0, "num_frames": frames_per_clip, "shot": 0, "visual": visual[0].tolist(),
            "motion": motion[0].tolist()}  # fmt: skip
    doc = {"format": FORMAT, "prompt": args.prompt, "fps": args.fps, "runs": tok.runs, "clips": [clip]}
    if args.tokens_out:
        atomic_write_text(Path(args.tokens_out), json.dumps(doc) + "\n")
    frames = detokenize(doc, tok, steps=args.steps, seed=args.seed, temperature=args.frame_temperature)
    encode_mp4(Path(args.out), frames, fps=args.fps)
    print(f"{args.prompt!r}: {len(frames)} frames of {frames.shape[2]}x{frames.shape[1]} -> {args.out}",
          file=sys.stderr)  # fmt: skip
    return 0


def run_caption(args: argparse.Namespace) -> int:
    """caption a video with a Video-LaVIT language model

    Tokenize VIDEO with the LM run's tokenizers and write one caption per clip.
    """
    import dataclasses

    import torch

    from vidfm.errors import UserError
    from vidfm.lavit.tokenize import load_tokenizers, tokenize_video
    from vidfm.recipes.lavit_lm import load_video_lavit

    vl, cfg = load_video_lavit(args.checkpoint, args.device)
    tok = load_tokenizers(cfg.motion_run, cfg.keyframe_run, device=args.device)
    # A file that does not decode raises VideoDecodeError (a UserError): one line, exit 2.
    doc = tokenize_video(args.video, tok, dataclasses.replace(tok.clips, max_clips=args.max_clips))
    if not doc["clips"]:
        raise UserError(f"{args.video}: no clip to caption (too short for one clip of the tokenizer)")
    motion = torch.tensor([c["motion"] for c in doc["clips"]])
    visual = torch.tensor([c["visual"] for c in doc["clips"]]) if vl.num_visual else None
    gen = torch.Generator(device=args.device).manual_seed(args.seed)
    captions = vl.caption(visual, motion, temperature=args.temperature, generator=gen)
    for c, text in zip(doc["clips"], captions, strict=True):
        print(f"{c['start']}\t{text}")
    return 0


COMMANDS = (
    Command("generate", run_generate, generate_options),
    Command("caption", run_caption, caption_options),
)
