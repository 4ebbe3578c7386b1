"""Keyframe tokenizer: a vidfm image encoder's patch features quantised by a learned codebook.

Substitution. Video-LaVIT tokenizes keyframes with LaVIT's dynamic visual tokenizer
(``VideoLaVIT/models/modeling_visual_tokenzier.py``): a frozen EVA-CLIP ViT-g/14, a token selector that
keeps a variable subset of patches, a token merger, and a ``Linear-Tanh-Linear`` head into an
L2-normalised 16384 x 32 codebook, trained (BEiT v2 VQ-KD style) to reconstruct the frozen features. Its
weights cannot ship here, so this tokenizer keeps the quantisation recipe (the same task layer and
:class:`~vidfm.lavit.motion_vq.VectorQuantizer`, feature reconstruction with a cosine loss) over any vidfm
:class:`~vidfm.models.encoder.VideoEncoder` (frozen, random or loaded from a run), and drops the dynamic
token selection: every patch gives one token. It adds a pixel head so that tokens can be turned back
into a keyframe image by :meth:`KeyframeTokenizer.render` (LaVIT uses a Stable-Diffusion U-Net for that).

The frozen features can also come from a real pretrained image network, ImageNet EfficientNet-Lite0
(``features="efficientnet_lite0"``, :mod:`vidfm.teachers.efficientnet`): the nearest offline stand-in for
LaVIT's pretrained EVA-CLIP, whose features know what is in the image where a random encoder's keep only
its brightness.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from vidfm.data.transforms import AugmentConfig
from vidfm.errors import ConfigError
from vidfm.lavit.motion_vq import Quantized, QuantizerConfig, VectorQuantizer, _task_layer
from vidfm.layers.block import Block
from vidfm.layers.pos_embed import sincos_3d
from vidfm.models.encoder import EncoderConfig, VideoEncoder
from vidfm.objectives.pixel import patchify, unpatchify
from vidfm.utils import own_seed

# OpenAI CLIP normalisation, as LaVIT's image processor (``LaVITImageProcessor`` in transform.py).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class KeyframeTokenizerConfig:
    """Keyframe tokenizer hyper-parameters.

    encoder: the frozen feature encoder; an image is fed as a clip of ``encoder.tubelet`` repeated frames
    (one temporal token slice), so image encoders (tubelet 1) and video encoders both work.
    encoder_run: a vidfm run folder whose encoder weights (and config) replace ``encoder``; empty keeps a
    random, seeded encoder. encoder_seed: its seed.
    image_size: keyframe side in pixels. mean, std: input normalisation.
    quantizer: codebook (LaVIT: 16384 x 32). decoder_width, decoder_depth, decoder_heads: the small
    transformer that maps codes back to features and pixels.
    features: where the frozen features come from: ``encoder`` (above) or ``efficientnet_lite0`` (ImageNet
    weights from the ``teachers`` extra; never saved with the tokenizer, rebuilt from the package), which
    reads the keyframe resized to ``feature_size`` and returns its map at ``feature_stride``: one token per
    cell of a (feature_size / feature_stride)² grid, each rendered as an (image_size / that side)² pixel patch.
    """

    encoder: EncoderConfig = field(
        default_factory=lambda: EncoderConfig(size="B/16", tubelet=1, num_frames=1, img_size=224)
    )
    encoder_run: str = ""
    encoder_seed: int = 0
    image_size: int = 224
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    quantizer: QuantizerConfig = field(default_factory=lambda: QuantizerConfig(num_codes=16384, dim=32))
    decoder_width: int = 256
    decoder_depth: int = 2
    decoder_heads: int = 4
    features: Literal["encoder", "efficientnet_lite0"] = "encoder"
    feature_size: int = 128
    feature_stride: int = 16

    def grid_side(self) -> int:
        """Tokens per side of the keyframe's token grid."""
        if self.features == "efficientnet_lite0":
            return self.feature_size // self.feature_stride
        return self.image_size // self.encoder.dims()[4]


@dataclass
class KeyframeVQOutput:
    """features: frozen encoder tokens ``[B, N, D]`` (the target); pred_features ``[B, N, D]``;
    pred_pixels: per-patch normalised pixels ``[B, N, p·p·3]``; target_pixels the same from the input;
    quant: the codes ``[B, N, ·]``."""

    features: torch.Tensor
    pred_features: torch.Tensor
    pred_pixels: torch.Tensor
    target_pixels: torch.Tensor
    quant: Quantized


def resolve_encoder(cfg: KeyframeTokenizerConfig) -> KeyframeTokenizerConfig:
    """With ``encoder_run`` set: ``cfg`` with the run's encoder config (and its input normalisation, when
    the run records one), so the resolved config rebuilds the tokenizer without the run."""
    if not cfg.encoder_run:
        return cfg
    from vidfm.runs import open_run

    run = open_run(cfg.encoder_run)
    encoder = dataclasses.replace(run.section("encoder", EncoderConfig), drop_path=0.0)
    mean, std = cfg.mean, cfg.std
    if run.has("augment"):
        norm = run.section("augment", AugmentConfig)
        mean, std = tuple(norm.mean), tuple(norm.std)
    return dataclasses.replace(cfg, encoder=encoder, mean=mean, std=std)


class KeyframeTokenizer(nn.Module):
    """uint8 keyframes ``[B, S, S, 3]`` -> token ids ``[B, (S/p)^2]`` -> features and pixels."""

    def __init__(self, cfg: KeyframeTokenizerConfig, load_encoder: bool = True) -> None:
        """Args:
        cfg: see :class:`KeyframeTokenizerConfig` (pass it through :func:`resolve_encoder` first when it
            names an ``encoder_run``).
        load_encoder: load the ``encoder_run`` weights (training); False when the tokenizer's own
            checkpoint, which holds the encoder too, is loaded afterwards.
        """
        super().__init__()
        self.cfg = cfg
        if cfg.features == "efficientnet_lite0":
            if cfg.encoder_run:
                raise ConfigError(
                    "keyframe.encoder_run names a vidfm encoder: set it or features=efficientnet_lite0"
                )
            from vidfm.teachers.efficientnet import efficientnet_teacher

            self.teacher = efficientnet_teacher(cfg.feature_size, cfg.feature_stride)  # Frozen: not saved
            dim = self.teacher.dim
        elif cfg.features == "encoder":
            with own_seed(cfg.encoder_seed):
                self.encoder = VideoEncoder(cfg.encoder)
            if cfg.encoder_run and load_encoder:
                from vidfm.train.checkpoint import load_model_weights

                load_model_weights(cfg.encoder_run, self.encoder, prefix="encoder.")
            self.encoder.requires_grad_(False).eval()  # frozen; saved with the tokenizer: self-contained
            dim = self.encoder.width
        else:
            raise ConfigError(
                f"keyframe.features must be encoder or efficientnet_lite0, not {cfg.features!r}"
            )
        side = cfg.grid_side()
        if side < 1 or cfg.image_size % side:
            raise ConfigError(
                f"keyframe image_size {cfg.image_size} does not split into {side}x{side} patches"
            )
        self.grid, self.patch = (side, side), cfg.image_size // side
        width = cfg.decoder_width
        self.feature_norm = nn.LayerNorm(dim)
        self.encode_task_layer = _task_layer(dim, cfg.quantizer.dim)
        self.quantizer = VectorQuantizer(cfg.quantizer)
        self.dec_in = nn.Linear(cfg.quantizer.dim, width)
        self.register_buffer("dec_pos", sincos_3d((1, side, side), width)[None], persistent=False)
        self.blocks = nn.ModuleList(Block(width, cfg.decoder_heads) for _ in range(cfg.decoder_depth))
        self.dec_norm = nn.LayerNorm(width)
        self.feature_head = nn.Linear(width, dim)
        self.pixel_head = nn.Linear(width, self.patch * self.patch * 3)
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, 3, 1, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> KeyframeTokenizer:
        super().train(mode)
        if self.cfg.features == "encoder":
            self.encoder.eval()  # the frozen encoder never trains (no drop path); a Teacher stays in eval itself
        return self

    @property
    def num_tokens(self) -> int:
        return self.grid[0] * self.grid[1]

    def to_unit(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, S, S, 3]`` -> float ``[B, 3, 1, S, S]`` in [0, 1] (a one-frame clip)."""
        s = self.cfg.image_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (s, s, 3):
            raise ValueError(f"keyframes must be [B, {s}, {s}, 3], got {tuple(images.shape)}")
        return images.permute(0, 3, 1, 2)[:, :, None].float() / 255.0

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, S, S, 3]`` -> normalised float ``[B, 3, 1, S, S]`` (the ViT's input, the pixel target)."""
        return (self.to_unit(images) - self.mean) / self.std

    def encode(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, Quantized]:
        """uint8 keyframes -> (frozen features ``[B, N, D]``, codes)."""
        with torch.no_grad():
            if self.cfg.features == "efficientnet_lite0":
                # the teacher resizes and normalises the [0, 1] clip for itself
                features = self.teacher(self.to_unit(images)).tokens.float()
            else:
                clip = self.normalize(images).expand(-1, -1, self.encoder.cfg.tubelet, -1, -1)
                features = self.encoder(clip).tokens.float()
        z = self.encode_task_layer(self.feature_norm(features))
        return features, self.quantizer(z, generator)

    def decode(self, quantized: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Code vectors ``[B, N, code_dim]`` -> (features ``[B, N, D]``, normalised pixels ``[B, N, p·p·3]``)."""
        x = self.dec_in(quantized) + self.dec_pos.to(quantized.dtype)
        for block in self.blocks:
            x = block(x)
        x = self.dec_norm(x)
        return self.feature_head(x), self.pixel_head(x)

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> KeyframeVQOutput:
        features, quant = self.encode(images, generator)
        pred_features, pred_pixels = self.decode(quant.quantized)
        target = patchify(self.normalize(images), 1, self.patch).flatten(2)  # [B, N, p·p·3]
        return KeyframeVQOutput(features, pred_features, pred_pixels, target, quant)

    @torch.no_grad()
    def tokenize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 keyframes ``[B, S, S, 3]`` -> token ids ``[B, N]`` (row-major patches)."""
        return self.encode(images)[1].indices

    @torch.no_grad()
    def render(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids ``[B, N]`` -> uint8 keyframes ``[B, S, S, 3]`` from the pixel head."""
        if ids.ndim != 2 or ids.shape[1] != self.num_tokens:
            raise ValueError(f"expected ids [B, {self.num_tokens}], got {tuple(ids.shape)}")
        if int(ids.min()) < 0 or int(ids.max()) >= self.cfg.quantizer.num_codes:
            raise ValueError(f"token ids must lie in [0, {self.cfg.quantizer.num_codes})")
        _, pixels = self.decode(self.quantizer.lookup(ids))
        x = unpatchify(pixels, (1, *self.grid), 1, self.patch)  # [B, 3, 1, S, S]
        x = (x * self.std + self.mean).clamp(0, 1)[:, :, 0]
        return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
