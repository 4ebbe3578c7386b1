"""The motion-warped keyframe: a clip predicted from its keyframe and motion field alone, with no model.

Video-LaVIT's detokenizer must turn a keyframe and motion tokens into frames. The cheapest such renderer
moves the keyframe's pixels along the motion: if that beats repeating the keyframe, the motion carries
usable information, and a generator should do at least as well. The detokenizer uses the same warp as the
base its U-Net predicts a residual against (:mod:`vidfm.lavit.detokenizer`), and the detokenizer benchmark
reports it as a baseline.

Conventions: motion ``[B, 2, T, h, w]`` is in the tokenizer's units (:func:`vidfm.lavit.clips.normalize_motion`
with ``rescale``: ``(dx / W, dy / H) / (std / 10)``), forward (``dst - src``: content at ``p`` in frame t
came from ``p - d_t(p)`` in the reference frame), and frame 0 (the keyframe) has no motion. Each frame's
vectors are taken as relative to the previous frame, as Video-LaVIT's processing assumes (its motion is
read at 6 fps from an MPEG-4 stream without B-frames). The per-frame displacements are composed into one
displacement from the keyframe, ``D_t(p) = d_t(p) + D_{t-1}(p - d_t(p))``, so that the keyframe is
resampled once per frame (bilinear, border padding) instead of blurring through a chain of resamplings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vidfm.lavit.clips import MOTION_RESCALE, MOTION_STD


def motion_to_grid_units(motion: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Tokenizer-unit motion ``[B, 2, T, h, w]`` -> displacement ``[B, T, H, W, 2]`` in ``grid_sample``'s
    normalised coordinates (a full frame width is 2), resized bicubically to ``size = (H, W)`` as the
    detokenizer's condition (the official ``reconstruct_from_token``)."""
    b, _, t, h, w = motion.shape
    m = motion.float().transpose(1, 2).reshape(b * t, 2, h, w)
    if (h, w) != tuple(size):
        m = F.interpolate(m, size=tuple(size), mode="bicubic", align_corners=False)
    std = torch.tensor(MOTION_STD, device=m.device).view(1, 2, 1, 1) / MOTION_RESCALE
    return (2.0 * m * std).reshape(b, t, 2, *size).permute(0, 1, 3, 4, 2)


def _base_grid(b: int, h: int, w: int, device: torch.device) -> torch.Tensor:
    """Pixel-centre coordinates ``[B, H, W, 2]`` (x, y) in [-1, 1] (``align_corners=False``)."""
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w * 2 - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # [H, W, 2]
    return grid.expand(b, h, w, 2)


def accumulate_motion(motion: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Per-frame forward motion ``[B, 2, T, h, w]`` (tokenizer units) -> the displacement of every frame
    from the keyframe ``[B, T, H, W, 2]`` (normalised coordinates), by composing the frames' fields."""
    d = motion_to_grid_units(motion, size)
    b, t, h, w, _ = d.shape
    base = _base_grid(b, h, w, d.device)
    acc = [torch.zeros_like(d[:, 0])]
    for i in range(1, t):
        prev = acc[-1].permute(0, 3, 1, 2)  # [B, 2, H, W]
        carried = F.grid_sample(
            prev, base - d[:, i], mode="bilinear", padding_mode="border", align_corners=False
        )
        acc.append(d[:, i] + carried.permute(0, 2, 3, 1))
    return torch.stack(acc, dim=1)


def warp_keyframe(keyframe: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
    """The keyframe moved along the motion: float ``[B, C, H, W]`` and motion ``[B, 2, T, h, w]`` (tokenizer
    units) -> ``[B, C, T, H, W]``, frame t sampled at ``p - D_t(p)`` (frame 0 is the keyframe itself)."""
    b, c, h, w = keyframe.shape
    if motion.ndim != 5 or motion.shape[:2] != (b, 2):
        raise ValueError(f"need motion [{b}, 2, T, h, w], got {tuple(motion.shape)}")
    disp = accumulate_motion(motion, (h, w))  # [B, T, H, W, 2]
    t = disp.shape[1]
    grid = (_base_grid(b, h, w, keyframe.device)[:, None] - disp).reshape(b * t, h, w, 2)
    src = keyframe.float()[:, None].expand(b, t, c, h, w).reshape(b * t, c, h, w)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.reshape(b, t, c, h, w).transpose(1, 2).to(keyframe.dtype)
