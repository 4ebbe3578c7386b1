"""One training step of vidfm against HF transformers and the official VideoMAE/MVD code, in one run.

Rows (same clip size, batch, mask ratio 0.9, AdamW):
- VideoMAE: vidfm (bf16 autocast, SDPA attention, fused AdamW, regional ``torch.compile`` on CUDA), HF
  ``VideoMAEForPreTraining`` (bf16 autocast, its SDPA path), official (fp16 autocast + GradScaler, naive
  attention; :mod:`official_reference`).
- MVD (image + video teacher of the student's size): vidfm with live teachers, vidfm with cached teacher
  targets (:mod:`vidfm.teachers.cache`: lookups instead of teacher forwards), official.

Each vidfm step mirrors the trainer's: autocast forward, backward, gradient norm, one host sync, AdamW.
Reported: median step time, clips/s, peak memory, FLOPs (torch FlopCounterMode) and MFU against a
matmul peak measured on the same device in the same run (bf16 on CUDA). The MVD per-epoch table adds the
cost of building the cache (K views per clip, once) spread over the epochs of a run.

    python benchmarks/scale.py                    # CPU: a tiny model, every path exercised
    python benchmarks/scale.py --size B/16 --img 224 --frames 16 --batch 32 --mvd-batch 16   # one GPU
"""

from __future__ import annotations

import argparse
import gc
import tempfile
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import official_reference as official
import torch
from common import count_flops, device_name, matmul_peak, print_table, time_steps
from torch.utils.data import Dataset

from vidfm.data.transforms import AugmentConfig
from vidfm.masking import MaskConfig, tube_mask
from vidfm.models.decoder import DecoderConfig, decoder_dims
from vidfm.models.encoder import EncoderConfig, VideoEncoder
from vidfm.objectives.distill import feature_loss
from vidfm.objectives.pixel import masked_mse
from vidfm.tasks.mvd import MVDTask
from vidfm.tasks.videomae import VideoMAETask
from vidfm.teachers.cache import TeacherCache, build_teacher_cache
from vidfm.teachers.targets import LIVE, TargetProvider, TargetSource
from vidfm.teachers.vit import ViTTeacher
from vidfm.train.distributed import compile_blocks, total_grad_norm
from vidfm.train.optim import build_optimizer, param_groups


def vidfm_step(task: torch.nn.Module, loss_fn: Callable[[], torch.Tensor], cuda: bool) -> Callable[[], None]:
    """The trainer's update (``Trainer._train_step`` without the data and logging)."""
    opt = build_optimizer(param_groups(task, 0.05), 1.5e-4)  # fused on CUDA

    def step() -> None:
        with torch.autocast("cuda" if cuda else "cpu", dtype=torch.bfloat16, enabled=cuda):
            loss = loss_fn()
        loss.backward()
        norm = total_grad_norm(opt.param_groups[0]["params"] + opt.param_groups[-1]["params"])
        if bool(torch.isfinite(loss.detach()) & torch.isfinite(norm)):  # the step's one host sync
            opt.step()
        opt.zero_grad(set_to_none=True)

    return step


class Row:
    """One measured implementation."""

    def __init__(
        self, name: str, precision: str, batch: int, step: Callable[[], object], flops: float
    ) -> None:
        self.name, self.precision, self.batch, self.step, self.flops = name, precision, batch, step, flops

    def measure(self, device: torch.device, args: argparse.Namespace, peak: float) -> None:
        t = time_steps(self.step, device, args.steps, args.warmup)
        self.seconds, rate = t.median_s, self.flops / t.median_s
        self.cells = [self.name, self.precision, t.median_s * 1e3, self.batch / t.median_s, t.peak_gib]
        self.cells += [rate / 1e12, rate / peak]


def release() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _videomae_inputs(args: argparse.Namespace, device: torch.device, batch: int):
    g = torch.Generator().manual_seed(0)
    video = torch.randn(batch, 3, args.frames, args.img, args.img, generator=g).to(device)
    enc = EncoderConfig(
        size=args.size, depth=args.depth, width=args.width, heads=args.heads, tubelet=2,
        num_frames=args.frames, img_size=args.img,
    )  # fmt: skip
    mask = tube_mask(batch, enc.grid(), 0.9, g, torch.device("cpu")).to(device)
    return enc, video, mask


def _precision(args: argparse.Namespace, cuda: bool, vidfm: bool) -> str:
    if not cuda:
        return "fp32, " + ("SDPA" if vidfm else "naive")
    return "bf16, SDPA" + (", compile" if args.compile else "") if vidfm else "fp16+scaler, naive"


def vidfm_videomae(args: argparse.Namespace, device: torch.device) -> Row:
    enc, video, mask = _videomae_inputs(args, device, args.batch)
    torch.manual_seed(0)
    task = VideoMAETask(
        enc, DecoderConfig(depth=args.dec_depth), MaskConfig("tube", 0.9), AugmentConfig(size=args.img)
    )
    task = task.to(device)
    if args.compile:
        compile_blocks(task)
    fn = lambda: masked_mse(*task.reconstruct(video, mask))  # noqa: E731
    cuda = device.type == "cuda"
    return Row(
        "vidfm VideoMAE",
        _precision(args, cuda, True),
        args.batch,
        vidfm_step(task, fn, cuda),
        count_flops(fn, task),
    )


def hf_videomae(args: argparse.Namespace, device: torch.device) -> Row:
    from train_step import hf_model

    enc, video, mask = _videomae_inputs(args, device, args.batch)
    width, depth, heads, _, patch = enc.dims()
    dec_width, dec_heads = decoder_dims(DecoderConfig(depth=args.dec_depth), enc.size)
    hf_args = SimpleNamespace(img=args.img, patch=patch, frames=args.frames, dec_depth=args.dec_depth)
    model = hf_model(hf_args, width, depth, heads, dec_width, dec_heads).to(device)
    hf_video, bool_mask, cuda = video.transpose(1, 2).contiguous(), mask.bool(), device.type == "cuda"
    fn = lambda: model(pixel_values=hf_video, bool_masked_pos=bool_mask).loss  # noqa: E731  HF: [B,T,C,H,W]
    opt = torch.optim.AdamW(model.parameters(), lr=1.5e-4, betas=(0.9, 0.95), fused=cuda)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = fn()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    precision = "bf16, SDPA" if cuda else "fp32, SDPA"
    return Row("HF VideoMAEForPreTraining", precision, args.batch, step, count_flops(fn, model))


def official_videomae(args: argparse.Namespace, device: torch.device) -> Row:
    enc, video, mask = _videomae_inputs(args, device, args.batch)
    width, depth, heads, _, patch = enc.dims()
    dec_width, dec_heads = decoder_dims(DecoderConfig(depth=args.dec_depth), enc.size)
    model = official.VideoMAE(
        width, depth, heads, dec_width, args.dec_depth, dec_heads, args.img, patch, args.frames
    )
    model, bool_mask = model.to(device), mask.bool()
    fn = lambda: model.loss(video, bool_mask)  # noqa: E731
    step = official.NativeScalerStep(model)
    precision = _precision(args, device.type == "cuda", False)
    return Row("official VideoMAE", precision, args.batch, lambda: step(fn), count_flops(fn, model))


class _Noise(Dataset):
    """Random uint8 clips, only to build a small cache for timing the cached path."""

    def __init__(self, n: int, frames: int, side: int) -> None:
        self.n, self.frames, self.side, self.epoch = n, frames, side, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(1000 * self.epoch + i)
        video = torch.randint(0, 256, (self.frames, self.side, self.side, 3), generator=g, dtype=torch.uint8)
        return {"video": video}


def mvd_task(args: argparse.Namespace, device: torch.device, targets: TargetSource = LIVE) -> MVDTask:
    common = dict(size=args.size, depth=args.depth, width=args.width, heads=args.heads, img_size=args.img)

    def teacher(name: str, **kw: Any) -> TargetProvider:  # noqa: ANN401
        torch.manual_seed(1)  # random teachers, the same whether built alone or for a cache
        return targets.teacher(name, lambda: ViTTeacher(VideoEncoder(EncoderConfig(**common, **kw))))

    image = teacher("teacher_image", tubelet=1, num_frames=1, cls_token=True)
    video = teacher("teacher_video", tubelet=2, num_frames=args.frames)
    enc = EncoderConfig(**common, tubelet=2, num_frames=args.frames, pos_embed="sincos_3d")
    torch.manual_seed(0)
    task = MVDTask(
        enc, DecoderConfig(depth=2), MaskConfig("tube", 0.9), AugmentConfig(size=args.img), image, video
    )
    return task.to(device)


def _mvd_loss(
    task: MVDTask,
    video: torch.Tensor,
    mask,
    batch: dict | None = None,  # noqa: ANN001
) -> Callable[[], torch.Tensor]:
    """The loss on ``video`` ([0, 1] crops) with ``batch`` (cached targets) beside it."""
    batch = batch or {}

    def fn() -> torch.Tensor:
        preds, targets = task.predict(video, batch, mask.visible, mask.masked)
        return sum(feature_loss(preds[n], targets[n], task.loss) for n in task.weights)

    return fn


def vidfm_mvd_live(args: argparse.Namespace, device: torch.device) -> tuple[Row, Callable[[], None]]:
    """The step with both teachers on the full clip, and the teachers' part alone (what a cache saves)."""
    _, video, mask = _videomae_inputs(args, device, args.mvd_batch)
    task, cuda = mvd_task(args, device), device.type == "cuda"
    if args.compile:
        compile_blocks(task)
    fn = _mvd_loss(task, video, mask)
    row = Row(
        "vidfm MVD, live teachers",
        _precision(args, cuda, True),
        args.mvd_batch,
        vidfm_step(task, fn, cuda),
        count_flops(fn, task),
    )

    def teachers_only() -> None:
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            for teacher, _ in task.branches().values():
                task.targets(teacher, video, {}, task.encoder.grid)

    return row, teachers_only


def vidfm_mvd_cached(args: argparse.Namespace, device: torch.device) -> Row:
    """The same task with its teachers swapped for lookups of stored fp16 outputs (a real cache)."""
    _, video, mask = _videomae_inputs(args, device, args.mvd_batch)
    cuda = device.type == "cuda"
    with tempfile.TemporaryDirectory() as root:
        noise = _Noise(2, args.frames, args.img)
        build_teacher_cache(
            lambda targets: mvd_task(args, device, targets), noise, root, views=1, batch_size=2, device=device
        )
        cache = TeacherCache(root)
        rows = [cache.read(i % 2, 0) for i in range(args.mvd_batch)]
        task = mvd_task(args, device, cache.targets())
    stored: dict[str, dict[str, torch.Tensor]] = {}  # batch["targets"], as the wrapped dataset brings it
    for k in rows[0]:
        if k not in ("box", "flip"):
            name, field = k.split(".", 1)
            stored.setdefault(name, {})[field] = torch.stack([r[k] for r in rows]).to(device)
    if args.compile:
        compile_blocks(task)
    fn = _mvd_loss(task, video, mask, {"targets": stored})
    step = vidfm_step(task, fn, cuda)
    return Row(
        "vidfm MVD, cached targets", _precision(args, cuda, True), args.mvd_batch, step, count_flops(fn, task)
    )


def official_mvd(args: argparse.Namespace, device: torch.device) -> Row:
    enc, video, mask = _videomae_inputs(args, device, args.mvd_batch)
    width, depth, heads, _, patch = enc.dims()
    student = official.MVDStudent(width, depth, heads, 2, args.img, patch, args.frames, width, width).to(
        device
    )
    image_t = (
        official.ImageTeacher(width, depth, heads, args.img, patch).to(device).eval().requires_grad_(False)
    )
    video_t = official.Encoder(width, depth, heads, args.img, patch, args.frames, final_norm=False)
    video_t, bool_mask = video_t.to(device).eval().requires_grad_(False), mask.bool()
    fn = lambda: official.mvd_loss(student, image_t, video_t, video, bool_mask)  # noqa: E731
    step = official.NativeScalerStep(student)
    precision = _precision(args, device.type == "cuda", False)
    return Row("official MVD", precision, args.mvd_batch, lambda: step(fn), count_flops(fn, student))


def measure(build: Callable[[], Row], device: torch.device, args: argparse.Namespace, peak: float) -> Row:
    """Build one row's model, time it, and free it before the next (peak memory is per row)."""
    row = build()
    row.measure(device, args, peak)
    row.step = None  # drops the model, optimizer and inputs the step closes over
    release()
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cuda = torch.cuda.is_available()
    p.add_argument("--size", default="B/16" if cuda else "T/8")
    p.add_argument("--depth", type=int, default=None if cuda else 2, help="override the size's depth")
    p.add_argument("--width", type=int, default=None if cuda else 64, help="override the size's width")
    p.add_argument("--heads", type=int, default=None if cuda else 2, help="override the size's heads")
    p.add_argument("--dec-depth", type=int, default=4 if cuda else 1, help="VideoMAE decoder depth")
    p.add_argument("--img", type=int, default=224 if cuda else 32)
    p.add_argument("--frames", type=int, default=16 if cuda else 4)
    p.add_argument("--batch", type=int, default=32 if cuda else 4, help="VideoMAE clips per step")
    p.add_argument("--mvd-batch", type=int, default=16 if cuda else 4, help="MVD clips per step")
    p.add_argument("--steps", type=int, default=20 if cuda else 3)
    p.add_argument("--warmup", type=int, default=5 if cuda else 1)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=cuda, help="regional compile")
    p.add_argument("--views", type=int, default=4, help="K cached views per clip (per-epoch table)")
    p.add_argument("--epochs", type=int, default=400, help="epochs the cache is reused for (MVD: 400)")
    p.add_argument("--only", choices=["videomae", "mvd"], default=None)
    p.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (1 on an oversubscribed machine)"
    )
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device("cuda" if cuda else "cpu")
    peak_dtype = torch.bfloat16 if cuda else torch.float32
    peak = matmul_peak(device, peak_dtype)
    print(
        f"device: {device_name(device)}; torch {torch.__version__}; {args.size} (depth {args.depth or 'default'}, "
        f"width {args.width or 'default'}), {args.frames}x{args.img}², mask 0.9; median of {args.steps} steps "
        f"after {args.warmup}; measured {str(peak_dtype).split('.')[-1]} matmul peak {peak / 1e12:.3g} TFLOP/s"
    )
    header = ["implementation", "precision, attention", "step ms", "clips/s", "peak GiB", "TFLOP/s", "MFU"]
    if args.only in (None, "videomae"):
        rows = [
            measure(lambda b=b: b(args, device), device, args, peak)
            for b in (vidfm_videomae, hf_videomae, official_videomae)
        ]
        hf_s, off_s = rows[1].seconds, rows[2].seconds
        print(f"\nVideoMAE, batch {args.batch}")
        print_table(
            header + ["vs HF", "vs official"], [r.cells + [hf_s / r.seconds, off_s / r.seconds] for r in rows]
        )
    if args.only in (None, "mvd"):
        live_row, teachers_only = vidfm_mvd_live(args, device)
        live_row.measure(device, args, peak)
        teacher_s = time_steps(teachers_only, device, args.steps, args.warmup).median_s
        live_row.step = teachers_only = None
        release()
        rows = [live_row] + [
            measure(lambda b=b: b(args, device), device, args, peak) for b in (vidfm_mvd_cached, official_mvd)
        ]
        off_s = rows[-1].seconds
        print(f"\nMVD (image + video teacher of the student's size), batch {args.mvd_batch}")
        print_table(header + ["vs official"], [r.cells + [off_s / r.seconds] for r in rows])
        build = args.views * teacher_s / args.epochs
        amortized = rows[1].seconds + build
        print(
            f"\nMVD per epoch (equal steps per epoch; the cache runs the teachers on {args.views} views per clip "
            f"once: {teacher_s * 1e3:.1f} ms per batch-view, spread over {args.epochs} epochs = +{build * 1e3:.2f} ms/step)"
        )
        print_table(
            ["MVD path", "ms per step", "vs official"],
            [
                ["official (teachers every step)", off_s * 1e3, 1.0],
                ["vidfm, live teachers", rows[0].seconds * 1e3, off_s / rows[0].seconds],
                [
                    f"vidfm, cached ({args.views} views, {args.epochs} epochs)",
                    amortized * 1e3,
                    off_s / amortized,
                ],
            ],
        )


if __name__ == "__main__":
    main()
