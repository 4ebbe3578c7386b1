"""The official VideoMAE and MVD training steps, re-implemented for timing only.

The official model classes cannot be imported here (they need timm; no network), so this file rebuilds
what their step executes, from reading the sources, to time them next to vidfm's on the same GPU:

- VideoMAE ``modeling_pretrain.py`` / ``modeling_finetune.py`` (MCG-NJU/VideoMAE): ``Attention`` with a
  bias-free qkv linear plus ``cat(q_bias, zeros, v_bias)``, **naive attention** (``q * scale @ kᵀ``,
  softmax, ``@ v``), pre-norm ``Block``; the encoder drops masked tokens with a boolean index
  (``x[~mask].reshape(B, -1, C)``); the decoder appends mask tokens after the visible ones and predicts
  the last ``N_mask``; the target is built per step under ``no_grad`` (un-normalise, patchify, per-patch
  mean/std with the unbiased variance), loss ``nn.MSELoss``.
- VideoMAE/MVD ``engine_for_pretraining.py`` + ``utils.NativeScalerWithGradNormCount``: the forward under
  ``torch.cuda.amp.autocast()`` (fp16), ``GradScaler`` scaling the loss, ``unscale_``, the gradient norm
  as a norm of per-parameter norms, ``scaler.step``/``update``, ``loss.item()`` every step, then
  ``torch.cuda.synchronize()``; AdamW from ``torch.optim`` (not fused).
- MVD ``modeling_student.py`` (ruiwang2021/mvd): the VideoMAE encoder with 3-D sincos positions and two
  feature decoders (``down_img``/``down_vid`` linear, mask token, 3-D sincos positions, depth 2, as wide as
  the encoder); the teachers run every step under ``no_grad`` inside the same fp16 autocast: an image MAE
  ViT (class token, ``modeling_teacher.py``) on ``frames[::2]`` as a batch of images, and a VideoMAE ViT
  on all tokens (``modeling_video_teacher.py``), both returning the last block output without the final
  norm; SmoothL1 on the masked positions of each.

What is not reproduced: weight loading, data loading, logging, the lr/wd schedules (constant here). The
numerics (sincos tables, init) do not matter for timing; layer shapes, kernels and precision do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vidfm.layers.pos_embed import sincos_1d, sincos_3d

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class Attention(nn.Module):
    """Naive multi-head attention: the full ``[B, h, N, N]`` score matrix is materialised and kept."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias, self.v_bias = nn.Parameter(torch.zeros(dim)), nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias, requires_grad=False), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)  # [B,h,N,N]
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, -1))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Encoder(nn.Module):
    """Tubelet embedding + fixed positions + blocks; masked tokens removed by boolean indexing.

    Args: width, depth, heads; img, patch, frames, tubelet: the clip; pos: ``"1d"`` (VideoMAE) or ``"3d"``
    (MVD); final_norm: VideoMAE's encoder norm (the teachers stop before it).
    """

    def __init__(
        self, width: int, depth: int, heads: int, img: int, patch: int, frames: int, tubelet: int = 2,
        pos: str = "1d", final_norm: bool = True,
    ) -> None:  # fmt: skip
        super().__init__()
        self.proj = nn.Conv3d(3, width, (tubelet, patch, patch), (tubelet, patch, patch))
        grid = (frames // tubelet, img // patch, img // patch)
        table = sincos_1d(grid[0] * grid[1] * grid[2], width) if pos == "1d" else sincos_3d(grid, width)
        self.register_buffer("pos_embed", table[None], persistent=False)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=1e-6) if final_norm else nn.Identity()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.proj(x).flatten(2).transpose(1, 2)
        x = x + self.pos_embed.type_as(x).clone().detach()
        if mask is not None:
            b, _, c = x.shape
            x = x[~mask].reshape(b, -1, c)  # ~mask: visible
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


class Decoder(nn.Module):
    """Linear in (``encoder_to_decoder``/``down_*``), mask token, positions, blocks, head on the masked."""

    def __init__(
        self, in_dim: int, width: int, depth: int, heads: int, out_dim: int, pos: torch.Tensor, bias: bool
    ) -> None:
        super().__init__()
        self.down = nn.Linear(in_dim, width, bias=bias)  # VideoMAE: no bias; MVD: bias
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.register_buffer("pos_embed", pos[None], persistent=False)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.norm, self.head = nn.LayerNorm(width, eps=1e-6), nn.Linear(width, out_dim)

    def forward(self, x_vis: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x_vis = self.down(x_vis)
        b, _, c = x_vis.shape
        pos = self.pos_embed.expand(b, -1, -1).type_as(x_vis).clone().detach()
        pos_vis, pos_mask = pos[~mask].reshape(b, -1, c), pos[mask].reshape(b, -1, c)
        x = torch.cat([x_vis + pos_vis, self.mask_token + pos_mask], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x[:, -pos_mask.shape[1] :]))


class VideoMAE(nn.Module):
    """``PretrainVisionTransformer``: encoder + pixel decoder (``decoder_num_classes = 3·t·p²``)."""

    def __init__(
        self,
        width: int,
        depth: int,
        heads: int,
        dec_width: int,
        dec_depth: int,
        dec_heads: int,
        img: int,
        patch: int,
        frames: int,
    ) -> None:
        super().__init__()
        self.patch = patch
        self.encoder = Encoder(width, depth, heads, img, patch, frames)
        n = (frames // 2) * (img // patch) ** 2
        self.decoder = Decoder(
            width, dec_width, dec_depth, dec_heads, 3 * 2 * patch**2, sincos_1d(n, dec_width), False
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x, mask), mask)

    def loss(self, videos: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """engine_for_pretraining: normalised-pixel target under no_grad, MSE on the masked tokens."""
        with torch.no_grad():
            mean = torch.as_tensor(IMAGENET_MEAN, device=videos.device)[None, :, None, None, None]
            std = torch.as_tensor(IMAGENET_STD, device=videos.device)[None, :, None, None, None]
            p = self.patch
            sq = rearrange(
                videos * std + mean, "b c (t p0) (h p1) (w p2) -> b (t h w) (p0 p1 p2) c", p0=2, p1=p, p2=p
            )
            norm = (sq - sq.mean(dim=-2, keepdim=True)) / (
                sq.var(dim=-2, unbiased=True, keepdim=True).sqrt() + 1e-6
            )
            patches = rearrange(norm, "b n p c -> b n (p c)")
            labels = patches[mask].reshape(videos.shape[0], -1, patches.shape[-1])
        return F.mse_loss(self(videos, mask), labels)


class MVDStudent(nn.Module):
    """``PretrainMaskedVideoStudent``: VideoMAE encoder (3-D sincos) + image and video feature decoders."""

    def __init__(
        self,
        width: int,
        depth: int,
        heads: int,
        dec_depth: int,
        img: int,
        patch: int,
        frames: int,
        img_dim: int,
        vid_dim: int,
    ) -> None:
        super().__init__()
        self.encoder = Encoder(width, depth, heads, img, patch, frames, pos="3d")
        pos = sincos_3d((frames // 2, img // patch, img // patch), width)
        self.decoder_img = Decoder(width, width, dec_depth, heads, img_dim, pos, True)
        self.decoder_vid = Decoder(width, width, dec_depth, heads, vid_dim, pos, True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.encoder(x, mask)
        return self.decoder_img(x, mask), self.decoder_vid(x, mask)


class ImageTeacher(nn.Module):
    """MAE image ViT (``modeling_teacher.py``): 2-D patches, class token, tokens after the last block."""

    def __init__(self, width: int, depth: int, heads: int, img: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, width, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        n = (img // patch) ** 2
        self.register_buffer("pos_embed", sincos_1d(n + 1, width)[None], persistent=False)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x).flatten(2).transpose(1, 2) + self.pos_embed[:, 1:]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return x[:, 1:]


def mvd_loss(
    student: MVDStudent,
    image_teacher: ImageTeacher,
    video_teacher: Encoder,
    videos: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """MVD engine_for_pretraining: student, then both teachers under no_grad, SmoothL1 at the masked tokens."""
    out_img, out_vid = student(videos, mask)
    t = videos.shape[2]
    with torch.no_grad():
        feats = image_teacher(rearrange(videos[:, :, ::2], "b c t h w -> (b t) c h w"))
        feats = rearrange(feats, "(b t) l c -> b (t l) c", t=t // 2)
        vid_feats = video_teacher(videos)
    b = videos.shape[0]
    loss_img = F.smooth_l1_loss(out_img, feats[mask].reshape(b, -1, feats.shape[-1]))
    loss_vid = F.smooth_l1_loss(out_vid, vid_feats[mask].reshape(b, -1, vid_feats.shape[-1]))
    loss_img.item(), loss_vid.item()  # the official loop logs both every step (two host syncs)
    return loss_img + loss_vid


class NativeScalerStep:
    """One optimizer update as ``NativeScalerWithGradNormCount`` does it: GradScaler (fp16) scaling,
    ``unscale_``, the gradient norm as the norm of per-parameter norms, ``step``, ``update``; the loop's
    ``loss.item()`` and ``torch.cuda.synchronize()`` after it. On CPU the scaler and autocast are off."""

    def __init__(self, model: nn.Module, lr: float = 1.5e-4) -> None:
        """Args: model: the trained module (frozen teachers excluded); lr: a constant learning rate."""
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.cuda = self.params[0].is_cuda
        self.optimizer = torch.optim.AdamW(self.params, lr=lr, betas=(0.9, 0.95), weight_decay=0.05)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.cuda)

    def __call__(self, loss_fn) -> float:  # noqa: ANN001 - a zero-argument callable returning the loss
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.cuda):
            loss = loss_fn()
        value = loss.item()
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        grads = [p.grad for p in self.params if p.grad is not None]
        norm = torch.norm(torch.stack([torch.norm(g.detach(), 2.0) for g in grads]), 2.0)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad()
        norm.item()  # MetricLogger.update(grad_norm=...) reads it every step
        if self.cuda:
            torch.cuda.synchronize()
        return value
