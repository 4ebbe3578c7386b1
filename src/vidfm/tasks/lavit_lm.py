"""Video-LaVIT language-model step: next-token loss on caption/clip pairs written in a random order.

Each pair becomes the generation order (caption, then the clip's tokens) or the understanding order (clip,
then caption); the order is drawn per sample from the step's generator (:mod:`vidfm.lavit.language`).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from vidfm.lavit.language import pair_sequence, video_span
from vidfm.models.lm import CausalLM, JointVocab, LMConfig

LossOn = Literal["all", "second"]


class LavitLMTask(nn.Module):
    """batch: ``visual [B, Nv]`` (absent without keyframe tokens), ``motion [B, Nm]`` codebook ids, ``text``
    ``[B, Lt]`` caption ids padded with ``pad_id``, ``text_len [B]``.

    Args:
        lm: the LM config. vocab: the joint vocabulary. bos_id, eos_id, pad_id: text special ids.
        generation_share: probability of the generation order (caption first).
        loss_on: ``"all"``: every token after ``<bos>`` is predicted (LaVIT's unified objective over text and
            visual tokens); ``"second"``: only the second segment and ``<eos>`` (a conditional model).
    """

    def __init__(
        self,
        lm: LMConfig,
        vocab: JointVocab,
        bos_id: int,
        eos_id: int,
        pad_id: int,
        generation_share: float = 0.5,
        loss_on: LossOn = "all",
    ) -> None:
        super().__init__()
        if loss_on not in ("all", "second"):
            raise ValueError(f"loss_on must be 'all' or 'second', not {loss_on!r}")
        self.lm = CausalLM(lm, vocab.size)
        self.vocab = vocab
        self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id
        self.generation_share, self.loss_on = generation_share, loss_on

    def sequences(
        self, batch: dict, generation: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(ids [B, L], mask [B, L], target [B, L])`` for the batch with per-sample order ``generation [B]``."""
        motion, text, lengths = batch["motion"], batch["text"], batch["text_len"]
        visual = batch.get("visual")
        rows, starts = [], []
        for i in range(len(motion)):
            span = video_span(self.vocab, None if visual is None else visual[i], motion[i])
            ids, start = pair_sequence(text[i, : int(lengths[i])], span, self.bos_id, self.eos_id,
                                       bool(generation[i]))  # fmt: skip
            rows.append(ids)
            starts.append(start)
        n = max(len(r) for r in rows)
        ids = torch.full((len(rows), n), self.pad_id, dtype=torch.long, device=motion.device)
        mask = torch.zeros_like(ids, dtype=torch.bool)
        target = torch.zeros_like(mask)
        for i, (r, s) in enumerate(zip(rows, starts, strict=True)):
            ids[i, : len(r)], mask[i, : len(r)] = r, True
            target[i, (1 if self.loss_on == "all" else s) : len(r)] = True
        return ids, mask, target

    def forward(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        b, dev = len(batch["motion"]), batch["motion"].device
        generation = torch.rand(b, generator=generator, device=dev) < self.generation_share
        ids, mask, target = self.sequences(batch, generation)
        loss = self.lm.loss(ids, mask, target)
        return {"loss": loss, "tokens": mask.sum().float() / b}
