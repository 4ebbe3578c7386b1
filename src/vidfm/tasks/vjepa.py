"""V-JEPA pre-training step: predict an EMA target encoder's tokens of masked 3-D blocks from the visible rest.

Bardes et al., "Revisiting Feature Prediction for Learning Visual Representations from Video" (V-JEPA, 2024);
official ``app/vjepa/train.py``. One step:

    video ──► target encoder (EMA, no grad, full clip) ──► layer norm ──► tokens at the masked positions
      └─► for each mask kind (short-range, long-range multi-block):
            context encoder on the visible tokens ──► predictor (mask tokens + positions) ──► L1

The target encoder is the module named ``encoder``: a run's encoder (what ``vidfm eval``/``probe`` load) is
the one V-JEPA evaluates (official eval configs read ``checkpoint_key: target_encoder``). The trainer, told by
``TrainConfig.ema``, moves it towards ``context_encoder`` after every optimizer update; this forward never
changes it.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from vidfm.data.transforms import AugmentConfig, VideoAugment
from vidfm.layers.patch_embed import gather_tokens
from vidfm.masking import BlockMaskConfig, multiblock_mask
from vidfm.models.decoder import DecoderConfig, MaskedDecoder, decoder_dims
from vidfm.models.encoder import EncoderConfig, VideoEncoder
from vidfm.objectives.latent import latent_l1, latent_target


class VJEPATask(nn.Module):
    """Context encoder + EMA target encoder + predictor.

    Args:
        encoder: config of both encoders (the target starts as an exact copy of the context encoder).
        predictor: the narrow transformer (a :class:`MaskedDecoder` predicting encoder-width tokens); it needs
            ``mask_tokens >= len(masks)``.
        masks: one multi-block mask per kind; every kind is a separate context/target pair of the same clip
            and the loss is their mean (V-JEPA: short range, long range).
        augment: crop/normalise config; the clip size must match ``encoder.img_size``.
        loss_exp: p of the |·|^p / p loss (V-JEPA: 1).
    """

    def __init__(
        self,
        encoder: EncoderConfig,
        predictor: DecoderConfig,
        masks: list[BlockMaskConfig],
        augment: AugmentConfig,
        loss_exp: float = 1.0,
    ) -> None:
        super().__init__()
        if not masks:
            raise ValueError("V-JEPA needs at least one mask kind")
        if predictor.mask_tokens < len(masks):
            raise ValueError(f"predictor.mask_tokens={predictor.mask_tokens} < {len(masks)} mask kinds")
        self.context_encoder = VideoEncoder(encoder)
        # The EMA target: an exact copy at step 0 (official ``copy.deepcopy(encoder)``), never optimised.
        self.encoder = copy.deepcopy(self.context_encoder).requires_grad_(False)
        self.augment = VideoAugment(augment)
        self.masks = list(masks)
        self.loss_exp = loss_exp
        width, heads = decoder_dims(predictor, encoder.size)
        dim = self.context_encoder.width
        self.predictor = MaskedDecoder(dim, predictor, width, heads, dim, self.context_encoder.grid)

    def no_weight_decay(self) -> set[str]:
        return {f"context_encoder.{n}" for n in self.context_encoder.no_weight_decay()}

    @torch.no_grad()
    def targets(self, video: torch.Tensor) -> torch.Tensor:
        """[B,C,T,H,W] normalised clip -> [B,N,D] layer-normalised target tokens of the full clip (float32)."""
        return latent_target(self.encoder(video).tokens)

    def forward(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        video = self.augment.normalize(self.augment(batch["video"], generator, view=batch.get("view")))
        b = video.shape[0]
        target = self.targets(video)  # [B,N,D], no graph
        parts = {}
        for k, cfg in enumerate(self.masks):
            mask = multiblock_mask(cfg, b, self.context_encoder.grid, generator, video.device)
            context = self.context_encoder(video, visible=mask.visible).tokens  # [B,Nv,D]
            pred = self.predictor(context, mask.visible, mask.masked, mask_index=k)  # [B,Nm,D]
            parts[f"loss_mask{k}"] = latent_l1(pred, gather_tokens(target, mask.masked), self.loss_exp)
        # The mean over mask kinds, as official ``loss_fn`` (sum over pairs / len(masks_pred)).
        return {"loss": torch.stack(list(parts.values())).mean(), **parts}
