"""Image and video ViT teachers over :class:`~vidfm.models.encoder.VideoEncoder`.

- Image teacher: an image ViT (``tubelet=1``, ``num_frames=1``, usually a class token) applied to every frame
  it is given on its own; its token grid is (frames, h, w). Sources: a vidfm ``mae_image`` run, an HF
  ``ViTMAEModel``/``ViTModel`` folder (:mod:`vidfm.convert.hf_vit`).
- Video teacher: a video ViT on the whole clip; grid (T/t, h, w). Sources: a vidfm ``videomae`` run, a
  converted or official VideoMAE checkpoint, an HF VideoMAE folder (:func:`vidfm.convert.load_encoder`).

The target is one block's output before the final norm by default: official MVD ``modeling_teacher.py``
(``MaskedAutoencoderViT.forward_encoder`` returns ``x[:, 1:]`` after the blocks, without ``self.norm``) and
``modeling_video_teacher.py`` (``forward_features`` stops after the blocks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from vidfm.data.transforms import (  # MAE/VideoMAE/MVD inputs; the default
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentConfig,
)
from vidfm.models.encoder import VideoEncoder
from vidfm.runs import is_run
from vidfm.runs import load_encoder as load_run_encoder
from vidfm.teachers.base import Teacher, TeacherOutput

TeacherKind = Literal["image", "video"]


def is_image_encoder(encoder: VideoEncoder) -> bool:
    """An image ViT in VideoEncoder form: one frame per token and a position table for one frame."""
    return encoder.cfg.tubelet == 1 and encoder.cfg.num_frames == 1


class ViTTeacher(Teacher):
    """A frozen VideoEncoder behind the :class:`Teacher` interface.

    Args:
        encoder: the encoder, weights loaded.
        size: input side the teacher resizes to (None = its config's ``img_size``).
        mean, std: its input normalisation.
        layer: block whose output is the target (-1 = the last block).
        final_norm: apply the encoder's final norm to that output (False in MVD, see the module docstring).
        per_frame: encode each frame alone (image teacher); default: True for an image encoder.
        layers: blocks (negative counts from the end) also returned in ``hidden`` (InternVideo2 aligns the
            video teacher's last 4); the final norm, when ``final_norm``, touches only the last block's output
            there, as official ``single_modality/models/videomae.py`` (``VisionTransformer.forward`` norms
            after block ``depth - 1`` only). Empty: ``hidden`` stays empty.
    """

    def __init__(
        self,
        encoder: VideoEncoder,
        size: int | None = None,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
        layer: int = -1,
        final_norm: bool = False,
        per_frame: bool | None = None,
        layers: tuple[int, ...] = (),
    ) -> None:
        super().__init__(size or encoder.cfg.img_size, mean, std)
        for i in (layer, *layers):
            if not -encoder.depth <= i < encoder.depth:
                raise ValueError(f"teacher layer {i} out of range for a {encoder.depth}-block encoder")
        self.layers = tuple(i % encoder.depth for i in layers)
        self.encoder = encoder
        self.layer = layer % encoder.depth
        self.final_norm = final_norm
        self.per_frame = is_image_encoder(encoder) if per_frame is None else per_frame
        self.dim = encoder.width  # token width of the output
        self.freeze()

    @property
    def kind(self) -> TeacherKind:
        return "image" if self.per_frame else "video"

    def encode(self, video: torch.Tensor) -> TeacherOutput:
        """video [B,C,T,H,W], resized and normalised -> tokens [B, T'·h·w, D] on the teacher's grid."""
        b, _, t = video.shape[:3]
        x = video.transpose(1, 2).flatten(0, 1).unsqueeze(2) if self.per_frame else video  # [B·T,C,1,H,W]
        out = self.encoder(x, return_layers=(self.layer, *self.layers))
        tokens = out.hidden[self.layer]  # [B(·T), n, D] before the final norm
        if self.final_norm:
            tokens = self.encoder.norm(tokens)
        last = self.encoder.depth - 1
        hidden = {
            i: self.encoder.norm(out.hidden[i]) if self.final_norm and i == last else out.hidden[i]
            for i in self.layers
        }
        pooled = out.cls if out.cls is not None else out.tokens.mean(1)  # [B(·T), D]
        if not self.per_frame:
            return TeacherOutput(tokens=tokens, grid=out.grid, pooled=pooled, hidden=hidden)
        _, h, w = out.grid
        return TeacherOutput(
            tokens=tokens.reshape(b, t * h * w, -1),  # frame-major: (t, h, w) row-major
            grid=(t, h, w),
            pooled=pooled.view(b, t, -1).mean(1),  # the clip's embedding: mean over its frames
            hidden={i: v.reshape(b, t * h * w, -1) for i, v in hidden.items()},
        )


def load_teacher_encoder(
    path: str | Path, num_frames: int = 16, img_size: int = 224
) -> tuple[VideoEncoder, tuple[float, ...], tuple[float, ...]]:
    """(encoder, mean, std) from any teacher source.

    Sources: a vidfm run folder (its latest checkpoint; normalisation from the run's ``augment``), an HF
    ``vit``/``vit_mae`` folder (normalisation from ``preprocessor_config.json``), anything
    :func:`vidfm.convert.load_encoder` reads (vidfm folder or weights, HF VideoMAE folder, official VideoMAE
    ``.pth``; ``num_frames``/``img_size`` give an official checkpoint's clip size, which it does not store).
    """
    from vidfm.convert import build_models, load_encoder
    from vidfm.convert.hf_vit import from_hf_vit, hf_model_type, hf_normalisation

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"teacher {path} does not exist")
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if is_run(path):
        encoder, run = load_run_encoder(path)
        if run.has("augment"):
            augment = run.section("augment", AugmentConfig)
            mean, std = tuple(augment.mean), tuple(augment.std)
        return encoder.eval(), mean, std
    if hf_model_type(path) in ("vit", "vit_mae"):
        conv = from_hf_vit(path)
        encoder = build_models(conv.encoder, None, conv.state_dict)[0]
        return encoder, *(hf_normalisation(path) or (mean, std))
    return load_encoder(path, num_frames=num_frames, img_size=img_size), mean, std


def load_teacher(
    path: str | Path,
    kind: TeacherKind | None = None,
    size: int | None = None,
    layer: int = -1,
    final_norm: bool = False,
    num_frames: int = 16,
    img_size: int = 224,
    layers: tuple[int, ...] = (),
) -> ViTTeacher:
    """A frozen :class:`ViTTeacher` from ``path`` (see :func:`load_teacher_encoder`).

    ``kind``: ``"image"`` or ``"video"`` to check the source is what the recipe expects (None: take it as it
    is). ``size``: input side (None = the teacher's own); ``layer``/``final_norm``/``layers`` as
    :class:`ViTTeacher`.
    """
    encoder, mean, std = load_teacher_encoder(path, num_frames=num_frames, img_size=img_size)
    teacher = ViTTeacher(
        encoder, size=size, mean=mean, std=std, layer=layer, final_norm=final_norm, layers=layers
    )
    if kind is not None and teacher.kind != kind:
        raise ValueError(
            f"{path} holds a {teacher.kind} encoder (tubelet {encoder.cfg.tubelet}, {encoder.cfg.num_frames} "
            f"frame(s)), but a {kind} teacher is asked for"
        )
    return teacher
