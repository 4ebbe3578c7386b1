"""InternVideo2, stage 3 (Wang et al., ECCV 2024, §3.3): a trained video encoder connected to a causal LM and
instruction-tuned with next-token loss on (video, instruction, answer) (:mod:`vidfm.tasks.internvideo2_stage3`).

The paper follows VideoChat2: a Q-Former and a linear layer bring the frozen encoder's tokens into a 7B LLM
(Mistral/Vicuna) tuned on video instruction data. Here: the encoder of any vidfm run (``encoder_run``: an
``internvideo2`` stage-1 run, or any other pre-training run), frozen; a one-layer query projector
(:class:`~vidfm.models.heads.VideoProjector`); the LM from a local HF ``AutoModelForCausalLM`` folder
(``lm.path``, with its tokenizer in ``text_path``) or a fresh GPT-2 with a word vocabulary built from the
questions and answers (``words``, filled by :meth:`prepare`). Instructions come from the manifest's label
columns (``questions``: column -> question; :class:`vidfm.data.qa.QADataset`); the answer is the row's value.

Commands::

    vidfm pretrain --recipe internvideo2_stage3:tiny --set data.manifest=M --set encoder_run=runs/iv2 \\
        --out runs/iv2_chat
    vidfm chat VIDEO --checkpoint runs/iv2_chat "how does the digit move?"

``internvideo2_stage3:text`` is the same LM without video tokens (no encoder), the control every answer
accuracy is read against.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from vidfm.data.config import DataConfig
from vidfm.data.qa import DIGITS_QUESTIONS
from vidfm.errors import ConfigError
from vidfm.models.lm import HFTokenizer, LMConfig, TextTokenizer, WordTokenizer
from vidfm.recipes.base import Recipe
from vidfm.recipes.common import cpu_lm_train, lm_train, pick_variant
from vidfm.teachers.targets import LIVE, TargetSource
from vidfm.train.config import TrainConfig


@dataclass
class InternVideo2Stage3Recipe(Recipe):
    """Everything one stage-3 run needs; written to ``RUN/config.yaml``.

    encoder_run: the run whose encoder (latest checkpoint) sees the clips; its ``augment`` section gives the
    crop and normalisation. video_tokens: False = the text-only LM (``encoder_run`` unused). questions:
    label column -> question. words: the word vocabulary (filled from the questions and the manifest's
    answers). text_path: an HF tokenizer folder instead (with ``lm.path``). num_queries, projector_heads: the
    projector. max_text: instruction + answer ids per sample.
    """

    recipe: str = "internvideo2_stage3"
    encoder_run: str = ""
    video_tokens: bool = True
    data: DataConfig = field(
        default_factory=lambda: DataConfig(sampling="segment", num_frames=8, short_side=256)
    )
    questions: dict[str, str] = field(default_factory=lambda: dict(DIGITS_QUESTIONS))
    lm: LMConfig = field(default_factory=lambda: LMConfig(width=768, depth=12, heads=12, max_len=512))
    text_path: str = ""
    words: list[str] = field(default_factory=list)
    num_queries: int = 32
    projector_heads: int = 8
    max_text: int = 32
    train: TrainConfig = field(default_factory=lambda: lm_train(10_000, batch_size=32))

    def text_tokenizer(self) -> TextTokenizer:
        return HFTokenizer(self.text_path) if self.text_path else WordTokenizer(self.words)

    def prepare(self) -> InternVideo2Stage3Recipe:
        """Checks the encoder run and fills ``words`` from the questions and the manifest's answers."""
        if self.video_tokens and not self.encoder_run:
            raise ConfigError(
                "encoder_run is not set: give the run whose encoder sees the clips (--set encoder_run=RUN), "
                "or --set video_tokens=false for the text-only LM"
            )
        if not self.questions:
            raise ConfigError("questions is empty: give label column -> question pairs")
        if self.text_path or self.words:
            return self
        if not self.data.manifest.endswith(".csv"):
            raise ConfigError(
                f"data.manifest must be a CSV manifest with the asked columns: {self.data.manifest!r}"
            )
        from vidfm.data.qa import row_values

        try:
            values = row_values(self.data.manifest, list(self.questions))
        except ValueError as e:
            raise ConfigError(str(e)) from None
        texts = list(self.questions.values()) + [a for row in values.values() for a in row.values()]
        return dataclasses.replace(self, words=WordTokenizer.build(texts).words[4:])

    def build_task(self, targets: TargetSource = LIVE) -> nn.Module:
        """The LM + projector with the frozen encoder of ``encoder_run`` (none for the text-only LM)."""
        from vidfm.tasks.internvideo2_stage3 import VideoLMTask

        encoder = augment = None
        if self.video_tokens:
            encoder, augment = video_encoder(self.encoder_run)
        return VideoLMTask(self.lm, self.text_tokenizer(), encoder, augment, self.num_queries,
                           self.projector_heads, self.max_text)  # fmt: skip

    def training_data(self, seed: int) -> tuple[Dataset, None]:
        """Clips of ``data`` with one question each (drawn per epoch), batched with their texts."""
        return self.qa_dataset(seed=seed, train=True), _collate

    def qa_dataset(self, seed: int = 0, split: str | None = None, train: bool = True) -> Dataset:
        from vidfm.data.config import build_dataset
        from vidfm.data.qa import QADataset

        clips = build_dataset(self.data, seed=seed, split=split, train=train)
        return QADataset(clips, self.data.manifest, self.questions, seed=seed)


def _collate(items: list[dict]) -> dict:
    from vidfm.data.datasets import collate

    return collate(items) | {
        "instruction": [i["instruction"] for i in items],
        "answer": [i["answer"] for i in items],
    }


def video_encoder(run_dir: str | Path):  # noqa: ANN201 - (VideoEncoder, AugmentConfig)
    """The encoder of a run and its crop/normalisation config."""
    from vidfm.data.transforms import AugmentConfig
    from vidfm.runs import load_encoder

    encoder, run = load_encoder(run_dir)
    augment = (
        run.section("augment", AugmentConfig)
        if run.has("augment")
        else AugmentConfig(size=encoder.cfg.img_size)
    )
    return encoder.eval(), augment


def load_video_lm(
    run_dir: str | Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, InternVideo2Stage3Recipe]:
    """The trained task of an ``internvideo2_stage3`` run (latest checkpoint; the encoder from its own run)."""
    from vidfm.recipes import load_run_config
    from vidfm.train.checkpoint import load_model_weights

    cfg = load_run_config(run_dir)
    if not isinstance(cfg, InternVideo2Stage3Recipe):
        raise ConfigError(f"{run_dir} is a {cfg.recipe} run, not internvideo2_stage3")
    task = cfg.build_task()
    load_model_weights(run_dir, task)
    return task.to(device).eval(), cfg


def config(variant: str = "") -> InternVideo2Stage3Recipe:
    """``""``: a GPT-2-small-sized LM (``lm.path`` for a local HF LLM); ``tiny``: digits-motion on a CPU;
    ``text``: ``tiny`` without video tokens (the control)."""
    return pick_variant(
        "internvideo2_stage3", variant, {"": InternVideo2Stage3Recipe, "tiny": tiny, "text": text}
    )


def tiny() -> InternVideo2Stage3Recipe:
    """A 2-block GPT-2 of width 128 over a word vocabulary, 8 soft tokens from the encoder of an
    ``internvideo2:tiny`` run (or any 64² run: ``--set encoder_run=RUN``), 8 frames one per segment at 64²;
    questions "which digit is shown?" and "how does the digit move?"; batch 32, lr 1e-3, 100 steps (4 epochs
    of 800 training clips, one question each)."""
    return InternVideo2Stage3Recipe(
        data=DataConfig(sampling="segment", num_frames=8, short_side=64),
        lm=LMConfig(width=128, depth=2, heads=4, max_len=64, dropout=0.1),
        num_queries=8,
        projector_heads=4,
        max_text=16,
        train=cpu_lm_train(100, warmup_steps=10),
    )


def text() -> InternVideo2Stage3Recipe:
    """:func:`tiny` without video tokens: the same LM and training, the instruction alone."""
    return dataclasses.replace(tiny(), video_tokens=False)
