"""VideoMAE pre-training step: tube-masked clip -> encoder on visible tokens -> decoder -> normalised pixels.

Tong et al., "VideoMAE", NeurIPS 2022; official ``engine_for_pretraining.py`` / ``modeling_pretrain.py``.
"""

from __future__ import annotations

import torch
from torch import nn

from vidfm.data.transforms import AugmentConfig, VideoAugment
from vidfm.masking import Mask, MaskConfig, make_mask
from vidfm.models.decoder import DecoderConfig, MaskedDecoder, decoder_dims
from vidfm.models.encoder import EncoderConfig, VideoEncoder
from vidfm.objectives.pixel import masked_mse, pixel_target


class VideoMAETask(nn.Module):
    """Encoder + pixel decoder + the batch preparation of one VideoMAE step.

    Args:
        encoder: student encoder config.
        decoder: decoder config (depth 4 in VideoMAE).
        mask: mask config (tube, 0.9 in VideoMAE).
        augment: crop/normalise config; the clip size must match ``encoder.img_size``.
        normalize_target: per-patch normalised pixels (VideoMAE default) or raw pixels.
        target_eps: added to each patch's pixel std before dividing (official VideoMAE: 1e-6). A larger
            value (e.g. 0.05 on [0, 1] pixels) keeps near-flat patches, whose normalised target is mostly
            codec noise blown up to unit variance, from dominating the loss (see :func:`pixel_target`).
    """

    def __init__(
        self,
        encoder: EncoderConfig,
        decoder: DecoderConfig,
        mask: MaskConfig,
        augment: AugmentConfig,
        normalize_target: bool = True,
        target_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.encoder = VideoEncoder(encoder)
        self.augment = VideoAugment(augment)
        self.mask_cfg = mask
        self.normalize_target = normalize_target
        self.target_eps = target_eps
        t, p = encoder.tubelet, self.encoder.patch
        width, heads = decoder_dims(decoder, encoder.size)
        out_dim = encoder.in_chans * t * p * p
        self.decoder = MaskedDecoder(self.encoder.width, decoder, width, heads, out_dim, self.encoder.grid)

    def no_weight_decay(self) -> set[str]:
        return {f"encoder.{n}" for n in self.encoder.no_weight_decay()} | {"decoder.mask_token"}

    def reconstruct(self, clip: torch.Tensor, mask: Mask) -> tuple[torch.Tensor, torch.Tensor]:
        """Crop [B,C,T,H,W] in [0, 1] and a mask -> (prediction, target), each [B,Nm,t·p·p·C]; the encoder
        sees the normalised crop, the target is made from the [0, 1] one."""
        out = self.encoder(self.augment.normalize(clip), visible=mask.visible)
        pred = self.decoder(out.tokens, mask.visible, mask.masked)
        target = pixel_target(
            clip,
            self.encoder.cfg.tubelet,
            self.encoder.patch,
            self.normalize_target,
            self.target_eps,
            index=mask.masked,
        )
        return pred, target

    def forward(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        clip = self.augment(batch["video"], generator, view=batch.get("view"))  # [B,C,T,H,W] in [0, 1]
        mask = make_mask(self.mask_cfg, clip.shape[0], self.encoder.grid, generator, clip.device)
        pred, target = self.reconstruct(clip, mask)
        return {"loss": masked_mse(pred, target)}
