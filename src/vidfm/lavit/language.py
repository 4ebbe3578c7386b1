"""Video-LaVIT's unified language model: one causal LM reads and writes text, keyframe tokens and motion tokens.

Video-LaVIT extends a Llama-2 vocabulary with the visual and motion codebooks and trains it with next-token
prediction on interleaved sequences; a clip is ``<visual> v… </visual> <motion> m… </motion>``
(:func:`vidfm.lavit.tokenize.sequence`). A video-caption pair is written in one of two orders:

- generation: ``<bos> caption <visual> v… </visual> <motion> m… </motion> <eos>``
- understanding: ``<bos> <visual> v… </visual> <motion> m… </motion> caption <eos>``

The paper trains on both orders of its pairs (LaVIT swaps the order of image-text pairs at random); the
official training recipe is withheld, so the share of each order and which tokens carry the loss are this
module's callers' choices (see :mod:`vidfm.recipes.lavit_lm`).

:class:`VideoLaVIT` is the inference side: text -> tokens with constrained sampling (exactly the layout the
tokenizers emit), tokens -> caption.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vidfm.errors import UserError
from vidfm.lavit.tokenize import SPECIAL
from vidfm.models.lm import CausalLM, JointVocab, TextTokenizer


def joint_vocab(text_size: int, visual_codes: int, motion_codes: int) -> JointVocab:
    """Text ids, the four span markers, then the keyframe codebook (absent when 0) and the motion codebook."""
    books = ((("visual", visual_codes),) if visual_codes else ()) + (("motion", motion_codes),)
    return JointVocab(text_size, SPECIAL, books)


def video_span(vocab: JointVocab, visual: torch.Tensor | None, motion: torch.Tensor) -> torch.Tensor:
    """One clip's joint ids: ``<visual> v… </visual> <motion> m… </motion>`` (no visual span without
    ``visual``); visual ``[Nv]`` and motion ``[Nm]`` are codebook ids."""
    parts = []
    if visual is not None:
        v = vocab.encode("visual", visual)
        parts += [v.new_tensor([vocab.marker("<visual>")]), v, v.new_tensor([vocab.marker("</visual>")])]
    m = vocab.encode("motion", motion)
    parts += [m.new_tensor([vocab.marker("<motion>")]), m, m.new_tensor([vocab.marker("</motion>")])]
    return torch.cat(parts)


def pair_sequence(
    text: torch.Tensor, span: torch.Tensor, bos: int, eos: int, generation: bool
) -> tuple[torch.Tensor, int]:
    """``(ids [L], start)``: a caption's ids and a clip's span in one order; ``start`` is where the second
    segment begins (the part a conditional model predicts)."""
    first, second = (text, span) if generation else (span, text)
    ids = torch.cat([text.new_tensor([bos]), first, second, text.new_tensor([eos])])
    return ids, 1 + len(first)


class PromptError(UserError, ValueError):
    """A caption to generate from that the LM's text tokenizer cannot read (no word it knows)."""


@dataclass
class VideoLaVIT:
    """A trained LM with its vocabulary and text tokenizer; num_visual / num_motion: tokens per clip
    (num_visual 0: the clips carry motion tokens only)."""

    lm: CausalLM
    vocab: JointVocab
    text: TextTokenizer
    num_visual: int
    num_motion: int

    def _device(self) -> torch.device:
        return next(self.lm.parameters()).device

    def _layout(self) -> torch.Tensor:
        """Bool ``[n, V]``: what each generated position after the caption may be (the fixed clip layout)."""
        v = self.vocab
        steps = []
        if self.num_visual:
            steps += (
                [v.allowed("<visual>")] + [v.allowed("visual")] * self.num_visual + [v.allowed("</visual>")]
            )
        steps += [v.allowed("<motion>")] + [v.allowed("motion")] * self.num_motion + [v.allowed("</motion>")]
        return torch.stack(steps)

    @torch.no_grad()
    def generate(
        self,
        captions: str | list[str],
        n: int = 1,
        temperature: float = 1.0,
        top_k: int = 0,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Text -> ``(visual [C·n, Nv] or None, motion [C·n, Nm])`` codebook ids sampled under the clip
        layout, ``n`` consecutive rows per caption; captions of equal token length share one batch."""
        captions = [captions] if isinstance(captions, str) else list(captions)
        encoded = [self.text.encode(c) for c in captions]
        for c, words in zip(captions, encoded, strict=True):
            if not words:
                raise PromptError(f"the caption {c!r} has no words the tokenizer knows")
        dev, layout = self._device(), self._layout()
        out = torch.zeros(len(captions), n, len(layout), dtype=torch.long, device=dev)
        for length in sorted({len(w) for w in encoded}):
            rows = [i for i, w in enumerate(encoded) if len(w) == length]
            prompt = torch.tensor(
                [[self.text.bos_id, *encoded[i]] for i in rows for _ in range(n)], device=dev
            )
            seq = self.lm.sample(prompt, len(layout), layout, temperature, top_k, generator=generator)
            out[rows] = seq[:, prompt.shape[1] :].reshape(len(rows), n, -1)
        new = out.flatten(0, 1)
        visual = None
        if self.num_visual:
            visual = self.vocab.decode("visual", new[:, 1 : 1 + self.num_visual])
            new = new[:, self.num_visual + 2 :]
        return visual, self.vocab.decode("motion", new[:, 1 : 1 + self.num_motion])

    @torch.no_grad()
    def caption(
        self,
        visual: torch.Tensor | None,
        motion: torch.Tensor,
        max_len: int = 32,
        temperature: float = 0.0,
        top_k: int = 0,
        generator: torch.Generator | None = None,
    ) -> list[str]:
        """Codebook ids ``visual [B, Nv]`` (None without keyframe tokens) and ``motion [B, Nm]`` -> captions
        (greedy at temperature 0), decoding text ids only until ``<eos>``."""
        if (visual is None) != (self.num_visual == 0):
            raise ValueError(f"this model reads {self.num_visual} visual tokens per clip")
        dev = self._device()
        rows = [
            video_span(self.vocab, None if visual is None else visual[i].to(dev), motion[i].to(dev))
            for i in range(len(motion))
        ]
        prompt = torch.stack([torch.cat([r.new_tensor([self.text.bos_id]), r]) for r in rows])
        allowed = self.vocab.allowed("text")
        allowed[[self.text.pad_id, self.text.bos_id]] = False
        seq = self.lm.sample(
            prompt, max_len, allowed, temperature, top_k, self.text.eos_id, generator=generator
        )
        return [self.text.decode(s[prompt.shape[1] :].tolist()) for s in seq]

    @torch.no_grad()
    def prior_captions(
        self, n: int, max_len: int = 32, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> list[str]:
        """Captions from ``<bos>`` alone: the first segment of the generation order, so the LM's text-only
        prior p(caption), with no video tokens in context."""
        # In that order the caption ends where the clip's first marker starts.
        end = self.vocab.marker("<visual>" if self.num_visual else "<motion>")
        prompt = torch.full((n, 1), self.text.bos_id, device=self._device())
        allowed = self.vocab.allowed("text", end)
        allowed[[self.text.pad_id, self.text.bos_id, self.text.eos_id]] = False
        seq = self.lm.sample(prompt, max_len, allowed, temperature, 0, end, generator=generator)
        return [self.text.decode([i for i in s[1:].tolist() if i != end]) for s in seq]
