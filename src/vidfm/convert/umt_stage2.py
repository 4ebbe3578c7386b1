"""Official UMT stage-2 checkpoints (github.com/OpenGVLab/unmasked_teacher, ``multi_modality/``) <-> vidfm's
``umt_stage2`` layout (the trainable state of :class:`~vidfm.tasks.umt_stage2.UMTStage2Task`).

Read against ``multi_modality/models/umt.py`` (``UMT.__init__``/``forward``), ``models/criterions.py`` (VTC,
VTM, MLM) and the stage-2 ViT ``models/backbones/vit/vit.py`` (read in the copy of mlvlab/vid-TLDR, which
keeps UMT's file with token-reduction hooks added; the key names are UMT's). The text side is UMT's
ALBEF-style ``backbones/bert/xbert.py`` ``BertForMaskedLM``: layers below ``fusion_layer`` (9 of BERT-base's 12
in ``exp/pretraining/b16_*.py``) run in ``mode="text"``, the layers from ``fusion_layer`` on hold a
``crossattention`` to the video tokens and run in ``mode="fusion"``.

    official                                               vidfm
    vision_encoder.encoder.*                               encoder.*            (as the stage-1 student)
    vision_encoder.clip_decoder.j.{head,norm}              align_heads.j.{fc,norm}
    vision_encoder.pool_norm                               contrastive.video_norm   (pool_norm=true)
    vision_proj, text_proj, temp                           contrastive.{video_proj, text_proj, temp}
    text_encoder.bert.embeddings.*, layer.i (i < f)        text_encoder.*       (models/text.py keys)
    text_encoder.bert.encoder.layer.(f+j).
        attention.self.{query,key,value}                   decoder.layers.j.attn.qkv  (rows q; k; v)
        attention.output.{dense,LayerNorm}                 decoder.layers.j.{attn.proj, norm1}
        crossattention.self.query / {key,value}            decoder.layers.j.cross.q / cross.kv (rows k; v)
        crossattention.output.{dense,LayerNorm}            decoder.layers.j.{cross.proj, norm2}
        intermediate.dense, output.{dense,LayerNorm}       decoder.layers.j.{mlp.fc1, mlp.fc2, norm3}
    text_encoder.cls.predictions.transform.{dense,LayerNorm}, bias   mlm_head.{dense, norm, bias}
    text_encoder.cls.predictions.decoder.weight            tied to the word embeddings (checked, not stored)
    itm_head                                               vtm_head

Where the models agree: the video embedding is the mean of the visible tokens after the encoder's final norm
(``keep_temporal`` off, as in pre-training) through ``pool_norm`` and ``vision_proj``; the text embedding is
the [CLS] state of the text layers (vidfm ``text.pooling=cls``); VTM reads the fused [CLS] state, MLM every
fused state, through BERT's post-norm layers, which vidfm's :class:`~vidfm.models.fusion.CrossModalDecoder`
repeats as a separate module on top of the text encoder. Where they do not, the converter refuses with one
line: a cross-attention below the fusion layers or a fusion layer without one, an MLM decoder not tied to the
word embeddings, and any key it does not know. ``clip_teacher.*`` (the frozen CLIP teacher, if saved) and
BERT's unused ``pooler`` are left out, and said so. Going back, a vidfm run without ``pool_norm`` is refused:
official UMT always normalises the pooled video feature, and no LayerNorm is the identity.

Using a converted checkpoint to train in vidfm needs a recipe of the same shape: ``pool_norm=true``,
``text.pooling=cls``, ``text.path`` a BERT folder with the official vocabulary cut to ``text.layers=f``, and
``fusion`` of the official depth and heads. A vidfm-trained run reaches this layout through
:func:`vidfm.runs.run_checkpoint`.
"""

from __future__ import annotations

import re

import torch

from vidfm.convert.layouts import resolve_heads, unwrap
from vidfm.convert.official_videomae import OFFICIAL_NORM_EPS
from vidfm.convert.umt import student_state, to_official_umt
from vidfm.convert.videomae import Converted, StateDict
from vidfm.models.text import TextConfig, convert_hf_bert, to_hf_bert
from vidfm.utils import log

VISION, BERT, MLM = "vision_encoder.", "text_encoder.bert.", "text_encoder.cls.predictions."
_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.")
# BERT sizes with their heads (no tensor shape holds them): (width, layers, MLP) of BERT-base and -large.
BERT_SIZES = {(768, 12, 3072): 12, (1024, 24, 4096): 16}
BERT_EPS = 1e-12
# fusion layer (vidfm suffix, official suffix) pairs outside the fused q/k/v rows
_FUSION = [
    ("attn.proj", "attention.output.dense"),
    ("norm1", "attention.output.LayerNorm"),
    ("cross.q", "crossattention.self.query"),
    ("cross.proj", "crossattention.output.dense"),
    ("norm2", "crossattention.output.LayerNorm"),
    ("mlp.fc1", "intermediate.dense"),
    ("mlp.fc2", "output.dense"),
    ("norm3", "output.LayerNorm"),
]
_ROWS = [
    ("attn.qkv", "attention.self", ("query", "key", "value")),
    ("cross.kv", "crossattention.self", ("key", "value")),
]
_MLM = {"dense": "transform.dense", "norm": "transform.LayerNorm"}
_TOP = {"vision_proj": "contrastive.video_proj", "text_proj": "contrastive.text_proj", "itm_head": "vtm_head"}


def is_official_umt_stage2(sd: StateDict) -> bool:
    """A UMT stage-2 model: the stage-2 ViT under ``vision_encoder.``, the BERT and the projections."""
    return (
        f"{VISION}encoder.patch_embed.proj.weight" in sd
        and "vision_proj.weight" in sd
        and any(k.startswith(BERT) for k in sd)
    )


def from_official_umt_stage2(
    obj: dict,
    heads: int | None = None,
    text_heads: int | None = None,
    num_frames: int = 8,
    img_size: int = 224,
) -> Converted:
    """An official UMT stage-2 checkpoint (bare or wrapped) -> :class:`Converted` in the ``umt_stage2`` layout.

    Args:
        obj: the loaded checkpoint (``{"model": sd, ...}``, ``sd``, …).
        heads: ViT heads (default: the registered official size, else an error naming ``--heads``).
        text_heads: BERT heads (default: BERT-base/large by their sizes, else an error naming ``--text-heads``).
        num_frames, img_size: the training clip (8 × 224² in UMT's pre-training; checked against the shapes).
    """
    sd, how = unwrap(obj, "UMT stage-2 checkpoint")
    if not is_official_umt_stage2(sd):
        raise ValueError(
            "not an official UMT stage-2 model: no vision_encoder.encoder.*, vision_proj and "
            f"text_encoder.bert.* (keys {sorted(sd)[:8]})"
        )
    left_out = sorted(k for k in sd if k.startswith("clip_teacher."))
    if left_out:
        log.info(
            "UMT stage 2: the frozen CLIP teacher (%d tensors) is not part of the model; left out",
            len(left_out),
        )
    vision = {
        k[len(VISION) :]: v
        for k, v in sd.items()
        if k.startswith(VISION) and not k.startswith(f"{VISION}pool_norm.")
    }
    enc_cfg, state, n_align = student_state(vision, heads, num_frames, img_size, OFFICIAL_NORM_EPS)
    if f"{VISION}pool_norm.weight" in sd:
        state |= {f"contrastive.video_norm.{p}": sd[f"{VISION}pool_norm.{p}"] for p in ("weight", "bias")}
    for src, dst in _TOP.items():
        for p in ("weight", "bias"):
            state[f"{dst}.{p}"] = _take(sd, f"{src}.{p}")
    state["contrastive.temp"] = _take(sd, "temp")
    text_cfg, text_state = _text(sd, text_heads)
    state |= text_state
    known = (VISION, BERT, MLM, "clip_teacher.", "temp", *(f"{k}." for k in _TOP))
    unknown = sorted(k for k in sd if not k.startswith(known))
    if unknown:
        raise ValueError(f"keys of no known UMT stage-2 part: {unknown[:12]}")
    log.info(
        "official UMT stage 2 (%s): ViT %dx%d (%d alignment heads), BERT %d text + %d fusion layers, "
        "embeddings %d wide",
        how, enc_cfg.dims()[0], enc_cfg.dims()[1], n_align, text_cfg.num_hidden_layers,
        len({k.split(".")[2] for k in state if k.startswith("decoder.layers.")}),
        state["contrastive.video_proj.weight"].shape[0],
    )  # fmt: skip
    return Converted(enc_cfg, None, state, {}, layout="umt_stage2", text=text_cfg)


def _take(sd: StateDict, key: str) -> torch.Tensor:
    if key not in sd:
        raise ValueError(f"the UMT stage-2 checkpoint has no {key!r}")
    return sd[key]


def _text(sd: StateDict, text_heads: int | None) -> tuple[TextConfig, StateDict]:
    """The BERT of a stage-2 dict -> (sizes of its text layers, ``text_encoder.*`` + ``decoder.*`` +
    ``mlm_head.*`` in vidfm keys)."""
    bert = {k[len(BERT) :]: v for k, v in sd.items() if k.startswith(BERT)}
    layers = sorted({int(m.group(1)) for k in bert if (m := _LAYER.match(k))})
    if layers != list(range(len(layers))):
        raise ValueError(f"BERT layers are not numbered 0..{len(layers) - 1}: {layers[:12]}")
    cross = [i for i in layers if f"encoder.layer.{i}.crossattention.self.query.weight" in bert]
    if not cross or cross != layers[cross[0] :]:
        raise ValueError(
            f"BERT layers with a cross-attention {cross[:12]} are not the top layers of {len(layers)}: "
            "vidfm fuses in a decoder on top of the text encoder, so only a top block of fusion layers maps"
        )
    f = cross[0]
    word = bert["embeddings.word_embeddings.weight"]
    width, mlp = word.shape[1], bert["encoder.layer.0.intermediate.dense.weight"].shape[0]
    heads = resolve_heads(
        width, len(layers), mlp, text_heads, "--text-heads", "BERT text encoder", BERT_SIZES
    )
    cfg = TextConfig(
        vocab_size=word.shape[0],
        hidden_size=width,
        num_hidden_layers=f,
        num_attention_heads=heads,
        intermediate_size=mlp,
        max_position_embeddings=bert["embeddings.position_embeddings.weight"].shape[0],
        type_vocab_size=bert["embeddings.token_type_embeddings.weight"].shape[0],
        layer_norm_eps=BERT_EPS,
    )
    below = {k: v for k, v in bert.items() if not ((m := _LAYER.match(k)) and int(m.group(1)) >= f)}
    if "pooler.dense.weight" in below:
        log.info(
            "UMT stage 2: BERT's pooler is never used by UMT (it pools the [CLS] state itself); left out"
        )
    out = {f"text_encoder.{k}": v for k, v in convert_hf_bert(below, f).items()}
    for i in layers[f:]:
        src, dst = f"encoder.layer.{i}.", f"decoder.layers.{i - f}."
        for p in ("weight", "bias"):
            for ours, theirs, names in _ROWS:
                out[f"{dst}{ours}.{p}"] = torch.cat([bert[f"{src}{theirs}.{n}.{p}"] for n in names])
            for ours, theirs in _FUSION:
                out[f"{dst}{ours}.{p}"] = bert[f"{src}{theirs}.{p}"]
        expected = {f"{src}{t}.{n}.{p}" for _, t, ns in _ROWS for n in ns for p in ("weight", "bias")}
        expected |= {f"{src}{t}.{p}" for _, t in _FUSION for p in ("weight", "bias")}
        extra = sorted(k for k in bert if k.startswith(src) and k not in expected)
        if extra:
            raise ValueError(f"unexpected keys in BERT fusion layer {i}: {extra[:8]}")
    mlm = {k[len(MLM) :]: v for k, v in sd.items() if k.startswith(MLM)}
    if mlm:
        if "decoder.weight" in mlm and not torch.equal(mlm["decoder.weight"], word):
            raise ValueError(
                "the MLM decoder is not tied to the word embeddings: vidfm's MLM head reuses them"
            )
        if "decoder.bias" in mlm and not torch.equal(mlm["decoder.bias"], mlm["bias"]):
            raise ValueError(
                "the MLM decoder bias differs from cls.predictions.bias: they are one tensor in BERT"
            )
        for ours, theirs in _MLM.items():
            for p in ("weight", "bias"):
                out[f"mlm_head.{ours}.{p}"] = mlm[f"{theirs}.{p}"]
        out["mlm_head.bias"] = mlm["bias"]
        extra = sorted(
            set(mlm)
            - {"bias", "decoder.weight", "decoder.bias"}
            - {f"{t}.{p}" for t in _MLM.values() for p in ("weight", "bias")}
        )
        if extra:
            raise ValueError(f"unexpected keys in the MLM head: {extra[:8]}")
    return cfg, out


def to_official_umt_stage2(conv: Converted) -> StateDict:
    """The ``umt_stage2`` layout -> an official ``UMT`` state dict (``model`` of a UMT checkpoint)."""
    if conv.layout != "umt_stage2" or conv.text is None:
        raise ValueError(f"to_official_umt_stage2 needs a umt_stage2 checkpoint, got layout {conv.layout!r}")
    sd = conv.state_dict
    if "contrastive.video_norm.weight" not in sd:
        raise ValueError(
            "this umt_stage2 model has no pool norm: official UMT always applies vision_encoder.pool_norm to "
            "the pooled video feature, so it would compute something else (train with pool_norm=true)"
        )
    if "text_encoder.word_embeddings.weight" not in sd:
        raise ValueError(
            "this umt_stage2 model has no text encoder weights (trained frozen): nothing to write"
        )
    student = {k: v for k, v in sd.items() if k.startswith(("encoder.", "align_heads."))}
    out = {
        f"{VISION}{k}": v for k, v in to_official_umt(conv._replace(state_dict=student, layout="umt")).items()
    }
    out |= {f"{VISION}pool_norm.{p}": sd[f"contrastive.video_norm.{p}"] for p in ("weight", "bias")}
    for theirs, ours in _TOP.items():
        if f"{ours}.weight" not in sd:  # vtm_head: a vidfm run with weights.vtm=0 builds none
            raise ValueError(
                f"this umt_stage2 model has no {ours} (trained with weights.vtm=0); official UMT always has {theirs}"
            )
        out |= {f"{theirs}.{p}": sd[f"{ours}.{p}"] for p in ("weight", "bias")}
    out["temp"] = sd["contrastive.temp"]
    f = conv.text.num_hidden_layers
    text = {k[len("text_encoder.") :]: v for k, v in sd.items() if k.startswith("text_encoder.")}
    out |= {f"{BERT}{k}": v for k, v in to_hf_bert(text, f).items()}
    depth = len({k.split(".")[2] for k in sd if k.startswith("decoder.layers.")})
    if depth == 0:  # weights.vtm=0 and weights.mlm=0: no fusion layers, which official UMT always has
        raise ValueError(
            "this umt_stage2 model has no cross-modal decoder: official UMT's BERT fuses in its top layers"
        )
    for j in range(depth):
        src, dst = f"decoder.layers.{j}.", f"{BERT}encoder.layer.{f + j}."
        for p in ("weight", "bias"):
            for ours, theirs, names in _ROWS:
                for n, t in zip(names, sd[f"{src}{ours}.{p}"].chunk(len(names)), strict=True):
                    out[f"{dst}{theirs}.{n}.{p}"] = t
            for ours, theirs in _FUSION:
                out[f"{dst}{theirs}.{p}"] = sd[f"{src}{ours}.{p}"]
    if "mlm_head.bias" in sd:
        for ours, theirs in _MLM.items():
            out |= {f"{MLM}{theirs}.{p}": sd[f"mlm_head.{ours}.{p}"] for p in ("weight", "bias")}
        out[f"{MLM}bias"] = out[f"{MLM}decoder.bias"] = sd["mlm_head.bias"]
        out[f"{MLM}decoder.weight"] = sd["text_encoder.word_embeddings.weight"]
    known = (
        "encoder.",
        "align_heads.",
        "contrastive.",
        "text_encoder.",
        "decoder.",
        "vtm_head.",
        "mlm_head.",
    )
    unknown = sorted(k for k in sd if not k.startswith(known))
    if unknown:
        raise ValueError(f"{unknown[:8]} have no place in an official UMT stage-2 checkpoint")
    return out


__all__ = ["from_official_umt_stage2", "is_official_umt_stage2", "to_official_umt_stage2"]
