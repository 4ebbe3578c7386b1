"""Video-LaVIT tokenizer training steps: the motion VQ-VAE and the keyframe codebook.

The official release withholds training code. The losses follow the VQ-VAE family the official modules
come from: straight-through estimation with a commitment term (van den Oord et al. 2017), an EMA codebook
with ``beta = 1`` and cosine feature reconstruction as BEiT v2's VQ-KD (``beitv2/modeling_vqkd.py``,
``NormEMAVectorQuantizer(beta=1.0, decay=0.99)``), and MSE reconstruction of the motion field.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vidfm.lavit.keyframe import KeyframeTokenizer, KeyframeTokenizerConfig
from vidfm.lavit.motion_vq import MotionVQConfig, MotionVQVAE, Quantized


def vq_losses(quant: Quantized, beta: float, ema: bool) -> dict[str, torch.Tensor]:
    """``commit = beta * |z - sg(code)|^2`` always; ``codebook = |sg(z) - code|^2`` when codes learn by
    gradient (an EMA codebook is updated by the quantizer instead)."""
    out = {"commit": beta * F.mse_loss(quant.z, quant.codes.detach())}
    if not ema:
        out["codebook"] = F.mse_loss(quant.codes, quant.z.detach())
    return out


class MotionVQTask(nn.Module):
    """Motion field ``batch["motion"] [B, 2, T, H, W]`` -> VQ-VAE -> MSE reconstruction + VQ terms.

    Args:
        cfg: the VQ-VAE. beta: commitment weight.
    """

    def __init__(self, cfg: MotionVQConfig, beta: float = 1.0) -> None:
        super().__init__()
        self.model = MotionVQVAE(cfg)
        self.beta = beta

    def forward(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        motion = batch["motion"].float()
        out = self.model(motion, generator)
        recon = F.mse_loss(out.recon.float(), motion)
        parts = vq_losses(out.quant, self.beta, self.model.cfg.quantizer.ema)
        return {
            "loss": recon + sum(parts.values()),
            "recon": recon.detach(),
            **{k: v.detach() for k, v in parts.items()},
            "perplexity": out.quant.perplexity,
            "usage": out.quant.usage,
        }


class KeyframeVQTask(nn.Module):
    """Keyframes ``batch["keyframe"] [B, S, S, 3]`` -> codes -> frozen features (cosine) and pixels (MSE).

    Args:
        cfg: the tokenizer. beta: commitment weight. pixel_weight: weight of the pixel reconstruction.
    """

    def __init__(self, cfg: KeyframeTokenizerConfig, beta: float = 1.0, pixel_weight: float = 1.0) -> None:
        super().__init__()
        self.tokenizer = KeyframeTokenizer(cfg)
        self.beta, self.pixel_weight = beta, pixel_weight

    def forward(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        out = self.tokenizer(batch["keyframe"], generator)
        feature = 1 - F.cosine_similarity(out.pred_features.float(), out.features, dim=-1).mean()
        pixel = F.mse_loss(out.pred_pixels.float(), out.target_pixels)
        parts = vq_losses(out.quant, self.beta, self.tokenizer.cfg.quantizer.ema)
        return {
            "loss": feature + self.pixel_weight * pixel + sum(parts.values()),
            "feature": feature.detach(),
            "pixel": pixel.detach(),
            **{k: v.detach() for k, v in parts.items()},
            "perplexity": out.quant.perplexity,
            "usage": out.quant.usage,
        }
