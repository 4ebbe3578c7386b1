"""VideoMAE train step (forward, backward, AdamW) of vidfm against HF transformers' VideoMAEForPreTraining.

Same config, batch, mask and optimizer in one run; median step time over repeats. On CPU the tiny demo config
(fp32); on CUDA ViT-B/16, 16×224², bf16 autocast, with peak memory and MFU against a bf16 peak.

    python benchmarks/train_step.py                 # CPU, tiny
    python benchmarks/train_step.py --size B/16 --img 224 --patch 16 --batch 32   # GPU
    python benchmarks/train_step.py --compile       # adds both models under regional torch.compile

``--compile`` compiles every transformer block in place, vidfm's through the trainer's own path
(``train.compile=true`` -> :func:`vidfm.train.distributed.compile_blocks`), HF's layers the same way, and
prints those rows beside the eager ones (speed-ups stay against eager HF).
"""

from __future__ import annotations

import argparse
import copy
import statistics
from collections.abc import Callable

import torch
from common import count_flops, time_steps


def hf_model(args: argparse.Namespace, width: int, depth: int, heads: int, dec_width: int, dec_heads: int):
    from transformers import VideoMAEConfig, VideoMAEForPreTraining

    cfg = VideoMAEConfig(
        image_size=args.img,
        patch_size=args.patch,
        num_frames=args.frames,
        tubelet_size=2,
        hidden_size=width,
        num_hidden_layers=depth,
        num_attention_heads=heads,
        intermediate_size=4 * width,
        decoder_hidden_size=dec_width,
        decoder_num_hidden_layers=args.dec_depth,
        decoder_num_attention_heads=dec_heads,
        decoder_intermediate_size=4 * dec_width,
        norm_pix_loss=True,
        use_mean_pooling=False,
        qkv_bias=True,
        attn_implementation="sdpa",
    )
    return VideoMAEForPreTraining(cfg)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="T/8")
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--dec-depth", type=int, default=2)
    p.add_argument("--img", type=int, default=64)
    p.add_argument("--patch", type=int, default=8)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds the timed steps are split over")
    p.add_argument("--compile", action="store_true", help="also time both under regional torch.compile")
    p.add_argument(
        "--peak-tflops", type=float, default=800.0, help="bf16 matmul peak for MFU (measured H100)"
    )
    args = p.parse_args()

    from vidfm.data.transforms import AugmentConfig
    from vidfm.masking import MaskConfig, tube_mask
    from vidfm.models.decoder import DecoderConfig, decoder_dims
    from vidfm.models.encoder import EncoderConfig
    from vidfm.objectives.pixel import masked_mse
    from vidfm.tasks.videomae import VideoMAETask

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    torch.manual_seed(0)
    enc = EncoderConfig(
        size=args.size, depth=args.depth, tubelet=2, num_frames=args.frames, img_size=args.img, norm_eps=1e-12
    )
    dec = DecoderConfig(depth=args.dec_depth, norm_eps=1e-12)
    width, depth, heads, _, patch = enc.dims()
    assert patch == args.patch, "--patch must match --size"
    dec_width, dec_heads = decoder_dims(dec, enc.size)
    ours = VideoMAETask(enc, dec, MaskConfig("tube", 0.9), AugmentConfig(size=args.img)).to(device)
    theirs = hf_model(args, width, depth, heads, dec_width, dec_heads).to(device)

    g = torch.Generator(device="cpu").manual_seed(0)
    video = torch.randn(args.batch, 3, args.frames, args.img, args.img, generator=g).to(device)
    grid = ours.encoder.grid
    mask = tube_mask(args.batch, grid, 0.9, g, torch.device("cpu"))
    mask.visible, mask.masked = mask.visible.to(device), mask.masked.to(device)
    bool_masked = torch.zeros(args.batch, grid[0] * grid[1] * grid[2], dtype=torch.bool, device=device)
    bool_masked.scatter_(1, mask.masked, True)
    hf_video = video.transpose(1, 2).contiguous()  # HF takes [B,T,C,H,W]

    def loss_ours(task: torch.nn.Module) -> Callable[[], torch.Tensor]:
        def loss() -> torch.Tensor:
            pred, target = task.reconstruct(video, mask)
            return masked_mse(pred, target)

        return loss

    def loss_theirs(model: torch.nn.Module) -> Callable[[], torch.Tensor]:
        return lambda: model(pixel_values=hf_video, bool_masked_pos=bool_masked).loss

    runs = [("vidfm", ours, loss_ours(ours)), ("HF VideoMAEForPreTraining", theirs, loss_theirs(theirs))]
    if args.compile:
        from vidfm.train.distributed import compile_blocks

        ours_c, theirs_c = copy.deepcopy(ours), copy.deepcopy(theirs)
        compile_blocks(ours_c)
        for layer in [*theirs_c.videomae.encoder.layer, *theirs_c.decoder.decoder_layers]:
            layer.compile()
        runs += [
            ("vidfm, compiled", ours_c, loss_ours(ours_c)),
            ("HF VideoMAEForPreTraining, compiled", theirs_c, loss_theirs(theirs_c)),
        ]
    steps = []
    for _name, model, fn in runs:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), fused=cuda)

        def step(fn=fn, opt=opt) -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                loss = fn()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        steps.append(step)
    # Rounds interleave the implementations, so a change in machine load hits all of them alike.
    times: list[list[float]] = [[] for _ in runs]
    peaks = [float("nan")] * len(runs)
    for r in range(args.rounds):
        for i, step in enumerate(steps):
            timing = time_steps(step, device, max(1, args.steps // args.rounds), args.warmup if r == 0 else 1)
            times[i] += timing.times
            peaks[i] = timing.peak_gib if r == 0 else max(peaks[i], timing.peak_gib)
    rows = []
    for (name, model, fn), t, peak in zip(runs, times, peaks, strict=True):
        med = statistics.median(t)
        # compiled rows reuse their eager twin's count (the same math; the counter does not see into graphs)
        flops = rows[len(rows) - 2][5] if len(rows) >= 2 else count_flops(fn, model)
        mfu = flops / med / (args.peak_tflops * 1e12) if cuda else float("nan")
        rows.append((name, med, args.batch / med, peak, mfu, flops))

    base = rows[1][1]
    print(
        f"device: {torch.cuda.get_device_name() if cuda else 'CPU'}; threads {torch.get_num_threads()}; "
        f"{args.size} depth {depth}, {args.frames}x{args.img}², batch {args.batch}, mask 0.9, "
        f"{'bf16 autocast' if cuda else 'fp32'}; median of {args.steps} steps in {args.rounds} interleaved rounds"
    )
    print(
        "| implementation | step ms (median) | clips/s | peak mem GiB | MFU | GFLOP/step | speed-up vs HF |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, med, cps, mem, mfu, flops in rows:
        print(
            f"| {name} | {med * 1e3:.1f} | {cps:.1f} | {mem:.2f} | {mfu:.3f} | {flops / 1e9:.1f} | {base / med:.2f}x |"
        )


if __name__ == "__main__":
    main()
