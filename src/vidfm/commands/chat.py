"""``vidfm chat VIDEO --checkpoint RUN "question"``: ask an ``internvideo2_stage3`` run about a video.

Example::

    vidfm chat clip.mp4 --checkpoint runs/iv2_chat "how does the digit move?"
"""

from __future__ import annotations

import argparse

from vidfm.commands import Command


def options(p: argparse.ArgumentParser) -> None:
    p.add_argument("video", help="video file")
    p.add_argument("question", help='the instruction, e.g. "which digit is shown?"')
    p.add_argument("--checkpoint", required=True, help="run folder of an internvideo2_stage3 run")
    p.add_argument("--max-tokens", type=int, default=16, help="at most this many answer tokens")
    p.add_argument("--device", default="cpu")


def run(args: argparse.Namespace) -> int:
    """answer a question about a video with an InternVideo2 stage-3 run (video encoder + LM)

    Decode VIDEO as the run's data config reads clips (frames, short side, centre crop), encode it with the
    run's frozen encoder, and generate the LM's greedy answer to QUESTION.
    """
    from pathlib import Path

    from vidfm.data.datasets import VideoDataset, VideoRecord
    from vidfm.data.sampling import SamplingConfig
    from vidfm.errors import UserError
    from vidfm.recipes.internvideo2_stage3 import load_video_lm
    from vidfm.runs import open_run

    if not Path(args.video).is_file():
        raise UserError(f"{args.video}: no such video file")
    if args.max_tokens < 1:
        raise UserError(f"--max-tokens must be >= 1, got {args.max_tokens}")
    open_run(args.checkpoint)  # a one-line error for a folder that is not a run
    task, cfg = load_video_lm(args.checkpoint, args.device)
    video = None
    if cfg.video_tokens:
        d = cfg.data
        sampling = SamplingConfig(mode=d.sampling, num_frames=d.num_frames, stride=d.stride)
        clips = VideoDataset(
            [VideoRecord(str(Path(args.video).resolve()))], sampling, d.short_side, train=False, min_seen=1
        )
        video = clips[0]["video"][None]  # [1,T,H,W,C]; a file that does not decode raises a one-line error
    print(task.answer(video, args.question, max_new=args.max_tokens)[0])
    return 0


COMMANDS = (Command("chat", run, options),)
