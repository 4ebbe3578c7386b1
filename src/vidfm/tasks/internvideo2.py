"""InternVideo2 stage 1: unmasked token alignment with several frozen teachers at once.

Wang et al., "InternVideo2", ECCV 2024, §3.1; official ``single_modality/models/internvideo2_pretrain.py``
(``PretrainInternVideo2.forward``) and ``single_modality/engines/engine_for_pretraining.py``
(``train_one_epoch``), settings in ``single_modality/scripts/pretraining/1B_pt.sh``:

1. The clip is read at ``frame_ratio`` × the student's frames (``td_ratio`` 2: 16 frames). The video teacher
   (VideoMAE v2-g, tubelet 2) sees all of them; the student and the image-language teacher (InternVL-6B CLIP)
   see every ``frame_ratio``-th frame (8), so both teachers land on the student's (T, h, w) token grid and each
   teacher runs at its own frame count.
2. Semantic masking: the image teacher's class-token attention over each frame's patches is the importance,
   ``N - int(0.8·N)`` visible tokens per frame are drawn from it without replacement (``mask_type
   'attention'``). The class token is never masked: the official mask prepends a ``False`` column for it; here
   :class:`~vidfm.models.encoder.VideoEncoder` always prepends its class token to the visible patches. A
   teacher without attention (a CNN) needs a non-semantic mask kind.
3. The student encodes the visible tokens. Its last K_image blocks' patch tokens + a learned table started
   from 3-D sincos (``clip_pos_embed``) go through one Linear -> LayerNorm head each (``clip_decoder``); its
   last K_video blocks' + ``mae_pos_embed`` through one Linear-GELU-Linear -> LayerNorm head each
   (``mae_decoder``). The last block's output, class token included, is pooled by the mean-query attention
   pool (``clip_projector``) and a Linear -> LayerNorm head (``final_clip_decoder``) maps it to the image
   teacher's clip embedding.
4. Loss (all terms 2 - 2·cos between unit vectors, ``norm_type 'l2'``, averaged over layers and visible
   tokens): L = α_image·d(image layers) + α_final·d(pooled) + α_video·d(video layers)
   (``clip_loss_ratio [1, 1]``, ``mae_loss_ratio 1``).

One departure, kept by :mod:`vidfm.convert.internvideo2` too: the class token is not aligned with the image
teacher's class token (the official ``clip_decoder`` also sees the class row); the pooled term carries the
global target.

Module names are the vidfm side of :mod:`vidfm.convert.internvideo2`: ``encoder``, ``pool``,
``heads.{clip,video}.i``, ``final_heads.clip``, ``pos.{clip,video}``.
"""

from __future__ import annotations

import torch
from torch import nn

from vidfm.data.transforms import AugmentConfig, VideoAugment
from vidfm.layers.pooling import MeanQueryPool
from vidfm.layers.pos_embed import sincos_3d
from vidfm.masking import Mask, MaskConfig, make_mask
from vidfm.models.encoder import EncoderConfig, EncoderOutput, VideoEncoder, gather_tokens
from vidfm.models.heads import AlignHead
from vidfm.objectives.distill import normalized_l2
from vidfm.tasks.umt import attention_importance
from vidfm.teachers.align import align_tokens
from vidfm.teachers.base import TeacherOutput
from vidfm.teachers.targets import TargetProvider

BRANCHES = ("clip", "video")  # the image-language teacher's and the video teacher's, official names
HEAD_EPS = 1e-5  # official heads: ``norm_layer=partial(nn.LayerNorm, eps=1e-5)``


class InternVideo2Task(nn.Module):
    """Student + per-teacher heads + the frozen teachers (those with a non-zero weight).

    Args:
        encoder: student config; tubelet 1 (each token one frame of the image teacher), a class token.
        mask: ``semantic`` (official, ratio 0.8; needs an image teacher with attention) or ``frame``/
            ``random``/``tube``.
        augment: crop/normalise config; teachers receive the crop in [0, 1], the student its normalisation.
        image_teacher: the image-language teacher's targets (:mod:`vidfm.teachers.targets`; per-frame tokens of ``image_layers`` layers, ``pooled``,
            ``attention`` for semantic masking), or None when ``image_weight`` and ``final_weight`` are 0.
        video_teacher: the video teacher's targets (tokens of ``video_layers`` layers on the student's grid from
            ``frame_ratio`` × the student's frames), or None when ``video_weight`` is 0.
        image_weight, final_weight, video_weight: α of the image teacher's token layers, of its clip
            embedding (through the attention pool), of the video teacher's token layers.
        frame_ratio: frames of the read clip per student frame (official ``td_ratio`` 2).
        pool_heads: heads of the attention pool (16 officially). pool_dim: its output width (768 officially).
        resize: allow teacher grids other than the student's (token maps resized bilinearly).
    """

    def __init__(
        self,
        encoder: EncoderConfig,
        mask: MaskConfig,
        augment: AugmentConfig,
        image_teacher: TargetProvider | None,
        video_teacher: TargetProvider | None,
        image_weight: float = 1.0,
        final_weight: float = 1.0,
        video_weight: float = 1.0,
        frame_ratio: int = 2,
        pool_heads: int = 16,
        pool_dim: int = 768,
        resize: bool = False,
    ) -> None:
        super().__init__()
        if encoder.tubelet != 1 or not encoder.cls_token:
            raise ValueError("the InternVideo2 student takes tubelet 1 and a class token")
        if frame_ratio < 1:
            raise ValueError(f"frame_ratio must be >= 1, got {frame_ratio}")
        self.encoder = VideoEncoder(encoder)
        self.augment = VideoAugment(augment)
        self.mask_cfg, self.frame_ratio, self.resize = mask, frame_ratio, resize
        self.weights = {"clip": image_weight, "clip_final": final_weight, "video": video_weight}
        if any(w < 0 for w in self.weights.values()):
            raise ValueError(f"teacher weights must be >= 0, got {self.weights}")
        width, depth = self.encoder.width, self.encoder.depth
        self.heads = nn.ModuleDict()
        self.pos = nn.ParameterDict()
        self.final_heads = nn.ModuleDict()
        self.student_layers: dict[str, tuple[int, ...]] = {}
        self.teacher_layers: dict[str, tuple[int, ...]] = {}  # branches with token heads
        uses = {"clip": image_weight > 0 or final_weight > 0, "video": video_weight > 0}
        for name, teacher in (("clip", image_teacher), ("video", video_teacher)):
            if uses[name] and teacher is None:
                raise ValueError(f"the {name} teacher has a non-zero weight but none was given")
        # Target providers are Frozen: never optimised, never saved; an unused one is never built nor run.
        self.teacher_clip = image_teacher if uses["clip"] else None
        self.teacher_video = video_teacher if uses["video"] else None
        for name, teacher in self.teachers().items():
            if self.weights[name] == 0:
                continue  # the image teacher only for the pooled target (and the mask): no token heads
            dim, layers = teacher.spec.dim, teacher.spec.layers
            if not 1 <= len(layers) <= depth:
                raise ValueError(f"the {name} teacher returns {len(layers)} layers; the student has {depth}")
            self.teacher_layers[name] = layers
            self.student_layers[name] = tuple(range(depth - len(layers), depth))  # official return indices
            mlp = name == "video"  # ``mae_decoder`` is an MLP_Decoder, ``clip_decoder`` a Linear_Decoder
            self.heads[name] = nn.ModuleList(AlignHead(width, dim, HEAD_EPS, mlp=mlp) for _ in layers)
            # ``clip_pos_embed``/``mae_pos_embed``: learned, filled with the 3-D sincos table at init.
            self.pos[name] = nn.Parameter(sincos_3d(self.encoder.grid, width)[None].clone())  # [1,N,D]
        if final_weight > 0:
            self.pool = MeanQueryPool(width, pool_heads, pool_dim)
            assert self.teacher_clip is not None
            self.final_heads["clip"] = AlignHead(pool_dim, self.teacher_clip.spec.dim, HEAD_EPS)
        if not self.teachers():
            raise ValueError("all teacher weights are 0: InternVideo2 stage 1 has nothing to align")
        if mask.kind == "semantic" and self.teacher_clip is None:
            raise ValueError("semantic masking needs the image teacher's attention (image weight > 0)")

    def no_weight_decay(self) -> set[str]:
        """Position tables and the class token (official ``no_weight_decay``)."""
        return {f"encoder.{n}" for n in self.encoder.no_weight_decay()} | {f"pos.{n}" for n in self.pos}

    def teachers(self) -> dict[str, TargetProvider]:
        """The teachers that run each step, by branch."""
        pairs = {"clip": self.teacher_clip, "video": self.teacher_video}
        return {name: t for name, t in pairs.items() if t is not None}

    def targets(self, clip: torch.Tensor, batch: dict) -> dict[str, TeacherOutput]:
        """Each used teacher on its own frames of the [0,1] clip [B,C,T·r,H,W] (``batch``: cached targets)."""
        frames = {"clip": clip[:, :, :: self.frame_ratio], "video": clip}
        return {name: teacher(frames[name], batch) for name, teacher in self.teachers().items()}

    def _on_student_grid(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        return align_tokens(x, grid, self.encoder.grid, resize=self.resize)

    def mask(self, targets: dict[str, TeacherOutput], b: int, generator: torch.Generator) -> Mask:
        image = targets.get("clip")
        importance = None if image is None else attention_importance(image, self.encoder.grid, self.resize)
        device = next(iter(targets.values())).tokens.device
        return make_mask(self.mask_cfg, b, self.encoder.grid, generator, device, importance=importance)

    def losses(
        self, clip: torch.Tensor, batch: dict, generator: torch.Generator
    ) -> tuple[dict[str, torch.Tensor], EncoderOutput, Mask]:
        """Crop [B,C,T·r,H,W] in [0, 1] -> ({term: unweighted loss}, the student's output, the mask); the
        teachers take the crop, the student every ``frame_ratio``-th frame of it, normalised."""
        b = clip.shape[0]
        targets = self.targets(clip, batch)
        mask = self.mask(targets, b, generator)
        layers = sorted({i for v in self.student_layers.values() for i in v})
        video = self.augment.normalize(clip[:, :, :: self.frame_ratio])
        out = self.encoder(video, visible=mask.visible, return_layers=layers)
        parts: dict[str, torch.Tensor] = {}
        for name, heads in self.heads.items():
            target = targets[name]
            pos = self.pos[name].expand(b, -1, -1).to(out.tokens.dtype)
            pos = gather_tokens(pos, mask.visible)  # [B,Nv,D]
            per_layer = []
            for head, s, t in zip(heads, self.student_layers[name], self.teacher_layers[name], strict=True):
                goal = gather_tokens(self._on_student_grid(target.hidden[t], target.grid), mask.visible)
                per_layer.append(normalized_l2(head(out.hidden[s] + pos), goal))
            parts[name] = torch.stack(per_layer).mean()
        if "clip" in self.final_heads:
            pooled = targets["clip"].pooled
            if pooled is None:
                raise ValueError("the image teacher returns no pooled embedding for the final alignment")
            assert out.cls is not None
            x, _ = self.pool(torch.cat([out.cls[:, None], out.tokens], dim=1))  # [B,pool_dim]
            parts["clip_final"] = normalized_l2(self.final_heads["clip"](x), pooled)
        return parts, out, mask

    def forward(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        clip = self.augment(batch["video"], generator, view=batch.get("view"))  # [B,C,T·r,H,W] in [0, 1]
        parts, _, _ = self.losses(clip, batch, generator)
        loss = sum(self.weights[k] * v for k, v in parts.items())
        return {"loss": loss, **{f"loss_{k}": v.detach() for k, v in parts.items()}}
