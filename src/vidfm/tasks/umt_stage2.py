"""Unmasked Teacher, stage 2: video-language pre-training on the semantically masked student.

Official ``multi_modality/models/umt.py`` (``UMT.forward``) and ``models/criterions.py``:

- UTA, as stage 1 (:func:`vidfm.tasks.umt.unmasked_alignment`), on the same masked forward;
- VTC between the mean of the student's visible tokens (``vision_proj``) and the text embedding
  (``text_proj``), learnable temperature clamped to [0.001, 0.5];
- VTM: the cross-modal decoder scores the B pairs and 2B in-batch hard negatives through a two-way head;
- MLM: captions masked BERT-style (probability 0.5) are decoded against the visible video tokens.

``loss = w_uta·UTA + w_vtc·VTC + w_vtm·VTM + w_mlm·MLM``; a part with weight 0 builds no module and never runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vidfm.data.transforms import AugmentConfig, VideoAugment
from vidfm.layers.frozen import FrozenModule
from vidfm.masking import MaskConfig
from vidfm.models.encoder import EncoderConfig, VideoEncoder
from vidfm.models.fusion import CrossModalDecoder
from vidfm.models.heads import ContrastiveHead, MLMHead
from vidfm.models.text import TextEncoderConfig
from vidfm.objectives.contrastive import similarity, vtc_loss
from vidfm.objectives.matching import matching_loss, sample_negatives
from vidfm.objectives.mlm import IGNORE, mask_tokens, mlm_loss
from vidfm.tasks.clip_image import captions_of, video_ids
from vidfm.tasks.umt import alignment_heads, unmasked_alignment
from vidfm.teachers.targets import TargetProvider

PARTS = ("uta", "vtc", "vtm", "mlm")


@dataclass
class LossWeights:
    """Weights of the four losses (all 1 in UMT ``exp/pretraining/b16_5m.py``); 0 disables a part."""

    uta: float = 1.0
    vtc: float = 1.0
    vtm: float = 1.0
    mlm: float = 1.0


@dataclass
class FusionConfig:
    """The cross-modal decoder: depth (UMT: BERT-base's last 3 layers), heads, mlp_ratio."""

    depth: int = 3
    heads: int = 12
    mlp_ratio: float = 4.0


class UMTStage2Task(nn.Module):
    """Stage-1 parts (encoder, alignment heads, teacher) + text encoder, projections, decoder and heads.

    Args:
        encoder, mask, augment, teacher, align_layers, resize: as :class:`~vidfm.tasks.umt.UMTTask`
            (teacher None when ``weights.uta`` is 0).
        text: the text encoder (MiniLM by default) and its tokenizer settings.
        fusion: the cross-modal decoder.
        embed_dim: width of the shared video-text space (512 in UMT).
        temperature: initial τ (0.07).
        weights: the loss weights.
        mlm_prob: MLM masking probability (0.5 in UMT).
        hard_negatives: VTM negatives drawn ∝ softmax(similarity) (UMT) or uniformly.
        pool_norm: a LayerNorm on the mean of the visible tokens before the video projection, as official UMT's
            ``vision_encoder.pool_norm`` (needed to train on from an official checkpoint).
    """

    def __init__(
        self,
        encoder: EncoderConfig,
        mask: MaskConfig,
        augment: AugmentConfig,
        teacher: TargetProvider | None,
        align_layers: int,
        text: TextEncoderConfig,
        fusion: FusionConfig,
        embed_dim: int = 512,
        temperature: float = 0.07,
        weights: LossWeights | None = None,
        mlm_prob: float = 0.5,
        hard_negatives: bool = True,
        resize: bool = False,
        pool_norm: bool = False,
    ) -> None:
        weights = weights or LossWeights()
        if any(getattr(weights, p) < 0 for p in PARTS) or all(getattr(weights, p) == 0 for p in PARTS):
            raise ValueError(f"loss weights must be >= 0 and not all 0, got {weights}")
        super().__init__()
        self.encoder = VideoEncoder(encoder)
        self.augment = VideoAugment(augment)
        self.mask_cfg, self.resize = mask, resize
        self.teacher = teacher if weights.uta > 0 else None  # Frozen: never optimised, never saved
        self.align_heads = alignment_heads(self.encoder, self.teacher, align_layers, mask)
        self.weights, self.mlm_prob, self.hard_negatives = weights, mlm_prob, hard_negatives
        self.text_encoder, self.tokenizer = text.build()
        dt, dv = self.text_encoder.width, self.encoder.width
        if not text.trainable:
            self.text_encoder = FrozenModule(self.text_encoder)  # neither optimised nor saved
        self.contrastive = ContrastiveHead(dt, embed_dim, dv, temperature, video_norm=pool_norm)
        if weights.vtm > 0 or weights.mlm > 0:
            self.decoder = CrossModalDecoder(dt, dv, fusion.depth, fusion.heads, fusion.mlp_ratio)
        if weights.vtm > 0:
            self.vtm_head = nn.Linear(dt, 2)
        if weights.mlm > 0:
            self.mlm_head = MLMHead(
                dt, self.text_encoder.cfg.vocab_size, self.text_encoder.cfg.layer_norm_eps
            )

    def no_weight_decay(self) -> set[str]:
        return {f"encoder.{n}" for n in self.encoder.no_weight_decay()}  # the temperature: ContrastiveHead's

    def forward(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        self.contrastive.clamp_()
        captions = captions_of(batch)
        clip = self.augment(batch["video"], generator, view=batch.get("view"))  # [B,C,T,H,W] in [0, 1]
        device = clip.device
        parts: dict[str, torch.Tensor] = {}
        loss_uta, out, _ = unmasked_alignment(
            self.encoder,
            self.mask_cfg,
            self.teacher,
            self.align_heads,
            self.augment.normalize(clip),
            clip,
            batch,
            generator,
            self.resize,
        )
        if self.weights.uta > 0:
            parts["uta"] = loss_uta
        tokens = out.tokens  # [B,Nv,Dv] the visible tokens after the final norm
        text = self.tokenizer(captions, device=device)
        t_out = self.text_encoder(text["ids"], text["mask"])
        v_emb = self.contrastive.video(tokens.mean(1))  # [B,E]
        t_emb = self.contrastive.text(t_out.pooled)
        idx = video_ids(batch, device)
        if self.weights.vtc > 0:
            parts["vtc"] = vtc_loss(v_emb, t_emb, self.contrastive.temp, idx)
        if self.weights.vtm > 0:
            parts["vtm"] = self._matching(tokens, t_out.tokens, text["mask"], v_emb, t_emb, idx, generator)
        if self.weights.mlm > 0:
            parts["mlm"] = self._mlm(tokens, text, generator)
        loss = sum(getattr(self.weights, k) * v for k, v in parts.items())
        return {
            "loss": loss,
            **{f"loss_{k}": v.detach() for k, v in parts.items()},
            "temp": self.contrastive.temp.detach(),
        }

    def _matching(
        self,
        video: torch.Tensor,
        text: torch.Tensor,
        mask: torch.Tensor,
        v_emb: torch.Tensor,
        t_emb: torch.Tensor,
        idx: torch.Tensor,
        generator: torch.Generator,
        head: nn.Module | None = None,
    ) -> torch.Tensor:
        """VTM on the batch: B positives, then a negative video per text and a negative text per video.
        ``head``: the two-way head (``vtm_head`` when None; InternVideo2 has one per pairing)."""
        temp = self.contrastive.temp.detach()
        sim = similarity(v_emb.detach(), t_emb.detach(), temp)  # [B,B] video -> text
        video_neg, text_neg = sample_negatives(sim, idx, generator, hard=self.hard_negatives)
        fused = self.decoder(
            torch.cat([text, text, text[text_neg]]),
            torch.cat([mask, mask, mask[text_neg]]),
            torch.cat([video, video[video_neg], video]),
        )
        logits = (head or self.vtm_head)(fused[:, 0])  # [3B,2] from the [CLS] state
        b = video.shape[0]
        return matching_loss(logits[:b], logits[b:])

    def _mlm(
        self, video: torch.Tensor, text: dict[str, torch.Tensor], generator: torch.Generator
    ) -> torch.Tensor:
        tok = self.tokenizer
        ids, labels = mask_tokens(
            text["ids"], self.mlm_prob, tok.mask_id, tok.vocab_size, (tok.pad_id, tok.cls_id), generator
        )
        states = self.decoder(self.text_encoder(ids, text["mask"]).tokens, text["mask"], video)
        chosen = labels != IGNORE  # logits only where a word is predicted: [M,V] instead of [B,L,V]
        logits = self.mlm_head(states[chosen], self.text_encoder.word_embeddings.weight)
        return mlm_loss(logits, labels[chosen])
