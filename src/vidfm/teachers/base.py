"""The teacher interface: frozen, eval mode, no autograd; resizes and normalises its own input.

Every distillation recipe (MVD, UMT, VideoPrism stage 2, InternVideo2) reads teachers only through
:class:`Teacher` and :class:`TeacherOutput`, so a teacher's architecture, input size and normalisation never leak
into a task.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from vidfm.layers.frozen import Frozen


@dataclass(frozen=True)
class TeacherSpec:
    """What a task may read of a teacher without running it (it sizes the task's heads and decoders).

    dim: width D of ``tokens``/``hidden``. layers: the hidden layers returned (UMT aligns one head per
    layer). per_frame: an image teacher that sees frames (MVD feeds it ``frames[::tubelet]``).
    embed_dim: width of ``pooled`` when the teacher returns one (VideoPrism's global target).
    """

    dim: int
    layers: tuple[int, ...] = ()
    per_frame: bool = False
    embed_dim: int | None = None


@dataclass
class TeacherOutput:
    """tokens: [B, N, D] on the teacher's own grid, (t, h, w) row-major, N = T·H·W.
    grid: (T, H, W) of that token grid.
    pooled: optional [B, D'] global embedding (CLIP/VideoPrism).
    attention: optional [B, T, H·W] importance of each patch (class-token attention), for semantic masking.
    hidden: optional {layer: [B, N, D]} when the recipe asks for several layers.
    """

    tokens: torch.Tensor
    grid: tuple[int, int, int]
    pooled: torch.Tensor | None = None
    attention: torch.Tensor | None = None
    hidden: dict[int, torch.Tensor] = field(default_factory=dict)


class Teacher(Frozen):
    """Base class. Subclasses implement :meth:`encode` on their own normalised input.

    Input to ``__call__``: float video [B,C,T,H,W] in [0, 1] (the student's crop before normalisation);
    the teacher resizes it to ``size`` and normalises it with its own ``mean``/``std``.

    A subclass sets ``dim`` (and ``layers``, ``per_frame``, ``embed_dim`` where they differ from the
    defaults below) in its constructor; :attr:`spec` hands them to tasks.

    Args:
        size: the teacher's input side in pixels (None = keep the student's).
        mean, std: the teacher's input normalisation (ImageNet for MAE/VideoMAE, OpenAI values for CLIP).
    """

    dim: int
    layers: tuple[int, ...] = ()
    per_frame: bool = False
    embed_dim: int | None = None

    def __init__(self, size: int | None, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1, 1), persistent=False)

    @property
    def spec(self) -> TeacherSpec:
        """The declared shape of this teacher's outputs (see :class:`TeacherSpec`)."""
        embed = None if self.embed_dim is None else int(self.embed_dim)
        return TeacherSpec(int(self.dim), tuple(int(i) for i in self.layers), bool(self.per_frame), embed)

    def freeze(self) -> Teacher:
        """Eval mode, no gradients: call at the end of a subclass constructor and after loading weights."""
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    def prepare(self, video: torch.Tensor) -> torch.Tensor:
        """[B,C,T,H,W] in [0,1] -> resized and normalised for this teacher."""
        if self.size is not None and video.shape[-2:] != (self.size, self.size):
            b, c, t, h, w = video.shape
            frames = video.transpose(1, 2).reshape(b * t, c, h, w)
            frames = F.interpolate(frames, size=(self.size, self.size), mode="bicubic", align_corners=False)
            video = frames.reshape(b, t, c, self.size, self.size).transpose(1, 2)
        return (video - self.mean.to(video.dtype)) / self.std.to(video.dtype)

    def encode(self, video: torch.Tensor) -> TeacherOutput:
        raise NotImplementedError

    @torch.no_grad()
    def forward(self, video: torch.Tensor) -> TeacherOutput:
        return self.encode(self.prepare(video))
