"""CLIP-style image-text training of a CLIP tower on video frames and their captions: a teacher from the
user's own data, for UMT where no CLIP weights can be downloaded.

Radford et al., "CLIP", 2021: an image tower and a text tower trained with a symmetric contrastive loss; the
loss here is vidfm's VTC (:func:`vidfm.objectives.contrastive.vtc_loss`, UMT's form with a learnable,
clamped temperature). Each clip gives ``frames`` random frames, each paired with the clip's caption (all of
them positives of that caption). The text tower is the pre-trained BERT/MiniLM, frozen by default (LiT,
Zhai et al. 2022: a locked pre-trained text tower with a trained image tower learns quickly from little data)
with a trained projection. The tower keeps CLIP's layout (:class:`~vidfm.teachers.clip.CLIPVisionTower`), so
:func:`vidfm.teachers.clip.load_clip_teacher` reads the run like any CLIP.
"""

from __future__ import annotations

import zlib

import torch
import torch.nn.functional as F
from torch import nn

from vidfm.data.transforms import AugmentConfig, VideoAugment
from vidfm.layers.frozen import FrozenModule
from vidfm.models.clip_vision import CLIPVisionConfig, CLIPVisionTower
from vidfm.models.heads import ContrastiveHead
from vidfm.models.text import TextEncoderConfig
from vidfm.objectives.contrastive import vtc_loss


def captions_of(batch: dict) -> list[str]:
    """The batch's captions; a clear error when the manifest has none."""
    captions = batch.get("caption")
    if captions is None or any(c is None for c in captions):
        raise ValueError(
            "this recipe needs a caption for every clip: give a manifest with a 'caption' column"
        )
    return list(captions)


_CACHE_SIZE = 200_000  # captions whose frozen text states are kept (a few hundred MB at width 384)


def video_ids(batch: dict, device: torch.device) -> torch.Tensor:
    """[B] int64 id per clip from its file path (CRC-32): equal for the captions of one video, equal on every
    rank, so pairs gathered across ranks keep their positives (batch indices would collide)."""
    return torch.tensor([zlib.crc32(p.encode()) for p in batch["path"]], dtype=torch.long, device=device)


class CLIPImageTask(nn.Module):
    """CLIP tower + (frozen) text encoder + contrastive head (text projection and temperature; the tower
    projects its own class token).

    Args:
        vision: the tower config (``embed_dim`` must be set: it is the shared embedding width).
        augment: crop/normalise config (CLIP's mean/std).
        text: the text encoder settings.
        frames: frames drawn per clip per step.
        temperature: initial τ (0.07, as CLIP and UMT).
    """

    def __init__(
        self,
        vision: CLIPVisionConfig,
        augment: AugmentConfig,
        text: TextEncoderConfig,
        frames: int = 1,
        temperature: float = 0.07,
    ) -> None:
        super().__init__()
        if vision.embed_dim is None:
            raise ValueError("vision.embed_dim must be set: it is the image-text embedding width")
        if frames < 1:
            raise ValueError(f"frames must be >= 1, got {frames}")
        self.visual = CLIPVisionTower(vision)
        self.augment = VideoAugment(augment)
        self.text_encoder, self.tokenizer = text.build()
        self.contrastive = ContrastiveHead(self.text_encoder.width, vision.embed_dim, None, temperature)
        self.frames = frames
        self.text_frozen = not text.trainable
        self._text_cache: dict[str, torch.Tensor] = {}  # caption -> pooled text state, when frozen
        if self.text_frozen:  # frozen like a teacher: not optimised, not saved, eval mode
            self.text_encoder = FrozenModule(self.text_encoder)  # neither optimised nor saved

    def no_weight_decay(self) -> set[str]:
        return {f"visual.{n}" for n in self.visual.no_weight_decay()}

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised frames [N,C,1,H,W] -> unit embeddings [N,E] (projected class token after ln_post)."""
        return F.normalize(self.visual.project(self.visual(images).cls), dim=-1)

    def embed_video(self, video: torch.Tensor) -> torch.Tensor:
        """Normalised video [B,C,T,H,W] -> [B,E]: the mean of its frames' unit embeddings."""
        b, _, t = video.shape[:3]
        return self.embed_images(video.transpose(1, 2).flatten(0, 1).unsqueeze(2)).view(b, t, -1).mean(1)

    def embed_text(self, captions: list[str], device: torch.device) -> torch.Tensor:
        """Captions -> projected text embeddings [B,E] (not normalised)."""
        if self.text_frozen:  # a frozen encoder gives each caption one embedding: compute it once
            missing = sorted({c for c in captions if c not in self._text_cache})
            if missing:
                with torch.no_grad():
                    batch = self.tokenizer(missing, device=device)
                    pooled = self.text_encoder(batch["ids"], batch["mask"]).pooled
                if len(self._text_cache) + len(missing) <= _CACHE_SIZE:
                    self._text_cache.update(zip(missing, pooled, strict=True))
                else:
                    return self.contrastive.text(self._pooled(captions, device))
            pooled = torch.stack([self._text_cache[c].to(device) for c in captions])
            return self.contrastive.text(pooled)
        return self.contrastive.text(self._pooled(captions, device))

    def _pooled(self, captions: list[str], device: torch.device) -> torch.Tensor:
        batch = self.tokenizer(captions, device=device)
        return self.text_encoder(batch["ids"], batch["mask"]).pooled

    def forward(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        self.contrastive.clamp_()
        captions = captions_of(batch)
        clips = batch["video"]  # uint8 [B,T,H,W,C]
        b, t = clips.shape[:2]
        # Frames are drawn before augmenting, so only the frames used are cropped and resized.
        pick = torch.randint(t, (b, self.frames), generator=generator, device=generator.device).to(
            clips.device
        )
        frames = clips[torch.arange(b, device=clips.device)[:, None], pick]  # [B,F,H,W,C]
        video = self.augment.normalize(self.augment(frames, generator))  # [B,C,F,H,W], one crop per clip
        image_emb = self.embed_images(video.transpose(1, 2).flatten(0, 1).unsqueeze(2))  # [B·F,E]
        text_emb = self.embed_text(captions, video.device).repeat_interleave(self.frames, dim=0)  # [B·F,E]
        idx = video_ids(batch, video.device).repeat_interleave(self.frames)
        temp = self.contrastive.temp
        return {"loss": vtc_loss(image_emb, text_emb, temp, idx), "temp": temp.detach()}
