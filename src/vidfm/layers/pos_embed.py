"""Fixed sine-cosine position embeddings (1-D over the flattened grid, or 3-D separable)."""

from __future__ import annotations

import math

import torch


def sincos_1d(num: int, dim: int) -> torch.Tensor:
    """[num, dim] table with sin on even and cos on odd channels, angle pos / 10000^(2⌊j/2⌋/dim).

    This is the interleaved layout of the official VideoMAE ``get_sinusoid_encoding_table``
    (``modeling_finetune.py``), applied to the flattened (t, h, w) token index; HF transformers' VideoMAE
    uses the same table, which is what makes converted checkpoints match.
    """
    pos = torch.arange(num, dtype=torch.float64)[:, None]
    j = torch.arange(dim, dtype=torch.float64)[None, :]
    angle = pos / torch.pow(10000.0, 2 * torch.div(j, 2, rounding_mode="floor") / dim)
    table = torch.empty(num, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angle[:, 0::2])
    table[:, 1::2] = torch.cos(angle[:, 1::2])
    return table.float()


def _sincos_axis(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """MAE layout for one axis: [sin(pos·ω) | cos(pos·ω)], ω_k = 10000^(-k/(dim/2)). positions [M] -> [M, dim]."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    out = positions.double()[:, None] * omega[None, :]
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def sincos_3d(grid: tuple[int, int, int], dim: int, time_first: bool = False) -> torch.Tensor:
    """[T·H·W, dim] separable table: dim/4 channels for time, 3·dim/8 each for h and w.

    The split follows the 3-D sincos of MAE-ST / UMT ``models/pos_embed.py`` (``get_3d_sincos_pos_embed``:
    a quarter of the channels temporal, the rest a 2-D spatial table), channels [w | h | t]. ``time_first``:
    MVD's order [t | w | h] (official MVD ``modeling_finetune.py`` ``get_3d_sincos_pos_embed`` concatenates
    the temporal table before the spatial one, whose ``meshgrid(grid_w, grid_h)`` puts w first).
    """
    t, h, w = grid
    if dim % 16:
        raise ValueError(f"3-D sincos needs a width divisible by 16, got {dim}")
    dt = dim // 4
    ds = (dim - dt) // 2
    emb_t = _sincos_axis(torch.arange(t), dt)[:, None, None, :].expand(t, h, w, dt)
    emb_h = _sincos_axis(torch.arange(h), ds)[None, :, None, :].expand(t, h, w, ds)
    emb_w = _sincos_axis(torch.arange(w), ds)[None, None, :, :].expand(t, h, w, ds)
    parts = [emb_t, emb_w, emb_h] if time_first else [emb_w, emb_h, emb_t]
    return torch.cat(parts, dim=-1).reshape(t * h * w, dim).float()


def interpolate_grid(
    table: torch.Tensor, old: tuple[int, int, int], new: tuple[int, int, int]
) -> torch.Tensor:
    """Resize a learned [T·H·W, D] table to a new grid (trilinear over t, bicubic-free for stability).

    Used when a checkpoint trained at one clip size is run at another (more frames, larger crops).
    """
    if tuple(old) == tuple(new):
        return table
    d = table.shape[-1]
    x = table.reshape(1, *old, d).permute(0, 4, 1, 2, 3)  # [1,D,T,H,W]
    x = torch.nn.functional.interpolate(x.float(), size=new, mode="trilinear", align_corners=False)
    return x.permute(0, 2, 3, 4, 1).reshape(math.prod(new), d).to(table.dtype)
