"""Video detokenizer: a small motion-conditioned 3-D U-Net that generates a clip's frames with EDM.

Video-LaVIT (``VideoLaVIT/models/video_detokenizer.py``) fine-tunes Stable Video Diffusion's
spatio-temporal U-Net in a VAE latent space: the keyframe latent (repeated over frames) and the motion
field (decoded from the motion tokens, bicubically resized to the latent size and divided by 10) are
concatenated to the noisy latents on channels, motion features also enter by cross-attention, the
objective and the Euler sampler are EDM's (Karras et al., NeurIPS 2022), and classifier-free guidance
ramps from 1 to 4 over the frames. For a long video, the next clip starts from the noise obtained by
inverting the previous clip's last frame.

Substitutions, so that tiny models train on a CPU: pixels instead of VAE latents (no VAE ships here), a
(2+1)-D convolutional U-Net (spatial 1x3x3 and temporal 3x1x1 convolutions, as pseudo-3-D video U-Nets)
with self-attention over space and time only at the lowest resolution, motion conditioning by channel
concatenation only, and a constant guidance scale. EDM's preconditioning, noise distribution, loss weight
and Heun sampler follow the paper (Table 1, Algorithm 1). Models return tensors; the loss is in
:mod:`vidfm.tasks.detokenizer`.

Prediction relative to the conditioning (``base``, a departure from Video-LaVIT): a small generator trained
briefly in pixels does not even learn to copy its keyframe (it lost to repeating the keyframe). With
``base="repeat"`` or ``"warp"`` the diffused variable is the residual ``x - b`` of the clip against a base
clip ``b`` built from the condition (the keyframe repeated, or warped along the motion by
:func:`vidfm.lavit.warp.warp_keyframe`), and EDM's preconditioning is applied to that residual with
``sigma_data`` its std: ``D(x; sigma) = b + c_skip (x - b) + c_out F(c_in (x - b), c_noise, cond)``. The
output layer starts at zero, so the untrained denoiser returns ``b`` for ``x = b`` at every noise level and
training only has to learn the change. Video-LaVIT denoises SVD latents of the clip itself (the keyframe
latent only enters as a condition).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vidfm.lavit.clips import MOTION_RESCALE
from vidfm.lavit.warp import warp_keyframe
from vidfm.layers.attention import Attention


@dataclass
class DetokenizerConfig:
    """U-Net and EDM settings.

    num_frames, size: the clip ``[num_frames, size, size]`` generated. channels: U-Net width per level
    (each level halves the spatial size); blocks: residual blocks per level; heads: attention heads at the
    lowest level. sigma_data, p_mean, p_std: EDM data std and log-normal training noise (0.5, -1.2, 1.2);
    sigma_min, sigma_max, rho, steps: the sampling schedule (0.002, 80, 7; Heun steps).
    cond_drop: probability of dropping the motion condition in training (classifier-free guidance).
    base: what the U-Net predicts against: ``"none"`` (the clip itself, as Video-LaVIT), ``"repeat"`` (the
    residual to the repeated keyframe) or ``"warp"`` (the residual to the keyframe warped along the
    motion; these channels of the condition then hold the warped keyframe). With a base, ``sigma_data``
    is the residual's std.
    """

    num_frames: int = 24
    size: int = 64
    channels: tuple[int, ...] = (64, 128, 256)
    blocks: int = 2
    heads: int = 4
    sigma_data: float = 0.5
    p_mean: float = -1.2
    p_std: float = 1.2
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    steps: int = 18
    cond_drop: float = 0.1
    base: Literal["none", "repeat", "warp"] = "none"


COND_CHANNELS = 3 + 2 + 1  # keyframe RGB (repeated or warped), motion (dx, dy), frame position


def drop_motion(cond: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
    """The condition ``[B, 6, T, S, S]`` without motion (all rows, or those where ``drop [B]`` is true): the
    motion channels zeroed and the keyframe channels reset to the keyframe repeated (frame 0 of a warped
    keyframe is the keyframe itself, and warping by zero motion is the repeat), as if ``condition`` had
    been given zero motion."""
    free = cond.clone()
    free[:, :3] = cond[:, :3, :1].expand_as(cond[:, :3])
    free[:, 3:5] = 0
    if drop is None:
        return free
    return torch.where(drop.view(-1, 1, 1, 1, 1), free, cond)


def _groups(c: int) -> int:
    return math.gcd(c, 8)


class SpatialConv(nn.Module):
    """A 1 x k x k convolution of ``[B, C, T, H, W]`` run as a Conv2d over the frames folded into the batch:
    PyTorch's CPU Conv3d falls back to a slow kernel for these shapes (measured ~10x slower steps).

    Args: cin, cout: widths; stride: spatial stride; kernel: spatial size.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, kernel: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        y = self.conv(x.transpose(1, 2).reshape(b * t, c, h, w))
        return y.reshape(b, t, *y.shape[1:]).transpose(1, 2)


class TemporalConv(nn.Module):
    """A 3 x 1 x 1 convolution of ``[B, C, T, H, W]``, as a (3, 1) Conv2d over ``[B, C, T, H·W]``.

    Args: cin, cout: widths.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, (3, 1), padding=(1, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        return self.conv(x.reshape(b, c, t, h * w)).reshape(b, -1, t, h, w)


class ResBlock(nn.Module):
    """(2+1)-D residual block on ``[B, C, T, H, W]``: norm-act-spatial conv, FiLM from the noise embedding,
    norm-act-temporal conv; a 1x1 skip when the width changes.

    Args: cin, cout: widths; emb: noise-embedding width.
    """

    def __init__(self, cin: int, cout: int, emb: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.spatial = SpatialConv(cin, cout)
        self.film = nn.Linear(emb, 2 * cout)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.temporal = TemporalConv(cout, cout)
        self.skip = SpatialConv(cin, cout, kernel=1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.temporal.conv.weight)  # each block starts as the identity (residual)
        nn.init.zeros_(self.temporal.conv.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.spatial(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return self.skip(x) + self.temporal(F.silu(h))


class _Upsample(nn.Module):
    """Nearest 2x spatial up-sampling of ``[B, C, T, H, W]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat_interleave(2, dim=3).repeat_interleave(2, dim=4)


class SpaceTimeAttention(nn.Module):
    """Joint self-attention over all ``T·H·W`` positions of ``[B, C, T, H, W]`` (lowest level only).

    Args: dim, heads: width and heads.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(_groups(dim), dim)
        self.attn = Attention(dim, heads)
        nn.init.zeros_(self.attn.proj.weight)
        nn.init.zeros_(self.attn.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # [B, T·H·W, C]
        return x + self.attn(tokens).transpose(1, 2).reshape(b, c, t, h, w)


class VideoUNet(nn.Module):
    """``F(x_in [B, 3, T, H, W], c_noise [B], cond [B, 6, T, H, W]) -> [B, 3, T, H, W]``.

    Args:
        cfg: see :class:`DetokenizerConfig`.
    """

    def __init__(self, cfg: DetokenizerConfig) -> None:
        super().__init__()
        ch = list(cfg.channels)
        if cfg.size % 2 ** (len(ch) - 1):
            raise ValueError(f"size {cfg.size} must be divisible by {2 ** (len(ch) - 1)} ({len(ch)} levels)")
        emb = 4 * ch[0]
        self.freqs = ch[0] // 2
        self.noise_mlp = nn.Sequential(nn.Linear(ch[0], emb), nn.SiLU(), nn.Linear(emb, emb))
        self.stem = SpatialConv(3 + COND_CHANNELS, ch[0])
        self.down = nn.ModuleList()
        skips, c = [ch[0]], ch[0]
        for level, width in enumerate(ch):
            for _ in range(cfg.blocks):
                self.down.append(ResBlock(c, width, emb))
                c = width
                skips.append(c)
            if level < len(ch) - 1:
                self.down.append(SpatialConv(c, c, stride=2))
                skips.append(c)
        self.mid1 = ResBlock(c, c, emb)
        self.mid_attn = SpaceTimeAttention(c, cfg.heads)
        self.mid2 = ResBlock(c, c, emb)
        self.up = nn.ModuleList()
        for level, width in reversed(list(enumerate(ch))):
            for _ in range(cfg.blocks + 1):
                self.up.append(ResBlock(c + skips.pop(), width, emb))
                c = width
            if level > 0:
                self.up.append(_Upsample())
        self.out_norm = nn.GroupNorm(_groups(c), c)
        self.out = SpatialConv(c, 3)
        nn.init.zeros_(self.out.conv.weight)
        nn.init.zeros_(self.out.conv.bias)

    def noise_embedding(self, c_noise: torch.Tensor) -> torch.Tensor:
        """Sinusoidal features of EDM's ``c_noise = ln(sigma) / 4`` -> ``[B, emb]``."""
        f = torch.exp(-math.log(10000.0) * torch.arange(self.freqs, device=c_noise.device) / self.freqs)
        # c_noise spans about [-1.6, 1.1]; x250 stretches it over the range of diffusion-step indices
        # that the sinusoidal table resolves.
        angle = c_noise.float()[:, None] * f[None] * 250.0
        return self.noise_mlp(torch.cat([angle.cos(), angle.sin()], dim=1))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        emb = self.noise_embedding(c_noise).to(x.dtype)
        h = self.stem(torch.cat([x, cond], dim=1))
        hs = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
            hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for layer in self.up:
            h = layer(torch.cat([h, hs.pop()], dim=1), emb) if isinstance(layer, ResBlock) else layer(h)
        return self.out(F.silu(self.out_norm(h)))


def to_unit(frames: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, T, H, W, 3]`` -> float ``[B, 3, T, H, W]`` in [-1, 1]."""
    return frames.permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float ``[B, 3, T, H, W]`` in [-1, 1] -> uint8 ``[B, T, H, W, 3]``."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1)


class Detokenizer(nn.Module):
    """EDM denoiser around :class:`VideoUNet`, with conditioning, sampling and inversion.

    Args:
        cfg: see :class:`DetokenizerConfig`.
    """

    def __init__(self, cfg: DetokenizerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.unet = VideoUNet(cfg)

    def condition(self, keyframe: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        """uint8 keyframe ``[B, S, S, 3]`` and motion ``[B, 2, T, h, w]`` (tokenizer units) -> ``[B, 6, T, S, S]``.

        The keyframe is repeated over frames (warped along the motion when ``base="warp"``); the motion is resized bicubically to the frame size and
        divided by 10 (official ``reconstruct_from_token``); the last channel is the frame position in [0, 1].
        """
        cfg = self.cfg
        b, t, s = keyframe.shape[0], cfg.num_frames, cfg.size
        if tuple(keyframe.shape[1:]) != (s, s, 3) or motion.ndim != 5 or motion.shape[:3] != (b, 2, t):
            raise ValueError(
                f"need keyframe [B, {s}, {s}, 3] and motion [B, 2, {t}, h, w], "
                f"got {tuple(keyframe.shape)} and {tuple(motion.shape)}"
            )
        key = to_unit(keyframe[:, None]).expand(-1, -1, t, -1, -1)
        if cfg.base == "warp":
            key = warp_keyframe(key[:, :, 0], motion)
        m = motion.float().transpose(1, 2).reshape(b * t, 2, *motion.shape[-2:])
        m = F.interpolate(m, size=(s, s), mode="bicubic", align_corners=False) / MOTION_RESCALE
        m = m.reshape(b, t, 2, s, s).transpose(1, 2)
        pos = torch.linspace(0, 1, t, device=key.device).view(1, 1, t, 1, 1).expand(b, 1, t, s, s)
        return torch.cat([key, m.to(key), pos], dim=1)

    def base(self, cond: torch.Tensor) -> torch.Tensor | None:
        """The clip the U-Net predicts against, ``[B, 3, T, S, S]`` (the condition's keyframe channels), or
        None for ``base="none"``."""
        return None if self.cfg.base == "none" else cond[:, :3]

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """EDM preconditioned denoiser ``D(x; sigma)``: x ``[B, 3, T, H, W]``, sigma ``[B]``; with a base
        ``b``, the preconditioning acts on the residual ``x - b`` and ``b`` is added back."""
        sd = self.cfg.sigma_data
        s = sigma.float().view(-1, 1, 1, 1, 1)
        c_skip = sd**2 / (s**2 + sd**2)
        c_out = s * sd / (s**2 + sd**2).sqrt()
        c_in = 1 / (s**2 + sd**2).sqrt()
        base = self.base(cond)
        r = x if base is None else x - base.to(x.dtype)
        out = self.unet((c_in * r).to(x.dtype), (sigma.float().log() / 4), cond)
        d = c_skip * r.float() + c_out * out.float()
        return d if base is None else base.float() + d

    def schedule(self, steps: int | None = None, device: torch.device | None = None) -> torch.Tensor:
        """EDM sigmas ``sigma_max -> sigma_min`` (``rho`` spacing) followed by 0: ``[steps + 1]``."""
        cfg, n = self.cfg, steps or self.cfg.steps
        i = torch.arange(n, dtype=torch.float64, device=device)
        lo, hi = cfg.sigma_min ** (1 / cfg.rho), cfg.sigma_max ** (1 / cfg.rho)
        sig = (hi + i / max(n - 1, 1) * (lo - hi)) ** cfg.rho
        return torch.cat([sig, sig.new_zeros(1)]).float()

    def _guided(self, x: torch.Tensor, sigma: float, cond: torch.Tensor, guidance: float) -> torch.Tensor:
        s = torch.full((len(x),), sigma, device=x.device)
        d = self.denoise(x, s, cond)
        if guidance != 1.0:  # classifier-free guidance against the motion-free condition
            d_free = self.denoise(x, s, drop_motion(cond))
            d = d_free + guidance * (d - d_free)
        return d

    def _heun(self, x: torch.Tensor, sig: torch.Tensor, cond: torch.Tensor, guidance: float) -> torch.Tensor:
        """Integrate the probability-flow ODE ``dx/dsigma = (x - D(x; sigma)) / sigma`` along ``sig`` with
        Heun's method (EDM Algorithm 1, deterministic); the step to sigma = 0 is plain Euler."""
        for i in range(len(sig) - 1):
            d = (x - self._guided(x, float(sig[i]), cond, guidance)) / sig[i]
            x_next = x + (sig[i + 1] - sig[i]) * d
            if sig[i + 1] > 0:
                d2 = (x_next - self._guided(x_next, float(sig[i + 1]), cond, guidance)) / sig[i + 1]
                x_next = x + (sig[i + 1] - sig[i]) * 0.5 * (d + d2)
            x = x_next
        return x

    @torch.no_grad()
    def sample(
        self,
        keyframe: torch.Tensor,
        motion: torch.Tensor,
        noise: torch.Tensor | None = None,
        steps: int | None = None,
        guidance: float = 1.0,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """Generate uint8 frames ``[B, T, S, S, 3]`` with EDM's deterministic Heun sampler.

        noise: the starting point at ``sigma_max`` (e.g. from :meth:`invert`); default the base (zero for
        ``base="none"``) plus Gaussian noise of std ``temperature * sigma_max``. A temperature below 1
        trades diversity for fidelity; at 0 the ODE starts from the base itself, a deterministic decode
        that the untrained residual model leaves at the base.
        """
        cond = self.condition(keyframe, motion)
        sig = self.schedule(steps, cond.device)
        b, _, t, s, _ = cond.shape
        if noise is None:
            noise = (
                torch.randn((b, 3, t, s, s), generator=generator, device=cond.device) * sig[0] * temperature
            )
            base = self.base(cond)
            if base is not None:
                noise = noise + base
        return to_uint8(self._heun(noise.float(), sig, cond, guidance))

    @torch.no_grad()
    def invert(
        self, frame: torch.Tensor, keyframe: torch.Tensor, motion: torch.Tensor, steps: int | None = None
    ) -> torch.Tensor:
        """The ``sigma_max`` noise from which the sampler regenerates ``frame`` (uint8 ``[B, S, S, 3]``)
        at every position: the same ODE integrated backwards (``sigma_min -> sigma_max``), the EDM analogue
        of the DDIM inversion Video-LaVIT uses to continue a long video from a clip's last frame.
        Returns ``[B, 3, T, S, S]``."""
        cond = self.condition(keyframe, motion)
        sig = self.schedule(steps, cond.device)[:-1].flip(0)  # sigma_min ... sigma_max
        x = to_unit(frame[:, None]).expand(-1, -1, self.cfg.num_frames, -1, -1).contiguous()
        return self._heun(x, sig, cond, 1.0)
