"""From a teacher's token grid to the student's: which frames a teacher sees, and how its tokens line up.

A student with tubelet t has T/t token slots in time. An image teacher sees single frames, so one student
token covers t of its patches. Two ways to pair them:

- ``"first"`` (official MVD, ``engine_for_pretraining.py`` with ``time_stride_loss=True``): the teacher sees
  ``frames[::t]`` only and each tubelet is matched with its first frame's patch. Cheaper (T/t frames) and the
  prediction layer keeps the teacher's width.
- ``"concat"`` (the same file, ``time_stride_loss=False``): the teacher sees all T frames and the t patches of
  a tubelet are concatenated on channels (``'(b t d) l c -> b (t l) (d c)'``), a t·D target per token.

A video teacher with the student's grid needs neither (``"first"`` with equal grids is the identity).
Spatially, grids must match unless ``resize`` is asked for (bilinear over the token map, for teachers run at
another resolution or patch size).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange

AlignMode = Literal["first", "concat"]


def teacher_frames(video: torch.Tensor, tubelet: int, mode: AlignMode = "first") -> torch.Tensor:
    """The frames an image teacher encodes: video [B,C,T,H,W] -> [B,C,T/t,H,W] (first) or all T (concat)."""
    if video.shape[2] % tubelet:
        raise ValueError(f"{video.shape[2]} frames do not split into tubelets of {tubelet}")
    if mode == "first":
        return video[:, :, ::tubelet]
    if mode == "concat":
        return video
    raise ValueError(f"unknown alignment {mode!r}; use 'first' or 'concat'")


def align_tokens(
    tokens: torch.Tensor,
    grid: tuple[int, int, int],
    student_grid: tuple[int, int, int],
    mode: AlignMode = "first",
    resize: bool = False,
) -> torch.Tensor:
    """Teacher tokens [B, T·h·w, D] on ``grid`` -> [B, T'·H'·W', D or k·D] on ``student_grid`` (T', H', W').

    Time: T == T' is kept as is; T == k·T' with ``mode="concat"`` concatenates each run of k frames on
    channels (frame-major within the run). Space: (h, w) must equal (H', W') unless ``resize``, which
    interpolates each frame's token map bilinearly.
    """
    t, h, w = grid
    ts, hs, ws = student_grid
    if tokens.shape[1] != t * h * w:
        raise ValueError(f"{tokens.shape[1]} teacher tokens do not fill its grid {grid}")
    if (h, w) != (hs, ws):
        if not resize:
            raise ValueError(
                f"teacher grid {h}x{w} differs from the student's {hs}x{ws}: give the teacher the student's "
                "patch grid (its input size) or allow resizing"
            )
        maps = rearrange(tokens, "b (t h w) d -> (b t) d h w", t=t, h=h, w=w)
        maps = F.interpolate(maps.float(), size=(hs, ws), mode="bilinear", align_corners=False)
        tokens = rearrange(maps.to(tokens.dtype), "(b t) d h w -> b (t h w) d", t=t)
    if t == ts:
        return tokens
    if mode == "concat" and t % ts == 0:
        return rearrange(tokens, "b (t k n) d -> b (t n) (k d)", t=ts, k=t // ts)
    raise ValueError(
        f"teacher has {t} time steps, the student {ts}: with mode={mode!r} they must be equal"
        + ("" if mode == "concat" else " (feed the teacher frames[::tubelet], or use mode='concat')")
    )


def target_dim(dim: int, tubelet: int, mode: AlignMode, per_frame: bool) -> int:
    """Width of the aligned target: an image teacher's ``dim`` × t with ``concat``, else ``dim``."""
    return dim * tubelet if per_frame and mode == "concat" else dim
