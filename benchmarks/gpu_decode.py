"""Can the GPU decode? PyAV's own wheels ship FFmpeg with the CUDA hardware device and NVDEC (``*_cuvid``)
decoders; whether they run depends on the machine's driver (``libnvcuvid``, the container's "video"
capability). This tries, on the first ``--clips`` H.264 clips of a manifest, decoding every frame:

- ``software``: FFmpeg on one CPU thread, RGB + resize in swscale (what a loader worker does);
- ``nvdec -> host``: ``av.open(..., hwaccel=HWAccel("cuda"))``, frames downloaded, RGB + resize in swscale;
- ``nvdec on device``: ``HWAccel("cuda", is_hw_owned=True)``: frames stay on the GPU and reach torch through
  DLPack (NV12 planes), converted to RGB and resized there (BT.601 limited range, bilinear);

and reports clips/s, frames/s and the largest pixel difference against the software frames (hardware
decoders are bit-exact for H.264; resize and colour conversion are not). A failing row shows its error.

    python benchmarks/gpu_decode.py --clips 32 --short-side 224
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from av.codec.hwaccel import HWAccel, hwdevices_available
from common import print_table

from vidfm.data.datasets import read_manifest

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "surv_fight" / "manifest.csv"


def _size(w: int, h: int, side: int) -> tuple[int, int]:
    s = side / min(w, h)
    return round(w * s), round(h * s)


def decode_host(path: str, side: int, hwaccel: HWAccel | None) -> list[np.ndarray]:
    with av.open(path, hwaccel=hwaccel) as c:
        s = c.streams.video[0]
        s.thread_count = 1
        out = []
        for f in c.decode(s):
            w, h = _size(f.width, f.height, side)
            out.append(f.to_ndarray(format="rgb24", width=w, height=h, threads=1))
    return out


def nv12_to_rgb(y: torch.Tensor, uv: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """y uint8 [H,W], uv uint8 [H/2,W/2,2] (or [H/2,W]) -> uint8 [h,w,3] RGB at ``size`` (w, h), BT.601."""
    h, w = y.shape
    uv = uv.reshape(h // 2, w // 2, 2).permute(2, 0, 1)[None].float()  # [1,2,H/2,W/2]
    uv = F.interpolate(uv, size=(h, w), mode="bilinear", align_corners=False)[0] - 128.0
    yf = (y.float() - 16.0) * (255.0 / 219.0)
    u, v = uv[0] * (255.0 / 224.0), uv[1] * (255.0 / 224.0)
    rgb = torch.stack([yf + 1.402 * v, yf - 0.344136 * u - 0.714136 * v, yf + 1.772 * u])  # [3,H,W]
    rgb = F.interpolate(rgb[None], size=(size[1], size[0]), mode="bilinear", antialias=True)[0]
    return rgb.clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0)


def decode_device(path: str, side: int) -> list[torch.Tensor]:
    with av.open(path, hwaccel=HWAccel("cuda", allow_software_fallback=False, is_hw_owned=True)) as c:
        s = c.streams.video[0]
        out = []
        for f in c.decode(s):
            y, uv = (torch.from_dlpack(p) for p in f.planes)  # NV12 planes, on the GPU
            out.append(nv12_to_rgb(y.reshape(f.height, -1)[:, : f.width], uv, _size(f.width, f.height, side)))
    torch.cuda.synchronize()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--manifest", default=str(DATA))
    p.add_argument("--clips", type=int, default=32)
    p.add_argument("--short-side", type=int, default=224)
    args = p.parse_args()
    paths = [r.path for r in read_manifest(args.manifest, split="train")][: args.clips]
    print(f"PyAV {av.__version__}; FFmpeg hw devices: {hwdevices_available()}; {len(paths)} clips")
    ref = {p: decode_host(p, args.short_side, None) for p in paths[:2]}  # warm-up and reference
    variants = {
        "software (1 thread)": lambda p: decode_host(p, args.short_side, None),
        "nvdec -> host": lambda p: decode_host(
            p, args.short_side, HWAccel("cuda", allow_software_fallback=False)
        ),
        "nvdec on device (DLPack)": lambda p: decode_device(p, args.short_side),
    }
    rows = []
    for name, fn in variants.items():
        try:
            fn(paths[0])  # start-up (device context) untimed
            t0, frames = time.perf_counter(), 0
            for path in paths:
                frames += len(fn(path))
            seconds = time.perf_counter() - t0
            diff = 0
            for path, want in ref.items():
                got = [torch.as_tensor(x).cpu().numpy() for x in fn(path)]
                diff = max(
                    diff,
                    max(
                        int(np.abs(a.astype(int) - b.astype(int)).max())
                        for a, b in zip(got, want, strict=True)
                    ),
                )
            rows.append([name, "ok", len(paths) / seconds, frames / seconds, diff])
        except Exception as e:  # noqa: BLE001 - report what the machine allows
            rows.append([name, f"error: {type(e).__name__}: {str(e)[:120]}", float("nan"), float("nan"), "-"])
    print_table(["decoder", "status", "clips/s", "frames/s", "max |diff| vs software"], rows)


if __name__ == "__main__":
    main()
