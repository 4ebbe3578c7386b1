"""Image MAE pre-training on frames of the user's videos: MVD's stage-1 image teacher.

He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022; official ``models_mae.py``. Each
clip of the batch gives T frames, and every frame is one image: random mask 0.75 per image, the encoder
(an image ViT with a class token) on the visible patches, a shallow decoder predicting the per-patch
normalised pixels of the masked patches, MSE on masked patches only (``forward_loss`` with
``norm_pix_loss=True``).

Differences from official MAE, kept for one decoder in vidfm: the decoder (:class:`MaskedDecoder`) takes the
patch tokens without the class token, and its input projection has no bias.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from vidfm.data.transforms import AugmentConfig, VideoAugment
from vidfm.masking import MaskConfig, make_mask
from vidfm.models.decoder import DecoderConfig, MaskedDecoder, decoder_dims
from vidfm.models.encoder import EncoderConfig, VideoEncoder, gather_tokens
from vidfm.objectives.pixel import masked_mse, patchify


def mae_pixel_target(
    images: torch.Tensor,
    patch: int,
    normalize: bool = True,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Images [B,C,1,H,W] in [0, 1] -> MAE's target per patch [B, N, p·p·C].

    As official ``models_mae.py`` (``patchify`` order (p, q, c); ``forward_loss``): the un-normalised pixels
    (the crop before the student's normalisation), then (``normalize``) standardise each patch over all its p·p·C values with its own mean
    and unbiased variance, ``(x - mean) / (var + 1e-6) ** 0.5``. (VideoMAE's target, in
    :func:`vidfm.objectives.pixel.pixel_target`, standardises each channel separately instead.)
    """
    patches = patchify(images.float(), 1, patch).flatten(2)  # [B,N,p·p·C], (p p c) as MAE
    if normalize:
        mu, var = patches.mean(dim=-1, keepdim=True), patches.var(dim=-1, keepdim=True)
        patches = (patches - mu) / (var + eps) ** 0.5
    return patches


class MAEImageTask(nn.Module):
    """Image encoder + pixel decoder over the frames of each clip.

    Args:
        encoder: an image encoder config (``tubelet=1``, ``num_frames=1``).
        decoder: decoder config (MAE: 8 blocks of width 512).
        mask: mask config (MAE: random, 0.75).
        augment: crop/normalise config; its size must match ``encoder.img_size``.
        normalize_target: per-patch normalised pixels (MAE's ``norm_pix_loss``) or raw pixels.
    """

    def __init__(
        self,
        encoder: EncoderConfig,
        decoder: DecoderConfig,
        mask: MaskConfig,
        augment: AugmentConfig,
        normalize_target: bool = True,
    ) -> None:
        super().__init__()
        if encoder.tubelet != 1 or encoder.num_frames != 1:
            raise ValueError(
                f"mae_image trains an image encoder: set encoder.tubelet=1 and encoder.num_frames=1 "
                f"(got {encoder.tubelet} and {encoder.num_frames})"
            )
        self.encoder = VideoEncoder(encoder)
        self.augment = VideoAugment(augment)
        self.mask_cfg = mask
        self.normalize_target = normalize_target
        width, heads = decoder_dims(decoder, encoder.size)
        out_dim = encoder.in_chans * self.encoder.patch**2
        # MAE's decoder table is 2-D sincos (``decoder_pos_embed``, ``models_mae.py``): with T=1 the 3-D
        # table is the 2-D one plus constant time channels.
        decoder = replace(decoder, pos_embed="sincos_3d")
        self.decoder = MaskedDecoder(self.encoder.width, decoder, width, heads, out_dim, self.encoder.grid)

    def forward(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        clip = self.augment(batch["video"], generator, view=batch.get("view"))  # [B,C,T,H,W] in [0, 1]
        images = clip.transpose(1, 2).flatten(0, 1).unsqueeze(2)  # [B·T,C,1,H,W]: every frame an image
        mask = make_mask(self.mask_cfg, images.shape[0], self.encoder.grid, generator, clip.device)
        out = self.encoder(self.augment.normalize(images), visible=mask.visible)
        pred = self.decoder(out.tokens, mask.visible, mask.masked)  # [B·T,Nm,p·p·C]
        target = mae_pixel_target(images, self.encoder.patch, self.normalize_target)
        return {"loss": masked_mse(pred, gather_tokens(target, mask.masked))}
