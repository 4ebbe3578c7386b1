"""InternVideo2 stage 3: the video encoder as the eyes of a causal language model.

Paper §3.3 (VideoChat2-style instruction tuning): the frozen video encoder's tokens pass a Q-Former/projector
into the LLM's embedding space and the LLM is trained with next-token prediction on (video, instruction,
answer) triples; only the answer carries the loss. Here the projector is
:class:`~vidfm.models.heads.VideoProjector` and the LM is :class:`~vidfm.models.lm.CausalLM` (a local HF
``AutoModelForCausalLM`` folder or a fresh GPT-2). Sequence: ``[video soft tokens] <bos> instruction answer
<eos>``; the loss covers ``answer <eos>``.

Without an encoder (``encoder=None``) the same LM sees the instruction alone: the text-only control that says
how much of an answer the question itself gives away.
"""

from __future__ import annotations

import torch
from torch import nn

from vidfm.data.transforms import AugmentConfig, VideoAugment
from vidfm.layers.frozen import FrozenModule
from vidfm.models.heads import VideoProjector
from vidfm.models.lm import CausalLM, LMConfig, TextTokenizer


class VideoLMTask(nn.Module):
    """batch: ``video`` uint8 [B,T,H,W,C], ``instruction`` and ``answer`` (lists of B strings).

    Args:
        lm: the LM config. text: the text tokenizer (its ids are the LM's vocabulary).
        encoder: the video encoder, held frozen (its weights come from its own run, never from this task's
            checkpoint), or None for the text-only LM.
        augment: the encoder's crop and normalisation (its run's); clips are centre-cropped (``train=False``)
            so training and answering see the same view.
        num_queries, heads: the projector's soft tokens and attention heads.
        max_text: instruction + answer ids kept per sample.
    """

    def __init__(
        self,
        lm: LMConfig,
        text: TextTokenizer,
        encoder: nn.Module | None,
        augment: AugmentConfig | None,
        num_queries: int = 8,
        heads: int = 4,
        max_text: int = 32,
    ) -> None:
        super().__init__()
        self.text, self.max_text = text, max_text
        self.lm = CausalLM(lm, text.size)
        self.encoder: nn.Module | None = None
        if encoder is not None:
            if augment is None:
                raise ValueError("a video LM needs the encoder's augment config (crop and normalisation)")
            self.encoder = FrozenModule(encoder)
            self.augment = VideoAugment(augment)
            self.projector = VideoProjector(int(encoder.width), self.lm.width, num_queries, heads)

    def no_weight_decay(self) -> set[str]:
        if self.encoder is None:
            return set()
        return {f"projector.{n}" for n in self.projector.no_weight_decay()}

    def prefix(self, video: torch.Tensor | None) -> torch.Tensor | None:
        """uint8 clips [B,T,H,W,C] -> soft tokens [B,Q,width], or None for the text-only LM."""
        if self.encoder is None or video is None:
            return None
        with torch.no_grad():
            x = self.augment.normalize(self.augment(video, train=False))  # [B,C,T,S,S], the centre crop
            out = self.encoder(x)
            tokens = out.tokens if out.cls is None else torch.cat([out.cls[:, None], out.tokens], dim=1)
        return self.projector(tokens)

    def sequences(
        self, instructions: list[str], answers: list[str], device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``<bos> instruction answer <eos>`` right-padded -> (ids [B,L], mask [B,L], target [B,L]: the answer
        and ``<eos>``)."""
        rows, starts = [], []
        for q, a in zip(instructions, answers, strict=True):
            q_ids, a_ids = self.text.encode(q), self.text.encode(a)
            ids = ([self.text.bos_id] + q_ids + a_ids)[: self.max_text] + [self.text.eos_id]
            rows.append(ids)
            starts.append(min(1 + len(q_ids), len(ids) - 1))
        n = max(len(r) for r in rows)
        ids = torch.full((len(rows), n), self.text.pad_id, dtype=torch.long, device=device)
        mask = torch.zeros_like(ids, dtype=torch.bool)
        target = torch.zeros_like(mask)
        for i, (r, s) in enumerate(zip(rows, starts, strict=True)):
            ids[i, : len(r)] = torch.tensor(r, device=device)
            mask[i, : len(r)] = True
            target[i, s : len(r)] = True
        return ids, mask, target

    def forward(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        video = batch["video"]
        ids, mask, target = self.sequences(batch["instruction"], batch["answer"], video.device)
        loss = self.lm.loss(ids, mask, target, prefix=self.prefix(video))
        return {"loss": loss}

    @torch.no_grad()
    def answer(self, video: torch.Tensor | None, question: str, max_new: int = 8) -> list[str]:
        """Greedy answers to one ``question`` about each clip of ``video`` uint8 [B,T,H,W,C] (None: one answer
        of the text-only LM)."""
        b = 1 if video is None else video.shape[0]
        device = next(self.lm.parameters()).device
        prompt = torch.tensor([[self.text.bos_id, *self.text.encode(question)]] * b, device=device)
        prefix = self.prefix(None if video is None else video.to(device))
        seq = self.lm.sample(prompt, max_new, temperature=0.0, stop_id=self.text.eos_id, prefix=prefix)
        out = []
        for row in seq[:, prompt.shape[1] :].tolist():
            row = row[: row.index(self.text.eos_id)] if self.text.eos_id in row else row
            out.append(self.text.decode(row))
        return out
