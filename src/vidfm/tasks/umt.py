"""Unmasked Teacher, stage 1: semantic masking from a CLIP teacher, then unmasked token alignment (UTA).

Li et al., "Unmasked Teacher", ICCV 2023; official ``single_modality/engines/engine_for_pretraining_umt.py``
and ``models/modeling_pretrain_umt.py``:

1. The frozen CLIP teacher sees every frame; its last block's class-token attention is each frame's
   importance, and ``N - int(0.8·N)`` visible tokens per frame (``N_vis = N - int(N * mask_ratio)``: 13 of
   64, 40 of 196) are drawn from it by multinomial sampling without replacement (``mask_type='attention'``,
   ratio 0.8; :func:`vidfm.masking.semantic_mask`); not a tube.
2. The student (tubelet 1, no class token, no decoder) encodes only the visible tokens.
3. Its last K blocks' outputs (K = ``clip_return_layer`` = 6) pass the shared final norm, get a fixed 1-D
   sincos position table added (``clip_pos_embed`` at the visible positions), then one head per layer
   (Linear -> LayerNorm), and are aligned with the teacher's last K layers at the same tokens:
   loss = mean(2 - 2·cos) over layers and visible tokens (``clip_loss_type='l2'``, both sides L2-normalised).

Steps 1-3 are :func:`unmasked_alignment`, a function of the student encoder, its heads
(:func:`alignment_heads`) and the teacher's targets; stage 1 (:class:`UMTTask`) is that alone, stage 2
(:mod:`vidfm.tasks.umt_stage2`) composes it with its video-language losses.

Departure from UMT, off by default (``global_weight=0``): a global term, the student's visible tokens
mean-pooled (the pooling of vidfm's linear probe) through a Linear -> LayerNorm head and aligned (2 − 2cos)
with the teacher's ``pooled`` output of the whole clip, each of its channels standardised over the batch,
akin to VideoPrism stage 2's global distillation (:mod:`vidfm.tasks.videoprism`; there a MAP pooler, here the
probe's mean). Token alignment alone need not give what a linear probe on mean-pooled tokens reads; this
term aims at it directly. The standardisation is needed: a CNN's pooled map is dominated by one direction
common to all clips (EfficientNet-Lite0's stride-8 means on digits-motion: mean pairwise cosine 0.91, 0.00
once standardised), so the raw cosine is nearly met by a constant.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

from vidfm.data.transforms import AugmentConfig, VideoAugment
from vidfm.layers.pos_embed import sincos_1d
from vidfm.masking import Mask, MaskConfig, make_mask
from vidfm.models.encoder import EncoderConfig, EncoderOutput, VideoEncoder, gather_tokens
from vidfm.models.heads import AlignHead
from vidfm.objectives.distill import FeatureLoss, feature_loss, normalized_l2
from vidfm.teachers.align import align_tokens
from vidfm.teachers.base import TeacherOutput
from vidfm.teachers.targets import TargetProvider


def alignment_heads(
    encoder: VideoEncoder, teacher: TargetProvider | None, align_layers: int, mask: MaskConfig
) -> nn.ModuleList | None:
    """One :class:`~vidfm.models.heads.AlignHead` (student width -> ``teacher.spec.dim``) per aligned layer,
    for the student's last ``align_layers`` blocks and the teacher's returned layers; None without a teacher.

    Checks that the student has tubelet 1, that the teacher returns ``align_layers`` layers and that a
    semantic mask has a teacher.
    """
    if encoder.cfg.tubelet != 1:
        raise ValueError(f"UMT needs tubelet 1 (one frame per token), got {encoder.cfg.tubelet}")
    if teacher is None:
        if mask.kind == "semantic":
            raise ValueError("semantic masking needs a teacher (its class-token attention)")
        return None
    depth = encoder.depth
    if not 1 <= align_layers <= depth:
        raise ValueError(f"align_layers must be in [1, {depth}] for a {depth}-block student")
    layers = teacher.spec.layers
    if len(layers) != align_layers:
        raise ValueError(f"the teacher returns {len(layers)} layer(s), the student aligns {align_layers}")
    return nn.ModuleList(AlignHead(encoder.width, teacher.spec.dim) for _ in layers)


def student_layers(encoder: VideoEncoder, heads: nn.ModuleList) -> tuple[int, ...]:
    """The student blocks aligned by ``heads``: its last ``len(heads)``, in ascending order."""
    return tuple(range(encoder.depth - len(heads), encoder.depth))


def align_pos(encoder: VideoEncoder, device: torch.device | str = "cpu") -> torch.Tensor:
    """Official ``clip_pos_embed``: a 1-D sincos table over the flattened grid at the student width,
    [1, N, D], added to each aligned layer's tokens before its head (made once per size and device)."""
    return _sincos_1d(math.prod(encoder.grid), encoder.width, str(device))


@functools.lru_cache(maxsize=8)
def _sincos_1d(num: int, dim: int, device: str) -> torch.Tensor:
    return sincos_1d(num, dim)[None].to(device)


def attention_importance(
    target: TeacherOutput, grid: tuple[int, int, int], resize: bool = False
) -> torch.Tensor | None:
    """A teacher's class-token attention [B,T,h·w] as each student token's importance [B,N] on the student's
    ``grid`` (the weights of a semantic mask); None when the teacher returns no attention."""
    if target.attention is None:
        return None
    return align_tokens(target.attention.flatten(1)[..., None], target.grid, grid, resize=resize)[..., 0]


def unmasked_alignment(
    encoder: VideoEncoder,
    mask_cfg: MaskConfig,
    teacher: TargetProvider | None,
    heads: nn.ModuleList | None,
    video: torch.Tensor,
    clip: torch.Tensor,
    batch: dict,
    generator: torch.Generator,
    resize: bool = False,
    target: TeacherOutput | None = None,
) -> tuple[torch.Tensor, EncoderOutput, Mask]:
    """UMT's masked forward with unmasked token alignment (UTA): (loss, student output on its visible
    tokens, the mask).

    Args:
        encoder: the student (tubelet 1). mask_cfg: ``semantic`` draws from the teacher's attention.
        teacher: the targets (``hidden`` for ``spec.layers``, ``attention`` [B,T,h·w] for a semantic mask);
            None = no alignment: the loss is 0 and the student sees what ``mask_cfg`` keeps.
        heads: :func:`alignment_heads` (None with no teacher).
        video: the student's normalised input [B,C,T,H,W]; clip: the same crop in [0, 1], for the teacher.
        batch: the step's batch (cached targets are read from it). generator: the step's generator.
        resize: allow a teacher patch grid other than the student's (bilinear resize of its token maps).
        target: the teacher's output for this step when the caller already has it (None = ask ``teacher``).
    """
    b, grid = clip.shape[0], encoder.grid
    if teacher is None or heads is None:
        mask = make_mask(mask_cfg, b, grid, generator, clip.device)
        return clip.new_zeros(()), encoder(video, visible=mask.visible), mask
    if target is None:
        target = teacher(clip, batch)  # no grad, eval mode
    importance = attention_importance(target, grid, resize)
    mask = make_mask(mask_cfg, b, grid, generator, clip.device, importance=importance)
    layers = student_layers(encoder, heads)
    out = encoder(video, visible=mask.visible, return_layers=layers)
    pos = gather_tokens(align_pos(encoder, clip.device).expand(b, -1, -1), mask.visible)  # [B,Nv,D]
    pos = pos.to(out.tokens.dtype)
    losses = []
    for head, s, t in zip(heads, layers, teacher.spec.layers, strict=True):
        pred = head(encoder.norm(out.hidden[s]) + pos)  # [B,Nv,E]
        goal = gather_tokens(align_tokens(target.hidden[t], target.grid, grid, resize=resize), mask.visible)
        losses.append(normalized_l2(pred, goal))
    return torch.stack(losses).mean(), out, mask


def standardize_batch(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """[B,E] -> each channel centred and scaled to unit variance over the batch (B >= 2), in float32."""
    if x.shape[0] < 2:
        raise ValueError("the global term standardises the pooled targets over the batch: batch >= 2")
    x = x.float()
    return (x - x.mean(0)) / (x.std(0) + eps)


class UMTTask(nn.Module):
    """Student encoder + one alignment head per aligned layer + the teacher's targets.

    Args:
        encoder: student config; tubelet must be 1 (each token belongs to one frame of the teacher).
        mask: ``semantic`` (UMT, ratio 0.8) or ``tube``/``random``/``frame`` for ablations.
        augment: crop/normalise config; the teacher receives the crop in [0, 1].
        teacher: the targets of a teacher returning ``hidden`` for ``align_layers`` layers and (for semantic
            masking) ``attention`` [B,T,h·w] — a live :class:`~vidfm.teachers.clip.CLIPTeacher` or cached
            targets (:mod:`vidfm.teachers.targets`); None = no alignment (the student then sees the tokens
            ``mask`` keeps, all of them for ratio 0).
        align_layers: K, the number of last student blocks aligned with the teacher's returned layers.
        resize: allow a teacher patch grid other than the student's (bilinear resize of its token maps).
        global_weight: weight of the global term (not in UMT; see the module docstring); 0 builds no head and
            the loss is UMT's exactly. Needs a teacher with ``pooled`` (``spec.embed_dim``).
        global_loss: its distance (:func:`vidfm.objectives.distill.feature_loss`; 2 − 2cos by default).

    Returns from ``forward``: ``loss`` = alignment + ``global_weight`` × global, and with a global term
    ``loss_token``/``loss_global`` (detached).
    """

    def __init__(
        self,
        encoder: EncoderConfig,
        mask: MaskConfig,
        augment: AugmentConfig,
        teacher: TargetProvider | None,
        align_layers: int = 6,
        resize: bool = False,
        global_weight: float = 0.0,
        global_loss: FeatureLoss = "normalized_l2",
    ) -> None:
        super().__init__()
        self.encoder = VideoEncoder(encoder)
        self.augment = VideoAugment(augment)
        self.mask_cfg, self.resize = mask, resize
        self.teacher = teacher  # Frozen: never optimised, never saved
        # ``align_heads.{j}.*``: the keys official UMT checkpoints convert to (vidfm.convert.umt).
        self.align_heads = alignment_heads(self.encoder, teacher, align_layers, mask)
        if global_weight < 0:
            raise ValueError(f"global_weight must be >= 0, got {global_weight}")
        self.global_weight, self.global_loss = float(global_weight), global_loss
        if self.global_weight > 0:
            if teacher is None or teacher.spec.embed_dim is None:
                raise ValueError("global_weight > 0 needs a teacher with a pooled output (spec.embed_dim)")
            self.global_head = AlignHead(self.encoder.width, teacher.spec.embed_dim)

    def no_weight_decay(self) -> set[str]:
        return {f"encoder.{n}" for n in self.encoder.no_weight_decay()}

    def forward(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        clip = self.augment(batch["video"], generator, view=batch.get("view"))  # [B,C,T,H,W] in [0, 1]
        video = self.augment.normalize(clip)
        target = None
        if self.global_weight > 0:
            target = self.teacher(clip, batch)  # no grad, eval mode; shared with the alignment
        loss, out, _ = unmasked_alignment(
            self.encoder,
            self.mask_cfg,
            self.teacher,
            self.align_heads,
            video,
            clip,
            batch,
            generator,
            self.resize,
            target,
        )
        if self.global_weight == 0:
            return {"loss": loss}
        pred = self.global_head(out.tokens.mean(1))  # [B,E]: mean over the visible tokens
        glob = feature_loss(pred, standardize_batch(target.pooled).to(pred.dtype), self.global_loss)
        total = loss + self.global_weight * glob
        return {"loss": total, "loss_token": loss.detach(), "loss_global": glob.detach()}
