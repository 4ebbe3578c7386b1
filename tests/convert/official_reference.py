"""Small reference forwards written from the official code's semantics, independent of vidfm's modules.

They exist so converted checkpoints are compared by outputs, not only by keys, where no independent library
implementation is available (MVD students and their decoders, UMT students and their alignment heads):

- ``block``: ``modeling_finetune.py`` ``Block`` of VideoMAE/MVD/UMT (pre-norm; qkv weight without bias plus
  ``cat(q_bias, zeros, v_bias)``, or a fused ``qkv.bias``; softmax(q·scale @ kᵀ) @ v; exact GELU MLP;
  LayerScale ``gamma_1/2`` when present).
- ``mvd_sincos_3d``: MVD ``get_3d_sincos_pos_embed`` ([t | w | h] channels, numpy float64 then float32).
- ``sinusoid_1d``: ``get_sinusoid_encoding_table``.
- ``perturbed``: non-trivial values for every tensor of a state dict.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

State = dict[str, torch.Tensor]


def perturbed(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> State:
    """Random tensors: weights ~0.1·N(0,1), norm weights 1 + 0.2·N(0,1), biases (q/v too) 0.3·N(0,1)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in shapes.items():
        x = torch.randn(shape, generator=g)
        if (".norm" in k or k.startswith("norm") or "_norm" in k or ".ln_" in k) and k.endswith("weight"):
            out[k] = 1 + 0.2 * x
        elif k.endswith(("bias", "q_bias", "v_bias")):
            out[k] = 0.3 * x
        else:
            out[k] = 0.1 * x
    return out


def block_shapes(prefix: str, dim: int, mlp: int, qkv_bias: str = "qv") -> dict[str, tuple[int, ...]]:
    s = {
        f"{prefix}norm1.weight": (dim,),
        f"{prefix}norm1.bias": (dim,),
        f"{prefix}attn.qkv.weight": (3 * dim, dim),
        f"{prefix}attn.proj.weight": (dim, dim),
        f"{prefix}attn.proj.bias": (dim,),
        f"{prefix}norm2.weight": (dim,),
        f"{prefix}norm2.bias": (dim,),
        f"{prefix}mlp.fc1.weight": (mlp, dim),
        f"{prefix}mlp.fc1.bias": (mlp,),
        f"{prefix}mlp.fc2.weight": (dim, mlp),
        f"{prefix}mlp.fc2.bias": (dim,),
    }
    if qkv_bias == "qv":
        s |= {f"{prefix}attn.q_bias": (dim,), f"{prefix}attn.v_bias": (dim,)}
    elif qkv_bias == "fused":
        s |= {f"{prefix}attn.qkv.bias": (3 * dim,)}
    return s


def layer_norm(x: torch.Tensor, sd: State, prefix: str, eps: float) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], sd[f"{prefix}weight"], sd[f"{prefix}bias"], eps)


def block(x: torch.Tensor, sd: State, prefix: str, heads: int, eps: float = 1e-6) -> torch.Tensor:
    """One official pre-norm block on x [B,N,D]."""
    b, n, d = x.shape
    h = layer_norm(x, sd, f"{prefix}norm1.", eps)
    if f"{prefix}attn.q_bias" in sd:
        q_b = sd[f"{prefix}attn.q_bias"]
        bias = torch.cat([q_b, torch.zeros_like(q_b), sd[f"{prefix}attn.v_bias"]])
    else:
        bias = sd.get(f"{prefix}attn.qkv.bias")
    qkv = F.linear(h, sd[f"{prefix}attn.qkv.weight"], bias).reshape(b, n, 3, heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn = ((q * (d // heads) ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
    a = F.linear(
        (attn @ v).transpose(1, 2).reshape(b, n, d),
        sd[f"{prefix}attn.proj.weight"],
        sd[f"{prefix}attn.proj.bias"],
    )
    x = x + a * sd.get(f"{prefix}gamma_1", 1.0)
    h = layer_norm(x, sd, f"{prefix}norm2.", eps)
    m = F.linear(
        F.gelu(F.linear(h, sd[f"{prefix}mlp.fc1.weight"], sd[f"{prefix}mlp.fc1.bias"])),
        sd[f"{prefix}mlp.fc2.weight"],
        sd[f"{prefix}mlp.fc2.bias"],
    )
    return x + m * sd.get(f"{prefix}gamma_2", 1.0)


def patch_tokens(video: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Conv3d tubelets, stride = kernel: [B,C,T,H,W] -> [B, N, D] in (t, h, w) order."""
    return F.conv3d(video, weight, bias, stride=weight.shape[2:]).flatten(2).transpose(1, 2)


def _sincos_1d_np(dim: int, pos: np.ndarray) -> np.ndarray:
    omega = np.arange(dim // 2, dtype=np.float64) / (dim / 2.0)
    out = np.einsum("m,d->md", pos.reshape(-1), 1.0 / 10000**omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def mvd_sincos_3d(dim: int, side: int, t: int) -> torch.Tensor:
    """[1, t·side², dim]: temporal quarter first, then the 2-D table built from meshgrid(w, h)."""
    grid = np.stack(np.meshgrid(np.arange(side, dtype=np.float32), np.arange(side, dtype=np.float32)), 0)
    spatial = np.concatenate([_sincos_1d_np(dim // 8 * 3, grid[0]), _sincos_1d_np(dim // 8 * 3, grid[1])], 1)
    temporal = _sincos_1d_np(dim // 4, np.arange(t, dtype=np.float32))
    table = np.concatenate(
        [np.repeat(temporal[:, None], side * side, 1), np.repeat(spatial[None], t, 0)], axis=-1
    ).reshape(-1, dim)
    return torch.tensor(table, dtype=torch.float32)[None]


def sinusoid_1d(n: int, dim: int) -> torch.Tensor:
    """[1, n, dim]: angle pos / 10000^(2⌊j/2⌋/dim), sin on even channels, cos on odd ones."""
    pos = np.arange(n, dtype=np.float64)[:, None]
    angle = pos / np.power(10000, 2 * (np.arange(dim) // 2) / dim)[None]
    angle[:, 0::2], angle[:, 1::2] = np.sin(angle[:, 0::2]), np.cos(angle[:, 1::2])
    return torch.tensor(angle, dtype=torch.float32)[None]


def visible_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x [B,N,D], index [B,K] -> [B,K,D]."""
    return torch.gather(x, 1, index[..., None].expand(-1, -1, x.shape[-1]))
