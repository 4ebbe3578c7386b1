"""Mask generators: which tokens the student sees.

Every generator returns a :class:`Mask` of index tensors with the **same visible count for every sample**, so
the encoder gathers without padding. Tokens are numbered in the encoder's (t, h, w) row-major order:
index = t·H·W + h·W + w. All randomness comes from an explicit ``torch.Generator`` on the target device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch


@dataclass
class Mask:
    """visible: long [B,Nv] sorted ascending; masked: long [B,Nm] sorted ascending; Nv + Nm = N."""

    visible: torch.Tensor
    masked: torch.Tensor

    @property
    def num_tokens(self) -> int:
        return self.visible.shape[1] + self.masked.shape[1]

    def bool(self) -> torch.Tensor:
        """[B,N] True where masked (the HF ``bool_masked_pos`` convention)."""
        out = torch.zeros(
            self.visible.shape[0], self.num_tokens, dtype=torch.bool, device=self.visible.device
        )
        return out.scatter_(1, self.masked, True)

    def to(self, device: torch.device | str) -> Mask:
        return Mask(self.visible.to(device), self.masked.to(device))


@dataclass
class MaskConfig:
    """kind: ``tube`` (VideoMAE/MVD), ``random`` (over all tokens), ``frame`` (independent per frame, same count
    per frame), ``semantic`` (UMT/InternVideo2: visible tokens drawn from a teacher's importance).
    ratio: fraction of tokens masked (per frame for tube/frame/semantic)."""

    kind: Literal["tube", "random", "frame", "semantic"] = "tube"
    ratio: float = 0.9


def masked_count(n: int, ratio: float) -> int:
    """⌊ratio·n⌋ masked, at least one visible. Official VideoMAE ``masking_generator.py``
    (``TubeMaskingGenerator``: ``int(mask_ratio * num_patches_per_frame)``) floors the same way."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), got {ratio}")
    return min(int(ratio * n), n - 1)


def _split(order: torch.Tensor, num_masked: int) -> Mask:
    """order [B,N]: a random permutation per row; its first num_masked entries are masked."""
    masked = order[:, :num_masked].sort(dim=1).values
    visible = order[:, num_masked:].sort(dim=1).values
    return Mask(visible, masked)


def _permutations(rows: int, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """[rows, n] independent random permutations of 0..n-1 (argsort of uniform noise) on ``device``.

    The noise is drawn where the generator lives (a generator only draws on its own device type: a CPU
    generator with a CUDA ``device`` raises "Expected a 'cuda' device type for generator") and moved after;
    with a generator on ``device`` (what the trainer passes) the move is a no-op."""
    noise = torch.rand(rows, n, generator=generator, device=generator.device)
    return noise.argsort(dim=1).to(device)


def _per_frame(chosen: torch.Tensor, batch: int, t: int, hw: int) -> torch.Tensor:
    """chosen [B·T, k] spatial indices per frame -> [B, T·k] token indices t·HW + s, sorted."""
    offsets = (torch.arange(t, device=chosen.device) * hw).repeat(batch)[:, None]  # [B·T,1]
    return (chosen + offsets).view(batch, -1).sort(dim=1).values


def tube_mask(
    batch: int, grid: tuple[int, int, int], ratio: float, generator: torch.Generator, device: torch.device
) -> Mask:
    """One random 2-D mask per sample repeated over time (VideoMAE ``TubeMaskingGenerator``), so a masked patch
    cannot be copied from the same position in a neighbouring frame."""
    t, h, w = grid
    hw = h * w
    k = masked_count(hw, ratio)
    order = _permutations(batch, hw, generator, device)  # [B,HW]
    spatial = _split(order, k)
    return Mask(_tile(spatial.visible, t, hw), _tile(spatial.masked, t, hw))


def _tile(spatial: torch.Tensor, t: int, hw: int) -> torch.Tensor:
    """spatial [B,k] sorted -> [B,T·k] the same positions in every frame (t·HW + s), still sorted."""
    offsets = torch.arange(t, device=spatial.device) * hw
    return (offsets[None, :, None] + spatial[:, None, :]).reshape(spatial.shape[0], -1)


def random_mask(
    batch: int, grid: tuple[int, int, int], ratio: float, generator: torch.Generator, device: torch.device
) -> Mask:
    """Uniformly random tokens over the whole clip (MAE / ST-MAE "agnostic" masking)."""
    n = grid[0] * grid[1] * grid[2]
    return _split(_permutations(batch, n, generator, device), masked_count(n, ratio))


def frame_mask(
    batch: int, grid: tuple[int, int, int], ratio: float, generator: torch.Generator, device: torch.device
) -> Mask:
    """An independent random mask in every frame, the same count per frame."""
    t, h, w = grid
    hw = h * w
    k = masked_count(hw, ratio)
    order = _permutations(batch * t, hw, generator, device)  # [B·T,HW]
    return Mask(_per_frame(order[:, k:], batch, t, hw), _per_frame(order[:, :k], batch, t, hw))


def semantic_mask(
    importance: torch.Tensor, grid: tuple[int, int, int], ratio: float, generator: torch.Generator
) -> Mask:
    """Per frame keep ``HW - ⌊ratio·HW⌋`` tokens drawn without replacement with probability ∝ ``importance``.

    Official UMT (``single_modality/engines/engine_for_pretraining_umt.py``, ``multi_modality/models/umt.py``;
    InternVideo2 stage 1 likewise): the CLIP teacher's class-token attention over the patches of each frame is
    the importance, ``N_vis = N - int(N * mask_ratio)``, and the visible tokens are sampled from it with
    ``torch.multinomial`` without replacement — not a top-k, so background tokens stay possible.
    Args: importance [B,T,HW] or [B,N] non-negative (need not sum to one).
    """
    t, h, w = grid
    hw = h * w
    batch = importance.shape[0]
    if importance.shape not in ((batch, t, hw), (batch, t * hw)):
        raise ValueError(
            f"importance must be [B,{t},{hw}] or [B,{t * hw}] for grid {grid}, got {tuple(importance.shape)}"
        )
    # Rounding in resampled attention maps may dip just below zero; anything clearly negative is a bug.
    if not torch.isfinite(importance).all() or (importance < -1e-6).any():
        raise ValueError("importance must be finite and non-negative (e.g. attention probabilities)")
    weights = importance.reshape(batch * t, hw).float().clamp_min(0) + 1e-12  # zero entries stay drawable
    keep = hw - masked_count(hw, ratio)
    # Drawn on the generator's device (see _permutations), the indices then go back to the importance's.
    chosen = torch.multinomial(weights.to(generator.device), keep, replacement=False, generator=generator)
    chosen = chosen.to(importance.device)  # [B·T,keep]
    visible = _per_frame(chosen, batch, t, hw)
    is_masked = torch.ones(batch, t * hw, dtype=torch.bool, device=importance.device)
    is_masked.scatter_(1, visible, False)
    masked = is_masked.nonzero()[:, 1].view(batch, -1)  # row-major nonzero: sorted per sample
    return Mask(visible, masked)


@dataclass
class BlockMaskConfig:
    """A V-JEPA multi-block mask: ``num_blocks`` 3-D blocks of one sampled size, their union masked.

    spatial_scale: range of a block's area as a fraction of the H'×W' positions.
    temporal_scale: range of a block's length as a fraction of the T' token frames.
    aspect_ratio: range of the block's height / width.
    Defaults are V-JEPA's short-range mask; :data:`LONG_RANGE` is the other one it trains with (official
    ``configs/pretrain/vitl16.yaml``, ``mask``: 8 blocks at scale 0.15 and 2 at 0.7, both over the whole
    clip, aspect 0.75–1.5; ``max_temporal_keep`` 1.0 and ``max_keep`` null, which vidfm does not implement).
    """

    num_blocks: int = 8
    spatial_scale: tuple[float, float] = (0.15, 0.15)
    temporal_scale: tuple[float, float] = (1.0, 1.0)
    aspect_ratio: tuple[float, float] = (0.75, 1.5)


SHORT_RANGE = BlockMaskConfig()
LONG_RANGE = BlockMaskConfig(num_blocks=2, spatial_scale=(0.7, 0.7))


def _uniform(bounds: tuple[float, float], generator: torch.Generator) -> float:
    lo, hi = bounds
    return lo + float(torch.rand(1, generator=generator, device=generator.device).item()) * (hi - lo)


def block_size(
    cfg: BlockMaskConfig, grid: tuple[int, int, int], generator: torch.Generator
) -> tuple[int, int, int]:
    """One (t, h, w) block size for a whole batch, as official V-JEPA ``src/masks/multiblock3d.py``
    (``_sample_block_size``): t = max(1, ⌊T'·s_t⌋); area ⌊H'W'·s⌋; h = round(√(area·ar)), w = round(√(area/ar)),
    each clipped to the grid."""
    t_grid, h_grid, w_grid = grid
    t = max(1, int(t_grid * _uniform(cfg.temporal_scale, generator)))
    area = int(h_grid * w_grid * _uniform(cfg.spatial_scale, generator))
    ratio = _uniform(cfg.aspect_ratio, generator)
    h = min(int(round(math.sqrt(area * ratio))), h_grid)
    w = min(int(round(math.sqrt(area / ratio))), w_grid)
    return min(t, t_grid), max(h, 1), max(w, 1)


def block_starts(
    batch: int,
    num_blocks: int,
    size: tuple[int, int, int],
    grid: tuple[int, int, int],
    generator: torch.Generator,
) -> torch.Tensor:
    """[B, num_blocks, 3] uniformly random (t, h, w) corners of blocks of ``size`` that fit in ``grid``."""
    highs = [g - s + 1 for g, s in zip(grid, size, strict=True)]
    u = torch.rand(batch, num_blocks, 3, generator=generator, device=generator.device)
    high = torch.tensor(highs, device=u.device)
    return (u * high).long().clamp_max(high - 1)


def blocks_to_masked(
    starts: torch.Tensor, size: tuple[int, int, int], grid: tuple[int, int, int]
) -> torch.Tensor:
    """starts [B,K,3], one block size -> [B,N] bool, True inside any block (the union), (t,h,w) row-major."""
    inside = []
    for axis, (length, extent) in enumerate(zip(size, grid, strict=True)):
        pos = torch.arange(extent, device=starts.device)  # [extent]
        lo = starts[..., axis : axis + 1]  # [B,K,1]
        inside.append((pos >= lo) & (pos < lo + length))  # [B,K,extent]
    t_in, h_in, w_in = inside
    box = t_in[..., :, None, None] & h_in[..., None, :, None] & w_in[..., None, None, :]  # [B,K,T,H,W]
    return box.any(dim=1).flatten(1)


def multiblock_mask(
    cfg: BlockMaskConfig,
    batch: int,
    grid: tuple[int, int, int],
    generator: torch.Generator,
    device: torch.device | str,
) -> Mask:
    """V-JEPA multi-block masking: the union of ``cfg.num_blocks`` blocks is masked, the rest is context.

    As official ``src/masks/multiblock3d.py``: one block size per batch, block positions per sample, and a
    sample whose blocks cover everything is drawn again. Samples differ in how much the blocks overlap, so the
    context is cut to the smallest count in the batch by keeping each sample's first context tokens in
    (t, h, w) order (the official ``[:min_keep_enc]``). The official code drops the cut tokens from both sets;
    here they join ``masked`` (a :class:`Mask` partitions the clip), so a few more tokens are predicted.
    """
    size = block_size(cfg, grid, generator)
    n = math.prod(grid)
    masked = torch.ones(batch, n, dtype=torch.bool, device=device)  # no context yet: every sample is drawn
    # The first pass draws every sample; a sample with no context left is drawn again, up to 100 times (rare:
    # blocks rarely tile the clip).
    for _ in range(101):
        empty = masked.all(dim=1)
        if not bool(empty.any()):
            break
        starts = block_starts(int(empty.sum()), cfg.num_blocks, size, grid, generator)
        masked[empty] = blocks_to_masked(starts, size, grid).to(device)
    else:
        raise ValueError(f"multi-block mask {cfg} covers the whole {grid} grid; use smaller blocks")
    context = ~masked  # [B,N]
    keep = int(context.sum(dim=1).min())
    context &= context.cumsum(dim=1) <= keep  # the first ``keep`` context tokens of each sample
    visible = context.nonzero()[:, 1].view(batch, keep)  # row-major nonzero: sorted per sample
    return Mask(visible, (~context).nonzero()[:, 1].view(batch, n - keep))


def make_mask(
    cfg: MaskConfig,
    batch: int,
    grid: tuple[int, int, int],
    generator: torch.Generator,
    device: torch.device | str,
    importance: torch.Tensor | None = None,
) -> Mask:
    """The mask ``cfg`` asks for; ``importance`` [B,T,HW] is required for ``semantic``."""
    device = torch.device(device)
    if cfg.kind == "semantic":
        if importance is None:
            raise ValueError("semantic masking needs the teacher's importance [B,T,H*W]")
        if importance.shape[0] != batch:
            raise ValueError(f"importance has batch size {importance.shape[0]}, expected {batch}")
        return semantic_mask(importance, grid, cfg.ratio, generator)
    makers = {"tube": tube_mask, "random": random_mask, "frame": frame_mask}
    if cfg.kind not in makers:
        raise ValueError(f"unknown mask kind {cfg.kind!r}; use tube, random, frame or semantic")
    return makers[cfg.kind](batch, grid, cfg.ratio, generator, device)
