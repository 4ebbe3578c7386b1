"""Video-LaVIT's language model (Jin et al., ICML 2024): one causal LM over text, keyframe and motion tokens.

The paper initialises the LLM from LaVIT's Llama-2 7B, extends its vocabulary with the motion codebook
(the visual codebook is LaVIT's), and trains next-token prediction on interleaved video-text data, both as
captioning (tokens -> text) and as generation (text -> tokens). The official training recipe (data mix,
lr, batch, steps, which tokens carry the loss) is withheld. vidfm's choices, each a field:

- ``generation_share = 0.5``: each pair takes the generation order with probability 0.5, else the
  understanding order (LaVIT's random swap of image-text pairs).
- ``loss_on = "all"``: the loss covers every token after ``<bos>``, text and visual alike (LaVIT's unified
  objective); ``"second"`` trains only the conditional part.
- The LM: a local HF folder (``lm.path``, e.g. a Llama-2 checkpoint for the paper's setting) or a fresh
  GPT-2 trained here. The text tokenizer: the HF folder's (``text_path``), or by default a word vocabulary
  built from the training captions and stored in ``words`` (a fresh CPU-scale LM gains nothing from a
  30k-row WordPiece softmax whose rows never occur).
- The tokenizers are frozen runs of the ``motion_vq`` recipe (``motion_run``, ``keyframe_run``); clips are
  tokenized once when the dataset is built.

Tiny mode (``lavit_lm:tiny``): a 4-block GPT-2 of width 128 on digits-motion captions (or ``msrvtt25``).
Command::

    vidfm pretrain --recipe lavit_lm:tiny --set data.manifest=DIGITS/manifest.csv \\
        --set motion_run=runs/mvq --set keyframe_run=runs/kf --set detokenizer_run=runs/detok --out runs/lm
    vidfm caption VIDEO --checkpoint runs/lm
    vidfm generate "a 3 moving to the left" --checkpoint runs/lm --out clip.mp4
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from torch.utils.data import Dataset

from vidfm.lavit.language import VideoLaVIT, joint_vocab
from vidfm.models.lm import CausalLM, HFTokenizer, LMConfig, TextTokenizer, WordTokenizer
from vidfm.recipes.base import Recipe
from vidfm.recipes.common import cpu_lm_train, lm_train, pick_variant
from vidfm.teachers.targets import LIVE, TargetSource
from vidfm.train.config import TrainConfig


@dataclass
class LavitLMData:
    """manifest: a CSV manifest with ``path`` and ``caption`` columns (a video may have several rows, one per
    caption); split: rows of that split (None = all); max_videos: the first N videos only. cache_dir: npz
    cache of prepared clips (empty = ``<manifest folder>/.lavit_cache``, shared with the tokenizer runs);
    workers: processes preparing clips; max_text: caption ids kept per caption."""

    manifest: str = ""
    split: str | None = "train"
    max_videos: int | None = None
    cache_dir: str = ""
    workers: int = 0
    max_text: int = 32


@dataclass
class LavitLMRecipe(Recipe):
    """Everything one LM run needs; written to ``RUN/config.yaml``. ``words`` and the token layout
    (``visual_codes``, ``motion_codes``, ``num_visual``, ``num_motion``) are filled by :meth:`prepare` from
    the training captions and the tokenizer runs, so the run rebuilds its LM without them."""

    recipe: str = "lavit_lm"
    data: LavitLMData = field(default_factory=LavitLMData)
    train: TrainConfig = field(default_factory=lambda: lm_train(20_000, batch_size=64))
    lm: LMConfig = field(default_factory=lambda: LMConfig(width=768, depth=12, heads=12, max_len=1024))
    motion_run: str = ""
    keyframe_run: str = ""
    detokenizer_run: str = ""
    text_path: str = ""
    words: list[str] = field(default_factory=list)
    min_count: int = 1
    generation_share: float = 0.5
    loss_on: Literal["all", "second"] = "all"
    visual_codes: int = 0
    motion_codes: int = 0
    num_visual: int = 0
    num_motion: int = 0

    def text_tokenizer(self) -> TextTokenizer:
        return HFTokenizer(self.text_path) if self.text_path else WordTokenizer(self.words)

    def prepare(self) -> LavitLMRecipe:
        """The word vocabulary and the token layout resolved; the longest sequence checked against the LM."""
        from vidfm.lavit.keyframe import resolve_encoder
        from vidfm.recipes import load_run_config

        if not self.motion_run:
            raise ValueError("lavit_lm needs motion_run: a run folder of motion_vq (stage motion)")
        cfg = self
        if not self.text_path and not self.words:
            captions = [c for caps in _captions(self.data)[1] for c in caps]
            cfg = dataclasses.replace(cfg, words=WordTokenizer.build(captions, self.min_count).words[4:])
        motion = load_run_config(self.motion_run).motion
        cfg = dataclasses.replace(cfg, motion_codes=motion.quantizer.num_codes,
                                  num_motion=math.prod(motion.token_grid()))  # fmt: skip
        if self.keyframe_run:
            kf = resolve_encoder(load_run_config(self.keyframe_run).keyframe)
            side = kf.grid_side()
            cfg = dataclasses.replace(cfg, visual_codes=kf.quantizer.num_codes, num_visual=side * side)
        longest = (
            1 + self.data.max_text + (cfg.num_visual + 2 if cfg.num_visual else 0) + cfg.num_motion + 2 + 1
        )
        if not self.lm.path and longest > self.lm.max_len:
            raise ValueError(f"sequences reach {longest} tokens; lm.max_len is {self.lm.max_len}")
        return cfg

    def vocab_size(self) -> int:
        return joint_vocab(self.text_tokenizer().size, self.visual_codes, self.motion_codes).size

    def build_task(self, targets: TargetSource = LIVE) -> nn.Module:
        from vidfm.tasks.lavit_lm import LavitLMTask

        text = self.text_tokenizer()
        vocab = joint_vocab(text.size, self.visual_codes, self.motion_codes)
        return LavitLMTask(self.lm, vocab, text.bos_id, text.eos_id, text.pad_id, self.generation_share,
                           self.loss_on)  # fmt: skip

    def training_data(self, seed: int) -> tuple[Dataset, None]:
        """Caption/clip pairs; items are batched by torch's default collate."""
        return self.build_dataset(seed=seed), None

    def build_dataset(self, seed: int = 0, split: str | None = None) -> Dataset:
        """Caption/clip pairs of ``data`` (``split`` overrides ``data.split``), tokenized by the frozen runs."""
        from vidfm.lavit.dataset import ClipDataset
        from vidfm.lavit.pairs import CaptionPairs, tokenize_clips
        from vidfm.lavit.tokenize import load_tokenizers

        data = self.data if split is None else dataclasses.replace(self.data, split=split)
        paths, captions = _captions(data)
        tok = load_tokenizers(self.motion_run, self.keyframe_run)
        cache = data.cache_dir or str(Path(data.manifest).resolve().parent / ".lavit_cache")
        clips = ClipDataset(paths, tok.clips, tok.grid, cache, data.workers)
        visual, motion = tokenize_clips(clips, tok)
        return CaptionPairs(visual, motion, clips.video, captions, self.text_tokenizer(), data.max_text)


def _captions(data: LavitLMData) -> tuple[list[str], list[list[str]]]:
    """Unique video paths of the manifest and each one's captions."""
    from vidfm.data.datasets import read_manifest

    if not data.manifest.endswith(".csv"):
        raise ValueError(f"data.manifest must be a CSV manifest with a caption column, not {data.manifest!r}")
    by_path: dict[str, list[str]] = {}
    for r in read_manifest(data.manifest, split=data.split, label_columns=[]):
        if r.caption:
            by_path.setdefault(r.path, []).append(r.caption)
    if not by_path:
        raise ValueError(f"{data.manifest} has no captioned rows in split {data.split!r}")
    paths = list(by_path)[: data.max_videos]
    return paths, [by_path[p] for p in paths]


def load_video_lavit(
    run_dir: str | Path, device: str | torch.device = "cpu"
) -> tuple[VideoLaVIT, LavitLMRecipe]:
    """The trained LM of a ``lavit_lm`` run (latest checkpoint), ready to caption and generate."""
    from vidfm.errors import RunFolderError
    from vidfm.recipes import load_run_config
    from vidfm.train.checkpoint import load_model_weights

    cfg = load_run_config(run_dir)
    if not isinstance(cfg, LavitLMRecipe):
        raise RunFolderError(f"{run_dir} is a {cfg.recipe} run, not a lavit_lm run")
    text = cfg.text_tokenizer()
    vocab = joint_vocab(text.size, cfg.visual_codes, cfg.motion_codes)
    lm = CausalLM(cfg.lm, vocab.size)
    load_model_weights(run_dir, lm, prefix="lm.")
    return VideoLaVIT(lm.to(device).eval(), vocab, text, cfg.num_visual, cfg.num_motion), cfg


def config(variant: str = "") -> LavitLMRecipe:
    """``""``: a GPT-2-small-sized LM (set ``lm.path`` to a local Llama-2 folder for the paper's setting);
    ``tiny``: the digits-motion scale (see :func:`tiny`)."""
    return pick_variant("lavit_lm", variant, {"": LavitLMRecipe, "tiny": tiny})


def tiny() -> LavitLMRecipe:
    """A 4-block GPT-2 of width 128 (0.8M parameters plus the vocabulary rows), 128 positions, batch 32,
    lr 1e-3 (nanoGPT's small-model rate), 600 steps: a few CPU minutes on digits-motion."""
    return LavitLMRecipe(
        train=cpu_lm_train(600, warmup_steps=30, workers=0),
        lm=LMConfig(width=128, depth=4, heads=4, max_len=128, dropout=0.1),
        data=LavitLMData(max_text=24),
    )
