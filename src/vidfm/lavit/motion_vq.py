"""Video-LaVIT's motion tokenizer: a VQ-VAE over codec motion fields, and the vector quantizer it shares with
the keyframe tokenizer.

Architecture after the official ``VideoLaVIT/models/modeling_motion_tokenizer.py`` (jy0205/LaVIT):
motion ``[B, 2, T, H, W]`` -> linear embedding + learned spatial and temporal position tables -> stages of
space-time blocks (spatial attention, temporal attention, MLP), each stage followed by a Conv3d (kernel 3)
down-sampling -> final norm -> ``Linear-Tanh-Linear`` to the code dimension -> L2-normalised codebook
(1024 x 32) -> decoder: stages of nearest up-sampling + Conv3d, space-time blocks -> ``Linear-Tanh-Linear``
to the 2 motion channels. Official size: width 512, 8 heads, 4 stages of 3 blocks, strides (1,2,2),
(2,1,1), (2,1,1), (2,2,2): a 24 x 20 x 36 field becomes 3 x 5 x 9 = 135 tokens.

The official release has no training code; its constructor takes ``decay=0.99`` and
``quantize_kmeans_init=True``, the arguments of BEiT v2's ``NormEMAVectorQuantizer``
(``beitv2/norm_ema_quantizer.py``), whose rule the EMA mode here follows. Models return tensors only; the
VQ-VAE losses live in :mod:`vidfm.tasks.motion_vq`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from vidfm.layers.attention import Attention
from vidfm.layers.block import Mlp


@dataclass
class QuantizerConfig:
    """Codebook settings.

    num_codes, dim: codebook size and code width (official motion tokenizer 1024 x 32; LaVIT image
    tokenizer 16384 x 32). l2norm: normalise encoder outputs and codes to the unit sphere (official).
    ema: update codes as an exponential moving average of their assigned vectors (``decay``) instead of
    by gradient; kmeans_init: initialise the codebook by k-means (k-means++ seeds, ``kmeans_iters``
    Lloyd steps) on the first training batch.
    restart_ratio: a code whose usage (EMA with ``decay`` of its per-batch count) falls below this fraction of
    the uniform usage is dead; every ``restart_every`` training batches the dead codes are reset to random
    encoder outputs of the batch (0 disables restarts).
    """

    num_codes: int = 1024
    dim: int = 32
    l2norm: bool = True
    ema: bool = True
    decay: float = 0.99
    kmeans_init: bool = True
    kmeans_iters: int = 10
    restart_ratio: float = 0.03
    restart_every: int = 20


@dataclass
class Quantized:
    """Output of :class:`VectorQuantizer` for ``N`` vectors (any leading shape ``S``).

    z: encoder output as compared with the codes (normalised when ``l2norm``) ``[*S, D]``.
    codes: the selected codebook vectors ``[*S, D]`` (carry gradient to the codebook when not EMA).
    quantized: straight-through output ``z + (codes - z).detach()`` ``[*S, D]``, what the decoder reads.
    indices: long ``[*S]``. perplexity: exp(entropy) of the batch's code histogram. usage: fraction of
    codes used in the batch.
    """

    z: torch.Tensor
    codes: torch.Tensor
    quantized: torch.Tensor
    indices: torch.Tensor
    perplexity: torch.Tensor
    usage: torch.Tensor


def _l2(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, p=2, dim=-1)


class VectorQuantizer(nn.Module):
    """Nearest-code quantizer with straight-through gradients, optional EMA codebook, k-means init and
    dead-code restarts. See :class:`QuantizerConfig` for the arguments."""

    def __init__(self, cfg: QuantizerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        weight = torch.randn(cfg.num_codes, cfg.dim)
        weight = _l2(weight) if cfg.l2norm else weight / math.sqrt(cfg.dim)
        if cfg.ema:
            self.register_buffer("codebook", weight)
        else:
            self.codebook = nn.Parameter(weight)
        self.register_buffer("usage", torch.zeros(cfg.num_codes))
        self.register_buffer("initialized", torch.tensor(not cfg.kmeans_init))
        self.register_buffer("batches", torch.zeros((), dtype=torch.long))

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Code vectors of ``indices`` (any shape) -> ``[*indices.shape, D]``."""
        return F.embedding(indices, self.codebook)

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code of each row of ``z`` [N, D] (squared Euclidean; cosine when l2norm)."""
        c = self.codebook.float()
        d = z.pow(2).sum(1, keepdim=True) - 2 * z @ c.t() + c.pow(2).sum(1)[None]
        return d.argmin(1)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Quantized:
        """Quantize ``x`` ``[*S, D]``; in training mode also initialise, EMA-update and restart codes."""
        shape = x.shape
        with torch.autocast(x.device.type, enabled=False):  # distances in fp32, as the official encode()
            z = x.float().reshape(-1, shape[-1])
            z = _l2(z) if self.cfg.l2norm else z
            if self.training and not bool(self.initialized):
                self._kmeans_init(z.detach(), generator)
            indices = self.nearest(z.detach())
            counts = torch.bincount(indices, minlength=self.cfg.num_codes).float()
            if self.training:
                self._update(z.detach(), indices, counts, generator)
            codes = self.lookup(indices)
            quantized = z + (codes - z).detach()
            p = counts / counts.sum()
            perplexity = torch.exp(-(p * torch.log(p.clamp_min(1e-10))).sum())
            usage = (counts > 0).float().mean()
        return Quantized(
            z=z.reshape(shape),
            codes=codes.reshape(shape),
            quantized=quantized.reshape(shape).to(x.dtype),
            indices=indices.reshape(shape[:-1]),
            perplexity=perplexity,
            usage=usage,
        )

    # ----- training-time codebook maintenance (no autograd) -----
    @torch.no_grad()
    def _sample(self, z: torch.Tensor, n: int, generator: torch.Generator | None) -> torch.Tensor:
        """``n`` rows of ``z`` (with replacement when ``z`` has fewer), slightly jittered so repeats differ."""
        # The generator lives on the batch's device (the trainer seeds one per step there).
        idx = torch.randint(len(z), (n,), generator=generator, device=z.device)
        noise = torch.randn(n, z.shape[1], generator=generator, device=z.device, dtype=z.dtype)
        out = z[idx] + 1e-3 * noise * z.std().clamp_min(1e-6)
        return _l2(out) if self.cfg.l2norm else out

    @torch.no_grad()
    def _kmeans_init(self, z: torch.Tensor, generator: torch.Generator | None) -> None:
        """k-means++ seeding, then Lloyd iterations (spherical k-means when l2norm)."""
        k = self.cfg.num_codes
        if len(z) <= k:  # fewer vectors than codes: every vector seeds a code, the rest are jittered copies
            centres = torch.cat([z, self._sample(z, k - len(z), generator)])
        else:
            picks = [int(torch.randint(len(z), (1,), generator=generator, device=z.device))]
            d2 = (z - z[picks[0]]).pow(2).sum(1)
            for _ in range(k - 1):  # next seed drawn with probability proportional to D^2
                i = int(torch.multinomial(d2 + 1e-12, 1, generator=generator))
                picks.append(i)
                d2 = torch.minimum(d2, (z - z[i]).pow(2).sum(1))
            centres = z[picks].clone()
        for _ in range(self.cfg.kmeans_iters):
            d = z.pow(2).sum(1, keepdim=True) - 2 * z @ centres.t() + centres.pow(2).sum(1)[None]
            assign = d.argmin(1)
            sums = torch.zeros_like(centres).index_add_(0, assign, z)
            n = torch.bincount(assign, minlength=k).float()
            new = sums / n.clamp_min(1)[:, None]
            new = _l2(new) if self.cfg.l2norm else new
            centres = torch.where((n > 0)[:, None], new, centres)  # empty clusters keep their seed
        self.codebook.data.copy_(centres)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _update(
        self, z: torch.Tensor, indices: torch.Tensor, counts: torch.Tensor, generator: torch.Generator | None
    ) -> None:
        cfg = self.cfg
        self.usage.mul_(cfg.decay).add_(counts, alpha=1 - cfg.decay)
        if cfg.ema:
            # BEiT v2 NormEMAVectorQuantizer: mean of the vectors assigned to each code, EMA into the code,
            # renormalised; unused codes keep their value.
            sums = torch.zeros_like(self.codebook).index_add_(0, indices, z)
            mean = sums / counts.clamp_min(1)[:, None]
            mean = _l2(mean) if cfg.l2norm else mean
            new = self.codebook * cfg.decay + mean * (1 - cfg.decay)
            new = _l2(new) if cfg.l2norm else new
            self.codebook.copy_(torch.where((counts > 0)[:, None], new, self.codebook))
        self.batches.add_(1)
        if cfg.restart_every and int(self.batches) % cfg.restart_every == 0:
            uniform = counts.sum() / cfg.num_codes
            dead = self.usage < cfg.restart_ratio * uniform
            n = int(dead.sum())
            if n:
                self.codebook.data[dead] = self._sample(z, n, generator).to(self.codebook.dtype)
                self.usage[dead] = uniform


# ----------------------------------------------------------------------------- the VQ-VAE
@dataclass
class MotionVQConfig:
    """Motion VQ-VAE hyper-parameters (defaults: the official model, ``get_motion_trans_model_params``).

    num_frames, grid: the motion field ``[2, num_frames, grid[0], grid[1]]`` the model reads.
    width, heads, mlp_ratio: transformer width (512), heads (8) and MLP ratio (4).
    stage_depths: space-time blocks per stage (official 3, 3, 3, 3), in the encoder and the decoder.
    strides: (t, h, w) down-sampling after each encoder stage (the decoder up-samples in reverse order).
    quantizer: the codebook.
    """

    num_frames: int = 24
    grid: tuple[int, int] = (20, 36)
    width: int = 512
    heads: int = 8
    mlp_ratio: float = 4.0
    stage_depths: tuple[int, ...] = (3, 3, 3, 3)
    strides: tuple[tuple[int, int, int], ...] = ((1, 2, 2), (2, 1, 1), (2, 1, 1), (2, 2, 2))
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)

    def token_grid(self) -> tuple[int, int, int]:
        """(t, h, w) of the code grid; raises if a stride does not divide the size it is applied to."""
        size = [self.num_frames, *self.grid]
        if len(self.strides) != len(self.stage_depths):
            raise ValueError(f"{len(self.strides)} strides for {len(self.stage_depths)} stages")
        for stride in self.strides:
            for a, s in enumerate(stride):
                if s not in (1, 2) or size[a] % s:
                    raise ValueError(f"stride {tuple(stride)} does not fit the size {tuple(size)}")
            size = [n // s for n, s in zip(size, stride, strict=True)]
        return tuple(size)  # type: ignore[return-value]


class SpaceTimeBlock(nn.Module):
    """Pre-norm factorised block on ``[B, T, N, D]``: spatial attention within each frame, temporal
    attention across frames at each position, then an MLP (official ``SpatioTemporalBlock``).

    Args: dim, heads, mlp_ratio: width, heads, MLP hidden ratio.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm0 = nn.LayerNorm(dim, eps=1e-5)  # official norm_layer eps for the tokenizer
        self.spatial = Attention(dim, heads, qkv_bias="qv")
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.temporal = Attention(dim, heads, qkv_bias="qv")
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, n, d = x.shape
        s = x.reshape(b * t, n, d)
        s = s + self.spatial(self.norm0(s))
        y = s.reshape(b, t, n, d).transpose(1, 2).reshape(b * n, t, d)
        y = y + self.temporal(self.norm1(y))
        y = y + self.mlp(self.norm2(y))
        return y.reshape(b, n, t, d).transpose(1, 2)


class _Down(nn.Module):
    """Conv3d, kernel 3, on ``[B, D, T, H, W]``: padding (1, 1) on stride-1 axes and (0, 1) on stride-2
    axes, the official ``pad_list``, so a stride-2 axis of even size n becomes exactly n / 2."""

    def __init__(self, dim: int, stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.pad = tuple(p for s in reversed(stride) for p in ((1, 1) if s == 1 else (0, 1)))
        self.conv = nn.Conv3d(dim, dim, 3, stride=tuple(stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.pad))


class _Up(nn.Module):
    """Nearest up-sampling by ``scale`` then a Conv3d (kernel 3, padding 1), official ``Upsample``."""

    def __init__(self, dim: int, scale: tuple[int, int, int]) -> None:
        super().__init__()
        self.scale = tuple(float(s) for s in scale)
        self.conv = nn.Conv3d(dim, dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x.float(), scale_factor=self.scale, mode="nearest").to(x.dtype))


def _task_layer(dim: int, out: int) -> nn.Sequential:
    # Official encode_task_layer / decode_task_layer: Linear -> Tanh -> Linear.
    return nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, out))


def _stages(cfg: MotionVQConfig) -> nn.ModuleList:
    return nn.ModuleList(
        nn.ModuleList(SpaceTimeBlock(cfg.width, cfg.heads, cfg.mlp_ratio) for _ in range(d))
        for d in cfg.stage_depths
    )


def _run(blocks: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    """Blocks over a channels-last grid ``[B, T, H, W, D]``."""
    b, t, h, w, d = x.shape
    x = x.reshape(b, t, h * w, d)
    for block in blocks:
        x = block(x)
    return x.reshape(b, t, h, w, d)


@dataclass
class MotionVQOutput:
    """recon ``[B, 2, T, H, W]``; quant: the :class:`Quantized` codes on the token grid ``[B, t, h, w, ·]``."""

    recon: torch.Tensor
    quant: Quantized


class MotionVQVAE(nn.Module):
    """Motion field ``[B, 2, T, H, W]`` -> codes on a ``(t, h, w)`` grid -> reconstructed field.

    Args:
        cfg: see :class:`MotionVQConfig`.
    """

    def __init__(self, cfg: MotionVQConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tokens_grid = cfg.token_grid()
        d, (h, w) = cfg.width, cfg.grid
        self.in_proj = nn.Linear(2, d)
        self.pos_embed = nn.Parameter(torch.zeros(1, 1, h * w, d))  # spatial table, official
        self.temp_pos = nn.Parameter(torch.zeros(1, cfg.num_frames, 1, d))  # temporal table, official
        self.enc_stages = _stages(cfg)
        self.downs = nn.ModuleList(_Down(d, s) for s in cfg.strides)
        self.enc_norm = nn.LayerNorm(d, eps=1e-5)
        self.encode_task_layer = _task_layer(d, cfg.quantizer.dim)
        self.quantizer = VectorQuantizer(cfg.quantizer)
        self.dec_in = nn.Linear(cfg.quantizer.dim, d)
        self.ups = nn.ModuleList(_Up(d, s) for s in reversed(cfg.strides))
        self.dec_stages = _stages(cfg)
        self.dec_norm = nn.LayerNorm(d, eps=1e-5)
        self.decode_task_layer = _task_layer(d, 2)
        self.apply(_init)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.temp_pos, std=0.02)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "temp_pos"}

    def _check(self, motion: torch.Tensor) -> None:
        want = (2, self.cfg.num_frames, *self.cfg.grid)
        if motion.ndim != 5 or tuple(motion.shape[1:]) != want:
            raise ValueError(f"motion must be [B, {', '.join(map(str, want))}], got {tuple(motion.shape)}")

    def encode(self, motion: torch.Tensor, generator: torch.Generator | None = None) -> Quantized:
        """motion ``[B, 2, T, H, W]`` -> :class:`Quantized` with fields shaped ``[B, t, h, w, ·]``."""
        self._check(motion)
        b, _, t, h, w = motion.shape
        x = self.in_proj(motion.permute(0, 2, 3, 4, 1)).reshape(b, t, h * w, -1)
        x = (x + self.pos_embed + self.temp_pos).reshape(b, t, h, w, -1)
        for blocks, down in zip(self.enc_stages, self.downs, strict=True):
            x = _run(blocks, x)
            x = down(x.permute(0, 4, 1, 2, 3)).permute(0, 2, 3, 4, 1)
        x = self.encode_task_layer(self.enc_norm(x))  # [B, t, h, w, code_dim]
        return self.quantizer(x, generator)

    def decode(self, quantized: torch.Tensor) -> torch.Tensor:
        """Code vectors ``[B, t, h, w, code_dim]`` -> motion ``[B, 2, T, H, W]``."""
        x = self.dec_in(quantized)
        for up, blocks in zip(self.ups, self.dec_stages, strict=True):
            x = up(x.permute(0, 4, 1, 2, 3)).permute(0, 2, 3, 4, 1)
            x = _run(blocks, x)
        return self.decode_task_layer(self.dec_norm(x)).permute(0, 4, 1, 2, 3)

    def forward(self, motion: torch.Tensor, generator: torch.Generator | None = None) -> MotionVQOutput:
        quant = self.encode(motion, generator)
        return MotionVQOutput(recon=self.decode(quant.quantized), quant=quant)

    @torch.no_grad()
    def tokenize(self, motion: torch.Tensor) -> torch.Tensor:
        """motion ``[B, 2, T, H, W]`` -> token ids ``[B, t·h·w]`` (row-major t, h, w)."""
        return self.encode(motion).indices.flatten(1)

    @torch.no_grad()
    def detokenize(self, ids: torch.Tensor) -> torch.Tensor:
        """token ids ``[B, t·h·w]`` -> motion ``[B, 2, T, H, W]``."""
        t, h, w = self.tokens_grid
        if ids.ndim != 2 or ids.shape[1] != t * h * w:
            raise ValueError(f"expected ids [B, {t * h * w}], got {tuple(ids.shape)}")
        if int(ids.min()) < 0 or int(ids.max()) >= self.cfg.quantizer.num_codes:
            raise ValueError(f"token ids must lie in [0, {self.cfg.quantizer.num_codes})")
        return self.decode(self.quantizer.lookup(ids).reshape(len(ids), t, h, w, -1))


def _init(m: nn.Module) -> None:
    # Official _init_weights: truncated normal (std 0.02) for linear and conv weights, zero biases.
    if isinstance(m, (nn.Linear, nn.Conv3d)):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
