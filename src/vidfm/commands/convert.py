"""``vidfm convert SRC OUT --from {auto,hf,official,vidfm} --to {vidfm,hf}``.

Examples::

    vidfm convert MCG-NJU-videomae-base/ out/videomae_b --from hf                 # HF folder -> vidfm
    vidfm convert checkpoint.pth out/videomae_b --from official --num-frames 16   # official .pth -> vidfm
    vidfm convert videoprism-base-f16r288/ out/videoprism_b --from hf            # HF VideoPrism vision -> vidfm
    vidfm convert runs/videomae/ out/hf --from vidfm --to hf                      # run (latest step) -> HF
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert",
        help="convert checkpoints between HF transformers, official VideoMAE and vidfm",
        description="Convert a VideoMAE-family checkpoint or an HF VideoPrism vision model (to vidfm only). "
        "vidfm output: OUT/model.safetensors + "
        "OUT/config.yaml (+ OUT/extras.safetensors for a fine-tuned classifier); HF output: save_pretrained.",
    )
    p.add_argument("src", help="HF folder, official .pth, vidfm run/folder/safetensors file")
    p.add_argument("out", help="output folder")
    p.add_argument("--from", dest="src_format", choices=["auto", "hf", "official", "vidfm"], default="auto")
    p.add_argument("--to", dest="dst_format", choices=["vidfm", "hf"], default="vidfm")
    g = p.add_argument_group("official checkpoints (sizes not stored in the file)")
    g.add_argument(
        "--heads", type=int, default=None, help="encoder heads (default: standard size of the width)"
    )
    g.add_argument(
        "--decoder-heads", type=int, default=None, help="decoder heads (default: official decoder)"
    )
    g.add_argument("--num-frames", type=int, default=16, help="frames of the training clip")
    g.add_argument("--img-size", type=int, default=224, help="image size of the training clip")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from vidfm.convert import read_checkpoint, save_vidfm_checkpoint, to_hf_videomae
    from vidfm.utils import log

    official = dict(
        heads=args.heads, decoder_heads=args.decoder_heads, num_frames=args.num_frames, img_size=args.img_size
    )
    try:
        conv = read_checkpoint(args.src, args.src_format, **official)
        if args.dst_format == "vidfm":
            save_vidfm_checkpoint(
                args.out, conv.encoder, conv.decoder, conv.state_dict, conv.extras, args.src
            )
        else:
            if conv.extras:
                log.warning(
                    "HF VideoMAEModel/ForPreTraining has no place for %s; not written", sorted(conv.extras)
                )
            to_hf_videomae(conv.encoder, conv.decoder, conv.state_dict).save_pretrained(args.out)
    except (ValueError, KeyError, FileNotFoundError, ImportError) as e:
        print(f"vidfm convert: error: {e}", file=sys.stderr)
        return 2
    kind = "with decoder" if conv.decoder is not None else "encoder only"
    log.info("wrote %s (%s, %s)", args.out, args.dst_format, kind)
    return 0
