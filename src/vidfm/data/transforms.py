"""Batch-level video augmentation on the training device, without torchvision.

uint8 clips [B,T,H,W,C] from the loader -> float [B,C,T,H,W] in [0, 1] -> multi-scale crop (train) or centre
crop (test) -> resize. One crop box per sample, the same for all its frames. The crop stays in [0, 1]: each
consumer normalises its own input once (the student with :meth:`VideoAugment.normalize`, a teacher with its
own mean/std, pixel targets not at all), so nothing is normalised and then un-normalised again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_float(video: torch.Tensor) -> torch.Tensor:
    """uint8 [B,T,H,W,C] -> float [B,C,T,H,W] in [0, 1]."""
    if video.dtype != torch.uint8 or video.dim() != 5:
        raise ValueError(f"expected uint8 clips [B,T,H,W,C], got {video.dtype} {tuple(video.shape)}")
    return video.permute(0, 4, 1, 2, 3).float().div_(255.0)


def normalize(video: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """[B,C,T,H,W] - mean / std per channel (mean, std: [C])."""
    return (video - mean.view(1, -1, 1, 1, 1)) / std.view(1, -1, 1, 1, 1)


def resize(video: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[N,C,T,h,w] -> [N,C,T,size] bilinear with antialiasing (frames as a batch)."""
    n, c, t, h, w = video.shape
    if (h, w) == tuple(size):
        return video
    frames = video.transpose(1, 2).reshape(n * t, c, h, w)
    frames = F.interpolate(frames, size=size, mode="bilinear", antialias=True, align_corners=False)
    return frames.reshape(n, t, c, *size).transpose(1, 2)


def multiscale_boxes(
    height: int,
    width: int,
    size: int,
    scales: tuple[float, ...],
    max_distort: int,
    batch: int,
    generator: torch.Generator | None,
    *,
    fix_crop: bool = True,
    more_fix_crop: bool = True,
) -> list[tuple[int, int, int, int]]:
    """Crop boxes (top, left, h, w) of VideoMAE's ``GroupMultiScaleCrop`` (official ``transforms.py``, from TSN).

    Crop sides are ``int(min(H, W) · s)`` for s in ``scales`` (snapped to ``size`` when within 3 px); height and
    width scales are paired with index distance ≤ ``max_distort``; the offset is one of the fixed positions of
    ``fill_fix_offset`` on a grid of quarter steps of the free space: 13 with ``more_fix_crop`` (corners, centre,
    edge midpoints, quarter points; VideoMAE's default), the first 5 without; uniform over all offsets when
    ``fix_crop`` is off.
    """
    base = min(height, width)
    sides = [size if abs(int(base * s) - size) < 3 else int(base * s) for s in scales]
    pairs = [
        (sides[i], sides[j])
        for i in range(len(sides))
        for j in range(len(sides))
        if abs(i - j) <= max_distort
    ]
    device = generator.device if generator is not None else "cpu"
    pick = torch.randint(len(pairs), (batch,), generator=generator, device=device).tolist()
    spot = torch.randint(13 if more_fix_crop else 5, (batch,), generator=generator, device=device).tolist()
    frac = [(0.0, 0.0)] * batch  # random offsets as fractions of the free space (fix_crop off only)
    if not fix_crop:
        frac = torch.rand(batch, 2, generator=generator, device=device, dtype=torch.float64).tolist()
    boxes = []
    for p, o, (fy, fx) in zip(pick, spot, frac, strict=True):
        crop_h, crop_w = pairs[p]
        crop_h, crop_w = min(crop_h, height), min(crop_w, width)
        if not fix_crop:  # official: random.randint(0, image_w - crop_w), both ends included
            boxes.append((int(fy * (height - crop_h + 1)), int(fx * (width - crop_w + 1)), crop_h, crop_w))
            continue
        hs, ws = (height - crop_h) // 4, (width - crop_w) // 4
        # (w quarter steps, h quarter steps) in the official order: 5 basic positions then 8 more.
        wq, hq = _FIX_OFFSETS[o]
        boxes.append((hq * hs, wq * ws, crop_h, crop_w))
    return boxes


_FIX_OFFSETS = [
    (0, 0),
    (4, 0),
    (0, 4),
    (4, 4),
    (2, 2),
    (0, 2),
    (4, 2),
    (2, 4),
    (2, 0),
    (1, 1),
    (3, 1),
    (1, 3),
    (3, 3),
]


def crop_and_resize(video: torch.Tensor, boxes: list[tuple[int, int, int, int]], size: int) -> torch.Tensor:
    """[B,C,T,H,W] with one (top, left, h, w) box per sample -> [B,C,T,size,size]."""
    out = [
        resize(v[None, :, :, t : t + h, l : l + w], (size, size))
        for v, (t, l, h, w) in zip(video, boxes, strict=True)
    ]
    return torch.cat(out)


def random_resized_crop(
    video: torch.Tensor,
    size: int,
    scales: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66),
    max_distort: int = 1,
    generator: torch.Generator | None = None,
    *,
    fix_crop: bool = True,
    more_fix_crop: bool = True,
) -> torch.Tensor:
    """VideoMAE's multi-scale crop of a batch: [B,C,T,H,W] -> [B,C,T,size,size], one box per sample
    (:func:`multiscale_boxes`) shared by all its frames, resized bilinearly with antialiasing."""
    boxes = multiscale_boxes(
        video.shape[-2],
        video.shape[-1],
        size,
        scales,
        max_distort,
        video.shape[0],
        generator,
        fix_crop=fix_crop,
        more_fix_crop=more_fix_crop,
    )
    return crop_and_resize(video, boxes, size)


def horizontal_flip(video: torch.Tensor, prob: float, generator: torch.Generator | None) -> torch.Tensor:
    """Flip each sample left-right with probability ``prob`` ([B,C,T,H,W])."""
    if prob <= 0:
        return video
    device = generator.device if generator is not None else video.device
    flip = (torch.rand(video.shape[0], generator=generator, device=device) < prob).to(video.device)
    return torch.where(flip.view(-1, 1, 1, 1, 1), video.flip(-1), video)


def center_crop(video: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the short side to ``size`` when larger, then take the centre size×size ([B,C,T,H,W])."""
    return multi_crop(video, size, 1)


def multi_crop(video: torch.Tensor, size: int, num_crops: int) -> torch.Tensor:
    """Test-time crops: 1 = centre; 3 = start / centre / end along the long side (VideoMAE's 3-crop test).

    [B,C,T,H,W] -> [B·num_crops,C,T,size,size], the crops of one sample consecutive. The short side is first
    resized to ``size``.
    """
    if num_crops not in (1, 3):
        raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
    b, c, t, h, w = video.shape
    if min(h, w) != size:
        scale = size / min(h, w)
        video = resize(video, (max(size, round(h * scale)), max(size, round(w * scale))))
        h, w = video.shape[-2:]
    if num_crops == 1:
        starts = [((h - size) // 2, (w - size) // 2)]
    elif h >= w:
        starts = [(0, 0), ((h - size) // 2, 0), (h - size, 0)]
    else:
        starts = [(0, 0), (0, (w - size) // 2), (0, w - size)]
    crops = [video[..., y : y + size, x : x + size] for y, x in starts]  # each [B,C,T,size,size]
    return torch.stack(crops, dim=1).flatten(0, 1)


@dataclass
class AugmentConfig:
    """size: output side. scales/max_distort: VideoMAE's multi-scale crop (``[1, .875, .75, .66]``, 1).
    flip_prob: horizontal flips (0 by default: a flip turns "moving left" into "moving right").
    mean/std: input normalisation (ImageNet, as VideoMAE)."""

    size: int = 224
    scales: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)
    max_distort: int = 1
    flip_prob: float = 0.0
    mean: tuple[float, float, float] = field(default=IMAGENET_MEAN)
    std: tuple[float, float, float] = field(default=IMAGENET_STD)


class VideoAugment(nn.Module):
    """uint8 [B,T,H,W,C] -> float crop [B,C,T,size,size] in [0, 1]: multi-scale crop (+ flip) when training,
    centre crop otherwise. The one call a task makes for its input; :meth:`normalize` then gives the
    student's input.

    A training crop is drawn from the step's generator, or given per sample by ``view`` (``batch["view"]``:
    ``box`` int [B,4] as (top, left, h, w) and ``flip`` bool [B]), e.g. the view a teacher cache was built on.
    """

    def __init__(self, cfg: AugmentConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("mean", torch.tensor(cfg.mean), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std), persistent=False)

    def forward(
        self,
        video: torch.Tensor,
        generator: torch.Generator | None = None,
        train: bool = True,
        view: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        x = to_float(video)
        size = self.cfg.size
        if not train:
            return center_crop(x, size)
        if view is not None:
            boxes = [(int(t), int(left), int(h), int(w)) for t, left, h, w in view["box"].tolist()]
            if len(boxes) != x.shape[0]:
                raise ValueError(f"view has {len(boxes)} boxes for a batch of {x.shape[0]} clips")
            x = crop_and_resize(x, boxes, size)
            flip = view["flip"].to(device=x.device, dtype=torch.bool).view(-1, 1, 1, 1, 1)
            return torch.where(flip, x.flip(-1), x)
        x = random_resized_crop(x, size, self.cfg.scales, self.cfg.max_distort, generator)
        return horizontal_flip(x, self.cfg.flip_prob, generator)

    def normalize(self, clip: torch.Tensor) -> torch.Tensor:
        """[B,C,T,H,W] in [0, 1] -> normalised with the config's mean/std (the student's input)."""
        return normalize(clip, self.mean.to(clip.dtype), self.std.to(clip.dtype))
