"""Small heads: UMT's alignment head, the contrastive head, the MLM head, and the dual encoder that retrieval
evaluates."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vidfm.data.transforms import AugmentConfig
from vidfm.objectives.contrastive import clamp_temperature_


class AlignHead(nn.Module):
    """Student token -> teacher space: Linear then LayerNorm.

    Official UMT ``modeling_pretrain_umt.py`` ``Linear_Decoder`` (``norm(head(x))``, one per aligned layer,
    xavier-uniform weights, zero bias); the norm before it is the student's final norm, shared by all
    aligned layers (``self.norm(torch.stack(x_clip_vis))``), applied by the task.

    Args:
        in_dim: student width. out_dim: teacher token width. eps: LayerNorm epsilon (1e-6: the official
            ``pretrain_umt_{base,large}_patch16_224`` pass ``norm_layer=partial(nn.LayerNorm, eps=1e-6)``, which
            ``PretrainVisionTransformer`` hands to every ``Linear_Decoder``; InternVideo2's heads use 1e-5).
        mlp: Linear -> GELU -> Linear instead of one Linear (InternVideo2's head for the video teacher,
            official ``single_modality/models/internvideo2_pretrain.py`` ``MLP_Decoder``; hidden = in_dim).
    """

    def __init__(self, in_dim: int, out_dim: int, eps: float = 1e-6, mlp: bool = False) -> None:
        super().__init__()
        if mlp:
            self.fc: nn.Module = nn.Sequential(
                nn.Linear(in_dim, in_dim), nn.GELU(), nn.Linear(in_dim, out_dim)
            )
        else:
            self.fc = nn.Linear(in_dim, out_dim)
        self.norm = nn.LayerNorm(out_dim, eps=eps)
        for lin in self.fc.modules():
            if isinstance(lin, nn.Linear):
                nn.init.xavier_uniform_(lin.weight)
                nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.fc(x))


class ContrastiveHead(nn.Module):
    """The video-text contrastive head: projections into the shared space and the learnable temperature.

    Official UMT ``multi_modality/models/umt.py`` (``UMT.__init__``: ``vision_proj``, ``text_proj``,
    ``temp`` initialised at 0.07 and clamped to [0.001, 0.5] by ``clip_contrastive_temperature`` at the start
    of every forward). One module for every task trained with VTC (CLIP-style image-text, UMT stage 2,
    VideoPrism stage 1); the loss itself is :func:`vidfm.objectives.contrastive.vtc_loss`, called by the task
    with :attr:`temp`.

    Args:
        text_dim: width of the pooled text state.
        embed_dim: width E of the shared video-text space.
        video_dim: width of the pooled video feature; None when the video side projects itself (CLIP's
            ``proj``, VideoPrism's MAP head) and no ``video_proj`` is built.
        temperature: initial τ.
        video_norm: a LayerNorm (eps 1e-6) on the pooled video feature before ``video_proj``: official UMT
            stage 2's ``vision_encoder.pool_norm`` (``backbones/vit/vit.py``: ``pool_norm(x_vis.mean(1))``).
    """

    def __init__(
        self,
        text_dim: int,
        embed_dim: int,
        video_dim: int | None = None,
        temperature: float = 0.07,
        video_norm: bool = False,
    ) -> None:
        super().__init__()
        if video_norm and video_dim is None:
            raise ValueError("video_norm needs video_dim: the norm sits before the video projection")
        self.video_norm = nn.LayerNorm(video_dim, eps=1e-6) if video_norm else None
        self.video_proj = nn.Linear(video_dim, embed_dim) if video_dim is not None else None
        self.text_proj = nn.Linear(text_dim, embed_dim)
        self.temp = nn.Parameter(torch.tensor(float(temperature)))

    def no_weight_decay(self) -> set[str]:
        return {"temp"}

    def clamp_(self) -> None:
        """Clamp τ in place (before each training forward, as the official code)."""
        clamp_temperature_(self.temp)

    def video(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled video [B,Dv] -> [B,E] (not normalised); needs ``video_dim``."""
        if self.video_proj is None:
            raise ValueError("this ContrastiveHead has no video projection (built with video_dim=None)")
        return self.video_proj(pooled if self.video_norm is None else self.video_norm(pooled))

    def text(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled text [B,Dt] -> [B,E] (not normalised)."""
        return self.text_proj(pooled)


class MLMHead(nn.Module):
    """BERT's ``BertLMPredictionHead``: dense -> GELU -> LayerNorm -> logits over the vocabulary with the
    word-embedding matrix (weights tied, given at call time) plus a bias.

    Args:
        dim: token width. vocab_size: vocabulary size. eps: LayerNorm epsilon.
    """

    def __init__(self, dim: int, vocab_size: int, eps: float = 1e-12) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        nn.init.normal_(self.dense.weight, std=0.02)
        nn.init.zeros_(self.dense.bias)

    def forward(self, x: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        """x [B,L,D], word_embeddings [V,D] -> logits [B,L,V]."""
        return self.norm(F.gelu(self.dense(x))) @ word_embeddings.t() + self.bias


class DualEncoder(nn.Module):
    """Video and text towers mapped into one embedding space, for retrieval and zero-shot classification.

    Args:
        video_tower: normalised video [B,C,T,H,W] -> clip feature [B,Dv] (e.g. mean of encoder tokens).
        video_proj: [B,Dv] -> [B,E].
        text_encoder: a :class:`~vidfm.models.text.BertTextEncoder`.
        text_proj: [B,Dt] -> [B,E].
        tokenizer: a :class:`~vidfm.models.text.Tokenizer`.
        augment: the recipe's crop/normalise config: its ``size``, ``mean`` and ``std`` are the clip side and
            normalisation the video tower expects (kept as ``self.size``, ``self.mean``, ``self.std``).
        modules: every module holding weights (registered, so ``.to(device)`` moves them).
    """

    def __init__(
        self,
        video_tower: Callable[[torch.Tensor], torch.Tensor],
        video_proj: Callable[[torch.Tensor], torch.Tensor],
        text_encoder: nn.Module,
        text_proj: nn.Module,
        tokenizer: Callable,
        augment: AugmentConfig,
        modules: dict[str, nn.Module],
    ) -> None:
        super().__init__()
        self.parts = nn.ModuleDict(modules)
        self.video_tower, self.video_proj = video_tower, video_proj
        self.text_encoder, self.text_proj, self.tokenizer = text_encoder, text_proj, tokenizer
        self.size, self.mean, self.std = augment.size, tuple(augment.mean), tuple(augment.std)

    @torch.no_grad()
    def embed_video(self, video: torch.Tensor) -> torch.Tensor:
        """Normalised video [B,C,T,size,size] -> unit embeddings [B,E]."""
        return F.normalize(self.video_proj(self.video_tower(video)).float(), dim=-1)

    @torch.no_grad()
    def embed_text(self, texts: list[str]) -> torch.Tensor:
        """Texts -> unit embeddings [B,E]."""
        device = next(self.parameters()).device
        batch = self.tokenizer(texts, device=device)
        return F.normalize(
            self.text_proj(self.text_encoder(batch["ids"], batch["mask"]).pooled).float(), dim=-1
        )


class VideoProjector(nn.Module):
    """Encoder tokens -> a few soft tokens in a language model's embedding space.

    InternVideo2 stage 3 bridges the video encoder and the LLM VideoChat2-style (paper §3.3; official
    ``multi_modality/demo`` and the VideoChat2 code): a Q-Former's learned queries cross-attend to the visual
    tokens and a linear layer maps them to the LLM's width. This is that bridge at its smallest: a LayerNorm on
    the tokens (the InternVideo2 student has no final norm), ``num_queries`` learned queries attending once
    (:class:`~vidfm.layers.pooling.AttentionPool` with its residual MLP), and a Linear to ``out_dim`` — one
    cross-attention layer instead of the 12-block BERT Q-Former, which a CPU-scale LM does not need.

    Args:
        in_dim: encoder width. out_dim: LM embedding width. num_queries: soft tokens per clip.
        num_heads: attention heads of the queries.
    """

    def __init__(self, in_dim: int, out_dim: int, num_queries: int = 8, num_heads: int = 4) -> None:
        super().__init__()
        from vidfm.layers.pooling import AttentionPool

        self.norm = nn.LayerNorm(in_dim, eps=1e-6)
        self.pool = AttentionPool(in_dim, num_heads, num_queries=num_queries, mlp_ratio=4.0)
        self.proj = nn.Linear(in_dim, out_dim)

    def no_weight_decay(self) -> set[str]:
        return {f"pool.{n}" for n in self.pool.no_weight_decay()}

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B,N,in_dim] -> [B,num_queries,out_dim]."""
        return self.proj(self.pool(self.norm(tokens)))
