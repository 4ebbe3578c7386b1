"""A causal language model over text and visual codebooks: HF transformers' ``AutoModelForCausalLM`` with an
extended vocabulary, optional prefix embeddings, next-token loss and constrained sampling.

Video-LaVIT (``../shared/PAPERS.md`` §5) puts a 7B Llama-2 over text, keyframe tokens and motion tokens:
the codebooks become new rows of the LLM's vocabulary and a clip is the span
``<visual> v… </visual> <motion> m… </motion>``. The same wrapper serves any model that either reads
discrete visual tokens (extra vocabulary) or continuous ones (``prefix`` embeddings from a projector).

The model comes from a local HF folder (``LMConfig.path``, loaded with ``AutoModelForCausalLM``) or, for
the CPU scale, from a small GPT-2 config trained from scratch. The text tokenizer is either an HF
tokenizer from a folder or :class:`WordTokenizer`, a word-level vocabulary built from the training
captions: a from-scratch LM on a CPU should not pay for a 30k-row softmax whose rows never occur, and
whole words make "did it say the right digit" a direct token comparison.

Vocabulary layout (:class:`JointVocab`): text ids ``[0, text_size)``, then the markers, then each
codebook's ids in turn; a codebook id ``i`` of ``visual`` becomes ``offset("visual") + i``.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
_WORD = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


# ----------------------------------------------------------------------------- text tokenizers
class TextTokenizer(Protocol):
    """What the LM needs from a text tokenizer."""

    size: int
    pad_id: int
    bos_id: int
    eos_id: int

    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: list[int]) -> str: ...


class WordTokenizer:
    """Lower-cased words and single punctuation marks; ``<pad> <bos> <eos> <unk>`` are ids 0-3.

    Args:
        words: the vocabulary after the four specials, in id order (:meth:`build` makes one).
    """

    def __init__(self, words: list[str] | tuple[str, ...]) -> None:
        self.words = [PAD, BOS, EOS, UNK, *(w for w in words if w not in (PAD, BOS, EOS, UNK))]
        self.index = {w: i for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("WordTokenizer words must be unique")
        self.size, self.pad_id, self.bos_id, self.eos_id, self.unk_id = len(self.words), 0, 1, 2, 3

    @staticmethod
    def split(text: str) -> list[str]:
        return _WORD.findall(text.lower())

    @classmethod
    def build(cls, texts: list[str], min_count: int = 1) -> WordTokenizer:
        """Words seen at least ``min_count`` times in ``texts``, most frequent first (ties alphabetical)."""
        counts: dict[str, int] = {}
        for t in texts:
            for w in cls.split(t):
                counts[w] = counts.get(w, 0) + 1
        keep = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls(keep)

    def encode(self, text: str) -> list[int]:
        return [self.index.get(w, self.unk_id) for w in self.split(text)]

    def decode(self, ids: list[int]) -> str:
        return " ".join(self.words[i] for i in ids if 3 <= i < self.size or i == self.unk_id)


class HFTokenizer:
    """An HF tokenizer from a local folder (e.g. the packaged MiniLM's BERT WordPiece vocabulary), with
    BOS/EOS taken from its CLS/SEP tokens when it has no BOS/EOS of its own."""

    def __init__(self, path: str | Path) -> None:
        from transformers import AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(str(path))
        t = self.tok
        self.bos_id = t.bos_token_id if t.bos_token_id is not None else t.cls_token_id
        self.eos_id = t.eos_token_id if t.eos_token_id is not None else t.sep_token_id
        self.pad_id = t.pad_token_id if t.pad_token_id is not None else self.eos_id
        if self.bos_id is None or self.eos_id is None:
            raise ValueError(f"the tokenizer in {path} has neither BOS/EOS nor CLS/SEP tokens")
        self.size = len(t)

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False)

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True)


# ----------------------------------------------------------------------------- joint vocabulary
@dataclass(frozen=True)
class JointVocab:
    """Text ids, then ``markers``, then the ``codebooks`` (name, size) in order."""

    text_size: int
    markers: tuple[str, ...]
    codebooks: tuple[tuple[str, int], ...]

    @property
    def size(self) -> int:
        return self.text_size + len(self.markers) + sum(n for _, n in self.codebooks)

    def marker(self, name: str) -> int:
        if name not in self.markers:
            raise KeyError(f"no marker {name!r}; markers: {self.markers}")
        return self.text_size + self.markers.index(name)

    def span(self, codebook: str) -> tuple[int, int]:
        """``[start, end)`` of a codebook's ids in the joint vocabulary."""
        start = self.text_size + len(self.markers)
        for name, n in self.codebooks:
            if name == codebook:
                return start, start + n
            start += n
        raise KeyError(f"no codebook {codebook!r}; codebooks: {[n for n, _ in self.codebooks]}")

    def encode(self, codebook: str, ids: torch.Tensor) -> torch.Tensor:
        start, end = self.span(codebook)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= end - start):
            raise ValueError(f"{codebook} ids must lie in [0, {end - start})")
        return ids + start

    def decode(self, codebook: str, ids: torch.Tensor) -> torch.Tensor:
        start, end = self.span(codebook)
        if ids.numel() and (int(ids.min()) < start or int(ids.max()) >= end):
            raise ValueError(f"ids outside the {codebook} codebook [{start}, {end})")
        return ids - start

    def allowed(self, *parts: str | int) -> torch.Tensor:
        """Bool ``[size]``: True on the named codebooks (``"text"`` = all text ids), markers and plain ids."""
        out = torch.zeros(self.size, dtype=torch.bool)
        for p in parts:
            if isinstance(p, int):
                out[p] = True
            elif p == "text":
                out[: self.text_size] = True
            elif p in self.markers:
                out[self.marker(p)] = True
            else:
                out[slice(*self.span(p))] = True
        return out


# ----------------------------------------------------------------------------- the model
@dataclass
class LMConfig:
    """path: a local HF causal-LM folder ("" = a fresh GPT-2 of the sizes below). width, depth, heads,
    max_len: that GPT-2 (embedding width, blocks, heads, positions). dropout: its residual/attention/embedding
    dropout."""

    path: str = ""
    width: int = 128
    depth: int = 4
    heads: int = 4
    max_len: int = 256
    dropout: float = 0.0


class CausalLM(nn.Module):
    """A causal LM over ``vocab_size`` ids (the loaded model's embeddings are resized to it when larger).

    Args:
        cfg: see :class:`LMConfig`.
        vocab_size: the joint vocabulary size (text + markers + codebooks).
    """

    def __init__(self, cfg: LMConfig, vocab_size: int) -> None:
        super().__init__()
        from transformers import AutoModelForCausalLM, GPT2Config

        self.cfg = cfg
        if cfg.path:
            self.model = AutoModelForCausalLM.from_pretrained(cfg.path)
            if self.model.get_input_embeddings().num_embeddings < vocab_size:
                # New rows (codebooks, markers) start at the mean of the old ones, as common practice for
                # added tokens, so the first logits stay in the pretrained range.
                self.model.resize_token_embeddings(vocab_size, mean_resizing=True)
        else:
            d = cfg.dropout
            hf = GPT2Config(
                vocab_size=vocab_size, n_positions=cfg.max_len, n_embd=cfg.width, n_layer=cfg.depth,
                n_head=cfg.heads, resid_pdrop=d, embd_pdrop=d, attn_pdrop=d, bos_token_id=None,
                eos_token_id=None,
            )  # fmt: skip
            self.model = AutoModelForCausalLM.from_config(hf)
        self.vocab_size = vocab_size
        # transformers 5 renamed the KV-cache argument ``past_key_values`` -> ``cache`` (the old name warns,
        # then goes); read which one this version's forward takes.
        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

    @property
    def width(self) -> int:
        """Embedding width: what a prefix projector must output."""
        return self.model.get_input_embeddings().embedding_dim

    def forward(
        self, ids: torch.Tensor, mask: torch.Tensor | None = None, prefix: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits ``[B, P + L, V]`` for ids ``[B, L]`` (mask ``[B, L]``, 1 = real token) after optional
        prefix embeddings ``[B, P, width]`` (always attended)."""
        if int(ids.max()) >= self.vocab_size or int(ids.min()) < 0:
            raise ValueError(f"token ids must lie in [0, {self.vocab_size})")
        emb = self.model.get_input_embeddings()(ids)
        if mask is None:
            mask = torch.ones_like(ids)
        if prefix is not None:
            emb = torch.cat([prefix.to(emb.dtype), emb], dim=1)
            mask = torch.cat([mask.new_ones(prefix.shape[:2]), mask], dim=1)
        return self.model(inputs_embeds=emb, attention_mask=mask, use_cache=False).logits

    def loss(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        target: torch.Tensor | None = None,
        prefix: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean next-token cross-entropy over positions ``1..L-1`` of ``ids [B, L]`` where ``target`` (bool
        ``[B, L]``, default ``mask``) marks the predicted tokens; the prefix is context only."""
        logits = self(ids, mask, prefix)[:, -ids.shape[1] :]  # [B, L, V]
        target = mask.bool() if target is None else target & mask.bool()
        labels = ids.masked_fill(~target, -100)[:, 1:]
        return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels.flatten(), ignore_index=-100)

    @torch.no_grad()
    def sample(
        self,
        prompt: torch.Tensor,
        steps: int,
        allowed: torch.Tensor | None = None,
        temperature: float = 1.0,
        top_k: int = 0,
        stop_id: int | None = None,
        prefix: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Continue ``prompt [B, L]`` (no padding) by up to ``steps`` tokens -> ``[B, L + n]``.

        allowed: bool ``[V]`` or per step ``[steps, V]``: logits elsewhere are masked (constrained decoding,
        e.g. exactly N motion tokens after ``<motion>``). temperature 0 = greedy; top_k > 0 keeps the k
        best. Generation stops once every row has emitted ``stop_id`` (later tokens of a stopped row are
        ``stop_id``).
        """
        if temperature < 0:
            raise ValueError("temperature must be >= 0")
        if allowed is not None and allowed.ndim == 1:
            allowed = allowed.expand(steps, -1)
        from transformers import DynamicCache

        emb = self.model.get_input_embeddings()(prompt)
        if prefix is not None:
            emb = torch.cat([prefix.to(emb.dtype), emb], dim=1)
        cache = DynamicCache()  # filled in place by each call: the keys and values of all earlier positions
        logits = self.model(inputs_embeds=emb, use_cache=True, **{self._cache_kw: cache}).logits[:, -1]
        seq, done = prompt, torch.zeros(len(prompt), dtype=torch.bool, device=prompt.device)
        for i in range(steps):
            logits = logits.float()
            if allowed is not None:
                logits = logits.masked_fill(~allowed[i].to(logits.device), float("-inf"))
            nxt = _pick(logits, temperature, top_k, generator)
            if stop_id is not None:
                nxt = nxt.masked_fill(done, stop_id)
                done = done | (nxt == stop_id)
            seq = torch.cat([seq, nxt[:, None]], dim=1)
            if stop_id is not None and bool(done.all()):
                break
            out = self.model(input_ids=nxt[:, None], use_cache=True, **{self._cache_kw: cache})
            logits = out.logits[:, -1]
        return seq

    def save_pretrained(self, path: str | Path) -> None:
        """The HF model folder (config.json + safetensors), loadable as ``LMConfig(path=...)``."""
        self.model.save_pretrained(str(path))


def _pick(
    logits: torch.Tensor, temperature: float, top_k: int, generator: torch.Generator | None
) -> torch.Tensor:
    """One id per row of ``logits [B, V]``."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k > 0:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]
