"""End-to-end Video-LaVIT tokenization: video -> ``<visual ...><motion ...>`` per clip -> video.

A clip becomes the keyframe's visual tokens followed by its motion tokens, each span between special tokens,
as the official ``VideoLaVIT`` input format ``[<visual tokens>, <motion tokens>]`` per clip; the
document written by :func:`tokenize_video` is JSON and carries what :func:`detokenize` needs (the runs of
the tokenizers, the clip layout, the frame rate).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidfm.lavit.clips import ClipConfig, prepare_clips, resize_motion, resize_square
from vidfm.lavit.detokenizer import Detokenizer, DetokenizerConfig
from vidfm.lavit.keyframe import KeyframeTokenizer, KeyframeTokenizerConfig
from vidfm.lavit.motion_vq import MotionVQConfig, MotionVQVAE
from vidfm.runs import Run, open_run

SPECIAL = ("<visual>", "</visual>", "<motion>", "</motion>")
FORMAT = "vidfm-lavit-tokens/1"


@dataclass
class Tokenizers:
    """Trained models (eval mode) and the clip settings of the motion run.

    motion: the motion VQ-VAE; keyframe: the keyframe tokenizer (None: clips carry no visual tokens);
    detokenizer: the video detokenizer (None: cannot decode); clips: clip settings; grid: motion grid; runs:
    the run folders, recorded in token documents.
    """

    motion: MotionVQVAE
    keyframe: KeyframeTokenizer | None
    detokenizer: Detokenizer | None
    clips: ClipConfig
    grid: tuple[int, int]
    runs: dict[str, str]


def _load(run_dir: str, build: Any, prefix: str) -> tuple[Any, Run]:
    run = open_run(run_dir)
    model = build(run)
    run.load(model, prefix)
    return model.eval(), run


def load_tokenizers(
    motion_run: str, keyframe_run: str = "", detokenizer_run: str = "", device: str | torch.device = "cpu"
) -> Tokenizers:
    """Models from their run folders (latest checkpoints) of the ``motion_vq`` recipe's three stages."""
    motion, run = _load(motion_run, lambda r: MotionVQVAE(r.section("motion", MotionVQConfig)), "model.")
    keyframe = detok = None
    if keyframe_run:
        keyframe, _ = _load(keyframe_run, lambda r: KeyframeTokenizer(r.section("keyframe", KeyframeTokenizerConfig), load_encoder=False),
                            "tokenizer.")  # fmt: skip
    if detokenizer_run:
        detok, _ = _load(
            detokenizer_run,
            lambda r: Detokenizer(r.section("detokenizer", DetokenizerConfig)),
            "detokenizer.",
        )
    clips = run.section("data.clips", ClipConfig)
    if keyframe is not None:
        clips = dataclasses.replace(clips, keyframe_size=keyframe.cfg.image_size)
    runs = {"motion": str(motion_run), "keyframe": str(keyframe_run), "detokenizer": str(detokenizer_run)}
    for model in (motion, keyframe, detok):
        if model is not None:
            model.to(device)
    return Tokenizers(motion, keyframe, detok, clips, tuple(run.get("data.grid")), runs)


def sequence(visual: list[int], motion: list[int]) -> list[str]:
    """One clip's interleaved tokens: ``<visual> v.. </visual> <motion> m.. </motion>``."""
    out = ["<visual>", *(f"v{i}" for i in visual), "</visual>"] if visual else []
    return out + ["<motion>", *(f"m{i}" for i in motion), "</motion>"]


def tokenize_video(path: str | Path, tok: Tokenizers, clips: ClipConfig | None = None,
                   vit_patch: int = 16, vit_size: int = 224) -> dict[str, Any]:  # fmt: skip
    """Tokenize ``path``: a JSON-ready document with per-clip token ids, the interleaved sequence and stats.

    ``stats`` compares tokens per second with a per-frame ViT tokenisation (``vit_size``² images in
    ``vit_patch``² patches, one token per patch per frame) at the clip frame rate and at the source rate.
    """
    from vidfm.data.decode import probe

    cfg = clips or tok.clips
    info = probe(path)
    prepared = prepare_clips(path, cfg)
    device = next(tok.motion.parameters()).device
    out_clips, seq = [], []
    for c in prepared:
        motion = resize_motion(c.motion, tok.grid)[None].to(device)
        m_ids = tok.motion.tokenize(motion)[0].tolist()
        v_ids: list[int] = []
        if tok.keyframe is not None:
            key = torch.from_numpy(resize_square(c.keyframe, tok.keyframe.cfg.image_size))[None].to(device)
            v_ids = tok.keyframe.tokenize(key)[0].tolist()
        out_clips.append({"start": c.start, "num_frames": c.num_frames, "shot": c.shot, "visual": v_ids,
                          "motion": m_ids})  # fmt: skip
        seq += sequence(v_ids, m_ids)
    fps = prepared[0].fps if prepared else cfg.fps
    seconds = sum(c.num_frames for c in prepared) / fps if prepared else 0.0
    patches = (vit_size // vit_patch) ** 2
    stats = {
        "clips": len(prepared),
        "seconds": seconds,
        "tokens": len(seq),
        "tokens_per_second": len(seq) / seconds if seconds else 0.0,
        "vit_tokens_per_second": patches * fps,
        "vit_tokens_per_second_source": patches * info.fps,
        "vit": f"{vit_size}px/{vit_patch}",
    }
    return {
        "format": FORMAT,
        "video": str(path),
        "fps": fps,
        "source_fps": info.fps,
        "motion_grid": list(tok.motion.tokens_grid),
        "runs": tok.runs,
        "clips": out_clips,
        "sequence": " ".join(seq),
        "stats": stats,
    }


@torch.no_grad()
def conditions(
    tok: Tokenizers, visual: torch.Tensor, motion: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """What the detokenizer is conditioned on, from token ids ``visual [B, Nv]`` and ``motion [B, Nm]``: the
    keyframe rendered from its tokens at the detokenizer's size, uint8 ``[B, S, S, 3]``, and the motion
    decoded by the VQ-VAE, ``[B, 2, T, h, w]``."""
    if tok.detokenizer is None or tok.keyframe is None:
        raise ValueError("detokenizing needs the keyframe tokenizer and the detokenizer")
    device = next(tok.detokenizer.parameters()).device
    key = tok.keyframe.render(visual.to(device))  # [B, S', S', 3]
    key = torch.from_numpy(resize_square(key.cpu().numpy(), tok.detokenizer.cfg.size)).to(device)
    return key, tok.motion.detokenize(motion.to(device))


@torch.no_grad()
def detokenize(doc: dict[str, Any], tok: Tokenizers, steps: int | None = None, guidance: float = 1.0,
               seed: int = 0, continue_shots: bool = True, temperature: float = 1.0) -> np.ndarray:  # fmt: skip
    """Frames uint8 ``[N, S, S, 3]`` of the video a token document describes.

    ``temperature`` scales the sampler's starting noise (:meth:`Detokenizer.sample`): 1 samples the trained
    model, 0 is a deterministic decode from the base clip (the same frames for every seed).

    Per clip: keyframe from its visual tokens (the keyframe tokenizer's pixel head), motion from its motion
    tokens (VQ-VAE decoder), frames from the detokenizer. Within a shot, each clip after the first starts
    from the inverted last frame of the previous clip (Video-LaVIT's long-video rule); a new shot starts
    from fresh noise. Only each clip's valid frames are kept.
    """
    if doc.get("format") != FORMAT:
        raise ValueError(f"not a vidfm token document (format {doc.get('format')!r})")
    if tok.detokenizer is None or tok.keyframe is None:
        raise ValueError("detokenizing needs the keyframe tokenizer and the detokenizer")
    det = tok.detokenizer
    device = next(det.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    frames, last, last_shot = [], None, None
    for c in doc["clips"]:
        if not c["visual"]:
            raise ValueError("a clip has no visual tokens: tokenize with a keyframe tokenizer")
        key, motion = conditions(tok, torch.tensor([c["visual"]]), torch.tensor([c["motion"]]))
        noise = None
        if continue_shots and last is not None and c["shot"] == last_shot:
            noise = det.invert(last, key, motion, steps)
        clip = det.sample(key, motion, noise=noise, steps=steps, guidance=guidance, generator=gen,
                          temperature=temperature)  # fmt: skip
        n = int(c["num_frames"])
        frames.append(clip[0, :n].cpu().numpy())
        last, last_shot = clip[:, n - 1], c["shot"]
    if not frames:
        raise ValueError("the token document has no clips")
    return np.concatenate(frames)
