"""Building blocks shared by every encoder, decoder and teacher."""

from vidfm.layers.attention import Attention
from vidfm.layers.block import Block, DropPath, LayerScale, Mlp, make_norm
from vidfm.layers.patch_embed import PatchEmbed3D
from vidfm.layers.pos_embed import sincos_1d, sincos_3d

__all__ = [
    "Attention",
    "Block",
    "DropPath",
    "LayerScale",
    "Mlp",
    "PatchEmbed3D",
    "make_norm",
    "sincos_1d",
    "sincos_3d",
]
