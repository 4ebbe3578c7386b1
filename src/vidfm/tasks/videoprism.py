"""VideoPrism (Zhao et al., ICML 2024; ``../shared/PAPERS.md`` §3): two training stages of a factorized encoder.

Stage 1 (§3.2 "video-text contrastive training"): the factorized :class:`~vidfm.models.encoder.VideoEncoder`
on the whole clip, its tokens pooled by a multi-head attention pooler (MAP; official ``videoprism/layers.py``
``AttenTokenPoolingLayer``: one learned query, per-dimension query scale, output LayerNorm), projected into
the text space; symmetric InfoNCE against the caption embeddings, gathered across ranks (vidfm's VTC,
:func:`vidfm.objectives.contrastive.vtc_loss`).

Stage 2 (§3.2 "masked video modeling"): a student initialised from stage 1 sees a tube-masked clip; its
output tokens are **shuffled** (one random permutation per clip) before an MAE-style decoder, which adds the
position embeddings of the visible positions to the shuffled sequence, appends mask tokens at the masked
positions and predicts the frozen stage-1 teacher's output token of **every** position (token-wise
distillation: the decoder cannot copy a visible token into its own slot, it has to solve the jigsaw). A
MAP head on the student's visible tokens predicts the teacher's global video embedding of the full clip
(global distillation), which keeps stage 1's appearance semantics. ``loss = w_token·L_token +
w_global·L_global``; ``shuffle=False`` and ``global_weight=0`` are the paper's ablations (a part with weight
0 builds no module and never runs).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from vidfm.data.transforms import AugmentConfig, VideoAugment
from vidfm.layers.frozen import FrozenModule
from vidfm.layers.pooling import AttentionPool
from vidfm.masking import MaskConfig, make_mask
from vidfm.models.decoder import DecoderConfig, MaskedDecoder
from vidfm.models.encoder import EncoderConfig, VideoEncoder, gather_tokens
from vidfm.models.heads import ContrastiveHead
from vidfm.models.text import TextEncoderConfig
from vidfm.objectives.contrastive import vtc_loss
from vidfm.objectives.distill import FeatureLoss, feature_loss
from vidfm.tasks.clip_image import captions_of, video_ids
from vidfm.teachers.base import Teacher, TeacherOutput
from vidfm.teachers.targets import TargetProvider


class VideoHead(nn.Module):
    """Tokens [B,N,D] -> video embedding [B,E]: the VideoPrism MAP pooler, then a linear projection.

    The pooler is :class:`~vidfm.layers.pooling.AttentionPool` in its VideoPrism form (one query, per-dimension
    scale, output LayerNorm, no MLP). The projection maps the video width to the text space (official
    VideoPrism's towers share one width and have none; vidfm's text tower is MiniLM).

    Args:
        width: token width D. heads: pooler heads. embed_dim: E.
    """

    def __init__(self, width: int, heads: int, embed_dim: int) -> None:
        super().__init__()
        self.pool = AttentionPool(width, heads, 1, mlp_ratio=None, out_norm=True, per_dim_scale=True)
        self.proj = nn.Linear(width, embed_dim)
        self.embed_dim = embed_dim

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(tokens)[:, 0])


class VideoPrismStage1Task(nn.Module):
    """Factorized encoder + MAP video head + text encoder + contrastive head (text projection, temperature).

    Args:
        encoder: the encoder config (``space_time="factorized"`` for VideoPrism; joint works too).
        augment: crop/normalise config.
        text: the text encoder (MiniLM by default) and whether it trains.
        embed_dim: width of the shared video-text space.
        pool_heads: heads of the MAP pooler (None = the encoder's).
        temperature: initial τ of the contrastive loss (learnable, clamped to [0.001, 0.5]).
    """

    def __init__(
        self,
        encoder: EncoderConfig,
        augment: AugmentConfig,
        text: TextEncoderConfig,
        embed_dim: int = 512,
        pool_heads: int | None = None,
        temperature: float = 0.07,
    ) -> None:
        super().__init__()
        self.encoder = VideoEncoder(encoder)
        self.augment = VideoAugment(augment)
        self.video_head = VideoHead(self.encoder.width, pool_heads or encoder.dims()[2], embed_dim)
        self.text_encoder, self.tokenizer = text.build()
        self.contrastive = ContrastiveHead(self.text_encoder.width, embed_dim, None, temperature)
        self.text_frozen = not text.trainable
        if self.text_frozen:  # frozen like a teacher: not optimised, not saved, eval mode
            self.text_encoder = FrozenModule(self.text_encoder)  # neither optimised nor saved

    def embed_text(self, captions: list[str], device: torch.device) -> torch.Tensor:
        """Captions -> projected text embeddings [B,E] (not normalised)."""
        batch = self.tokenizer(captions, device=device)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.text_frozen):
            pooled = self.text_encoder(batch["ids"], batch["mask"]).pooled
        return self.contrastive.text(pooled)

    def forward(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        self.contrastive.clamp_()
        captions = captions_of(batch)
        video = self.augment.normalize(self.augment(batch["video"], generator, view=batch.get("view")))
        v_emb = self.video_head(self.encoder(video).tokens)  # [B,E] MAP over all T'·H'·W' tokens
        t_emb = self.embed_text(captions, video.device)
        temp = self.contrastive.temp
        loss = vtc_loss(v_emb, t_emb, temp, video_ids(batch, video.device))
        return {"loss": loss, "loss_vtc": loss.detach(), "temp": temp.detach()}


class VideoPrismTeacher(Teacher):
    """A frozen stage-1 model: output tokens (after the final norm) and the MAP video embedding of the clip.

    Args:
        encoder: the stage-1 encoder. head: its :class:`VideoHead`.
        size, mean, std: the stage-1 input side and normalisation.
    """

    def __init__(
        self,
        encoder: VideoEncoder,
        head: VideoHead,
        size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
    ) -> None:
        super().__init__(size, mean, std)
        self.encoder, self.head = encoder, head
        self.dim = encoder.width  # token width of the targets
        self.embed_dim = head.embed_dim  # width of the global target (``pooled``)
        self.freeze()

    def encode(self, video: torch.Tensor) -> TeacherOutput:
        out = self.encoder(video)
        return TeacherOutput(tokens=out.tokens, grid=out.grid, pooled=self.head(out.tokens))

    @classmethod
    def from_run(cls, run_dir: str | Path) -> VideoPrismTeacher:
        """The teacher of a ``videoprism_stage1`` run folder (its latest checkpoint)."""
        encoder, head, augment = load_stage1(run_dir)
        return cls(encoder, head, augment.size, tuple(augment.mean), tuple(augment.std))


def load_stage1(run_dir: str | Path) -> tuple[VideoEncoder, VideoHead, AugmentConfig]:
    """Encoder and video head of a ``videoprism_stage1`` run, weights loaded, and the run's clip
    augmentation (size and normalisation)."""
    from vidfm.runs import open_run

    run = open_run(run_dir)
    if run.recipe != "videoprism_stage1":
        raise ValueError(f"{run_dir} is a {run.recipe!r} run, not a videoprism_stage1 run")
    enc_cfg = run.section("encoder", EncoderConfig)
    encoder = VideoEncoder(enc_cfg)
    head = VideoHead(encoder.width, run.get("pool_heads") or enc_cfg.dims()[2], int(run.get("embed_dim")))
    run.load(encoder, "encoder.")
    run.load(head, "video_head.")
    return encoder.eval(), head.eval(), run.section("augment", AugmentConfig)


def decode_all(
    decoder: MaskedDecoder, tokens: torch.Tensor, visible: torch.Tensor, masked: torch.Tensor
) -> torch.Tensor:
    """Predictions [B, Nv+Nm, D'] for every slot, visible slots first (VideoPrism predicts all tokens).

    tokens [B,Nv,Din] take the position embeddings of ``visible`` [B,Nv] slot by slot, whatever token they
    hold: shuffled tokens therefore sit at positions that are not their own.
    """
    return decoder(tokens, visible, masked, all_slots=True)


class VideoPrismStage2Task(nn.Module):
    """Student encoder + token decoder (+ global MAP head) distilled from a frozen stage-1 teacher.

    Args:
        encoder: the student config (the stage-1 encoder's, to start from its weights).
        decoder: the decoder; width/heads None = the encoder's.
        mask: a tube mask (the factorized encoder's masked input, see :mod:`vidfm.models.encoder`).
        augment: crop/normalise config; the teacher receives the same crop in [0, 1].
        teacher: the stage-1 model's targets (:class:`VideoPrismTeacher` live, or cached): ``tokens`` of
            width ``spec.dim`` and ``pooled`` of width ``spec.embed_dim``.
        shuffle: shuffle the encoder's output tokens before the decoder (the paper's token shuffling).
        token_weight, global_weight: loss weights; ``global_weight=0`` builds no global head.
        token_loss, global_loss: distances (:func:`vidfm.objectives.distill.feature_loss`).
        pool_heads: heads of the global head's pooler (None = the encoder's).
    """

    def __init__(
        self,
        encoder: EncoderConfig,
        decoder: DecoderConfig,
        mask: MaskConfig,
        augment: AugmentConfig,
        teacher: TargetProvider,
        shuffle: bool = True,
        token_weight: float = 1.0,
        global_weight: float = 1.0,
        token_loss: FeatureLoss = "l2",
        global_loss: FeatureLoss = "cosine",
        pool_heads: int | None = None,
    ) -> None:
        super().__init__()
        if token_weight <= 0 or global_weight < 0:
            raise ValueError(
                f"token_weight must be > 0 and global_weight >= 0, got {token_weight}, {global_weight}"
            )
        if encoder.space_time == "factorized" and mask.kind != "tube":
            raise ValueError(f"the factorized encoder takes tube masks, not {mask.kind!r}")
        self.encoder = VideoEncoder(encoder)
        self.augment = VideoAugment(augment)
        self.teacher = teacher  # Frozen: never optimised, never saved
        self.mask_cfg, self.shuffle = mask, shuffle
        self.token_weight, self.global_weight = float(token_weight), float(global_weight)
        self.token_loss, self.global_loss = token_loss, global_loss
        heads = encoder.dims()[2]
        # A 3-D sincos decoder table, as the MAE-family decoders here (and MVD's feature decoders).
        dec = MaskedDecoder(
            self.encoder.width,
            replace(decoder, pos_embed="sincos_3d"),
            decoder.width or self.encoder.width,
            decoder.heads or heads,
            teacher.spec.dim,
            self.encoder.grid,
        )
        self.decoder = dec
        if self.global_weight > 0:
            if teacher.spec.embed_dim is None:
                raise ValueError("global_weight > 0 needs a teacher with a pooled output (spec.embed_dim)")
            self.global_head = VideoHead(self.encoder.width, pool_heads or heads, teacher.spec.embed_dim)

    def forward(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        clip = self.augment(batch["video"], generator, view=batch.get("view"))  # [B,C,T,H,W] in [0, 1]
        b, device = clip.shape[0], clip.device
        mask = make_mask(self.mask_cfg, b, self.encoder.grid, generator, device)
        out = self.encoder(self.augment.normalize(clip), visible=mask.visible)  # tokens [B,Nv,D]
        target = self.teacher(clip, batch)  # all tokens [B,N,Dt], pooled [B,E]
        if tuple(target.grid) != tuple(out.grid):
            raise ValueError(f"teacher grid {target.grid} differs from the student's {out.grid}")
        tokens = out.tokens
        if self.shuffle:  # one permutation per clip; the slots keep the visible positions' embeddings
            perm = torch.rand(tokens.shape[:2], generator=generator, device=device).argsort(dim=1)
            tokens = gather_tokens(tokens, perm)
        pred = decode_all(self.decoder, tokens, mask.visible, mask.masked)  # [B,N,Dt] visible slots first
        order = torch.cat([mask.visible, mask.masked], dim=1)
        parts = {"token": feature_loss(pred, gather_tokens(target.tokens, order), self.token_loss)}
        if self.global_weight > 0:
            parts["global"] = feature_loss(self.global_head(out.tokens), target.pooled, self.global_loss)
        loss = self.token_weight * parts["token"] + self.global_weight * parts.get("global", 0.0)
        return {"loss": loss, **{f"loss_{k}": v.detach() for k, v in parts.items()}}
