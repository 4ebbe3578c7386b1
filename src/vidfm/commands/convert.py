"""``vidfm convert SRC OUT --from {auto,hf,vidfm,official,<layout>} --to {vidfm,hf,official}``.

Examples::

    vidfm convert MCG-NJU-videomae-base/ out/videomae_b                     # HF folder -> vidfm
    vidfm convert checkpoint.pth out/videomae_b --num-frames 16             # official file, layout detected
    vidfm convert mvd_b_from_b.pth out/mvd_b                                # MVD student with both decoders
    vidfm convert umt_b16_ptk710.pth out/umt_b --num-frames 8               # UMT stage 1 with its heads
    vidfm convert umt_b16_5m_pt.pth out/umt2_b --num-frames 4               # UMT stage 2 (ViT + BERT + heads)
    vidfm convert vit_g_hybrid_pt.pth out/v2_g --from videomae              # VideoMAE V2 (DeepSpeed 'module')
    vidfm convert ViT-B-16.pt out/clip_b16 --heads 12                       # OpenAI/UMT-layout CLIP tower
    vidfm convert runs/videomae/ out/hf --from vidfm --to hf                # run (latest step) -> HF
    vidfm convert out/mvd_b out/mvd_official --to official                  # back to the official layout
    vidfm convert runs/umt2 out/umt2_official --to official                 # a trained umt_stage2 run
    vidfm convert 1B_pt.pth out/iv2_1b --num-frames 8                       # InternVideo2 stage-1/2 vision

A converted folder is the trainable state of its recipe's task: ``vidfm pretrain --recipe mvd --set
train.init_from=out/mvd_b ...`` continues training it, decoders (or UMT's alignment heads) included.
"""

from __future__ import annotations

import argparse

from vidfm.commands import Command

FORMAT_HELP = (
    "auto (default): detect (HF folder, vidfm folder/run, else an official file whose layout is detected); "
    "hf; vidfm; official: detect the official layout; or name one: "
    "internvideo2, umt_stage2, mvd, umt, mae, clip, videomae"
)


def options(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="HF folder, official checkpoint file, vidfm run/folder/safetensors file")
    p.add_argument("out", help="output folder")
    # Not argparse choices: the layout names live in vidfm.convert.OFFICIAL_LAYOUTS, which the CLI does not import
    # before a command runs; an unknown name is a one-line error listing them.
    p.add_argument("--from", dest="src_format", default="auto", metavar="FORMAT", help=FORMAT_HELP)
    p.add_argument("--to", dest="dst_format", choices=["vidfm", "hf", "official"], default="vidfm")
    g = p.add_argument_group("sizes no official file stores (an ambiguous case is an error naming these)")
    g.add_argument("--heads", type=int, default=None, help="encoder heads (default: the official model's)")
    g.add_argument("--decoder-heads", type=int, default=None, help="decoder heads (default: the official's)")
    g.add_argument(
        "--text-heads",
        type=int,
        default=None,
        help="BERT heads of a UMT stage-2 model (default: BERT-base/large)",
    )
    g.add_argument(
        "--num-frames", type=int, default=None, help="frames of the training clip (16; UMT, InternVideo2 8)"
    )
    g.add_argument("--img-size", type=int, default=224, help="image size of the training clip")


def run(args: argparse.Namespace) -> int:
    """convert checkpoints between HF transformers, the official layouts and vidfm

    Convert a checkpoint: HF VideoMAE/VideoPrism/ViT/ViTMAE/CLIP folders; official VideoMAE, VideoMAE V2, MVD
    student, MAE image teacher, UMT stage-1 student and stage-2 model, InternVideo2 stage-1/2 vision and
    OpenAI/UMT CLIP files (wrapped in model/module/state_dict/model_ema or not). vidfm output:
    OUT/model.safetensors + OUT/config.yaml (+ OUT/extras.safetensors for a fine-tuned classifier); HF output:
    save_pretrained; official output: OUT/checkpoint.pth ({'model': state dict}) for MVD and UMT models.
    """
    from pathlib import Path

    import torch

    from vidfm.convert import (
        read_checkpoint,
        save_vidfm_checkpoint,
        to_hf_videomae,
        to_official_mvd,
        to_official_umt,
        to_official_umt_stage2,
    )
    from vidfm.runs import is_run, run_checkpoint
    from vidfm.utils import log

    options = dict(
        heads=args.heads,
        decoder_heads=args.decoder_heads,
        text_heads=args.text_heads,
        num_frames=args.num_frames,
        img_size=args.img_size,
    )
    try:
        if args.src_format in ("auto", "vidfm") and is_run(args.src):  # a run: its task's whole layout
            conv = run_checkpoint(args.src)
        else:
            conv = read_checkpoint(args.src, args.src_format, **options)
        if args.dst_format == "vidfm":
            save_vidfm_checkpoint(
                args.out,
                conv.encoder,
                conv.decoder,
                conv.state_dict,
                conv.extras,
                args.src,
                conv.layout,
                conv.tower,
                conv.text,
            )
        elif args.dst_format == "official":
            writers = {"mvd": to_official_mvd, "umt": to_official_umt, "umt_stage2": to_official_umt_stage2}
            if conv.layout not in writers:
                raise ValueError(
                    f"--to official writes MVD and UMT (stage 1 and 2) models; this is a {conv.layout} checkpoint"
                )
            Path(args.out).mkdir(parents=True, exist_ok=True)
            torch.save({"model": writers[conv.layout](conv)}, Path(args.out) / "checkpoint.pth")
        else:
            if conv.layout != "videomae":
                raise ValueError(f"--to hf writes VideoMAE models; this is a {conv.layout} checkpoint")
            if conv.extras:
                log.warning(
                    "HF VideoMAEModel/ForPreTraining has no place for %s; not written", sorted(conv.extras)
                )
            to_hf_videomae(conv.encoder, conv.decoder, conv.state_dict).save_pretrained(args.out)
    except (ValueError, KeyError, FileNotFoundError, ImportError) as e:  # a source that is not a checkpoint
        from vidfm.errors import UserError, one_line

        raise UserError(one_line(e)) from e
    parts = {
        "mvd": "with its decoders",
        "umt": "with its alignment heads",
        "clip": "a CLIP tower",
        "umt_stage2": "with its text encoder, fusion layers and heads",
    }
    kind = parts.get(conv.layout, "with decoder" if conv.decoder is not None else "encoder only")
    print(f"wrote {args.out} ({args.dst_format}; {conv.layout} layout, {kind})")
    return 0


COMMANDS = (Command("convert", run, options),)
