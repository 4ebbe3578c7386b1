"""Caption/clip pairs for the Video-LaVIT LM: every clip of a captioned manifest, tokenized once by frozen
tokenizers, paired with each caption of its video."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from vidfm.lavit.dataset import ClipDataset
from vidfm.lavit.tokenize import Tokenizers
from vidfm.models.lm import TextTokenizer


@torch.no_grad()
def tokenize_clips(
    clips: ClipDataset, tok: Tokenizers, batch_size: int = 64
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Codebook ids of every clip: ``(visual [N, Nv] or None without a keyframe tokenizer, motion [N, Nm])``."""
    device = next(tok.motion.parameters()).device
    visual, motion = [], []
    for s in range(0, len(clips), batch_size):
        idx = range(s, min(s + batch_size, len(clips)))
        motion.append(tok.motion.tokenize(clips.motion[idx.start : idx.stop].to(device)).cpu())
        if tok.keyframe is not None:  # keyframes prepared at the tokenizer's size (``tok.clips``)
            visual.append(tok.keyframe.tokenize(clips.keyframe[idx.start : idx.stop].to(device)).cpu())
    return (torch.cat(visual) if visual else None), torch.cat(motion)


class CaptionPairs(Dataset):
    """One item per (clip, caption of its video): ``motion [Nm]``, ``visual [Nv]`` (when present), ``text``
    ``[max_text]`` caption ids padded with the tokenizer's pad id, ``text_len``, ``clip`` (its index).

    Args:
        visual, motion: codebook ids per clip (:func:`tokenize_clips`). clip_video ``[N]``: each clip's video.
        captions: per video, its captions. text: the tokenizer. max_text: captions are cut to this many ids.
    """

    def __init__(
        self,
        visual: torch.Tensor | None,
        motion: torch.Tensor,
        clip_video: torch.Tensor,
        captions: list[list[str]],
        text: TextTokenizer,
        max_text: int = 32,
    ) -> None:
        self.visual, self.motion = visual, motion
        self.pairs: list[tuple[int, list[int]]] = []
        for c, v in enumerate(clip_video.tolist()):
            for cap in captions[v]:
                ids = text.encode(cap)[:max_text]
                if ids:
                    self.pairs.append((c, ids))
        if not self.pairs:
            raise ValueError("no clip has a non-empty caption")
        self.max_text, self.pad_id = max(len(ids) for _, ids in self.pairs), text.pad_id

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        c, ids = self.pairs[i]
        text = torch.full((self.max_text,), self.pad_id, dtype=torch.long)
        text[: len(ids)] = torch.tensor(ids)
        item = {
            "motion": self.motion[c],
            "text": text,
            "text_len": torch.tensor(len(ids)),
            "clip": torch.tensor(c),
        }
        if self.visual is not None:
            item["visual"] = self.visual[c]
        return item
