"""Video-LaVIT detokenizer training step: EDM denoising of a clip given its keyframe and motion.

EDM (Karras et al., NeurIPS 2022, Table 1): ``sigma = exp(P_mean + P_std * n)``, loss weight
``(sigma^2 + sigma_data^2) / (sigma * sigma_data)^2`` on the preconditioned denoiser's squared error.
With a ``motion_run``, the motion condition is the motion VQ-VAE's reconstruction of the true field, what the
detokenizer sees at inference (official ``reconstruct_from_token``); without one, the true field.
"""

from __future__ import annotations

import torch
from torch import nn

from vidfm.lavit.detokenizer import Detokenizer, DetokenizerConfig, drop_motion, to_unit
from vidfm.layers.frozen import FrozenModule


def edm_loss(
    denoised: torch.Tensor, clean: torch.Tensor, sigma: torch.Tensor, sigma_data: float
) -> torch.Tensor:
    """EDM weighted denoising loss; denoised, clean ``[B, ...]``, sigma ``[B]``."""
    weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    err = (denoised.float() - clean.float()).pow(2).flatten(1).mean(1)
    return (weight * err).mean()


def load_motion_vq(run_dir: str) -> nn.Module:
    """The motion VQ-VAE of a ``motion_vq`` run (its latest checkpoint), in eval mode."""
    from vidfm.lavit.motion_vq import MotionVQConfig, MotionVQVAE
    from vidfm.runs import open_run

    run = open_run(run_dir)
    model = MotionVQVAE(run.section("motion", MotionVQConfig))
    run.load(model, "model.")
    return model.eval()


class DetokenizerTask(nn.Module):
    """``batch["frames"] [B, T, S, S, 3]`` uint8 and ``batch["motion"] [B, 2, T, h, w]`` -> EDM loss.

    Args:
        cfg: the detokenizer. motion_run: a motion VQ run whose reconstruction conditions training
            (a :class:`~vidfm.layers.frozen.FrozenModule`: neither optimised nor saved).
    """

    def __init__(self, cfg: DetokenizerConfig, motion_run: str = "") -> None:
        super().__init__()
        self.detokenizer = Detokenizer(cfg)
        self.teacher_motion = FrozenModule(load_motion_vq(motion_run)) if motion_run else None

    def forward(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        cfg = self.detokenizer.cfg
        frames, motion = batch["frames"], batch["motion"].float()
        if frames.shape[1] != cfg.num_frames:
            raise ValueError(f"clips have {frames.shape[1]} frames, the detokenizer {cfg.num_frames}")
        if self.teacher_motion is not None:
            with torch.no_grad():
                motion = self.teacher_motion(motion).recon.float()
        clean = to_unit(frames)  # [B, 3, T, S, S]
        b, dev = clean.shape[0], clean.device
        cond = self.detokenizer.condition(frames[:, 0], motion)
        # Classifier-free guidance: sometimes no motion, so the sampler can extrapolate away from it.
        drop = torch.rand(b, generator=generator, device=dev) < cfg.cond_drop
        cond = drop_motion(cond, drop)
        sigma = (cfg.p_mean + cfg.p_std * torch.randn(b, generator=generator, device=dev)).exp()
        noise = torch.randn(clean.shape, generator=generator, device=dev) * sigma.view(-1, 1, 1, 1, 1)
        denoised = self.detokenizer.denoise(clean + noise, sigma, cond)
        loss = edm_loss(denoised, clean, sigma, cfg.sigma_data)
        return {"loss": loss, "mse": (denoised - clean).pow(2).mean().detach()}
