"""End to end: the three tiny stages trained for a few steps (``runs`` in conftest), then ``vidfm tokenize`` and
``vidfm detokenize``."""

from __future__ import annotations

import json

import pytest

from vidfm.cli import main
from vidfm.data.decode import probe
from vidfm.lavit.tokenize import load_tokenizers, sequence
from vidfm.recipes import load_run_config
from vidfm.recipes.motion_vq import MotionVQRecipe


def test_runs_rebuild_from_their_config(runs):
    cfg = load_run_config(runs["detokenizer"])
    assert isinstance(cfg, MotionVQRecipe) and cfg.stage == "detokenizer" and cfg.detokenizer.size == 32
    tok = load_tokenizers(str(runs["motion"]), str(runs["keyframe"]), str(runs["detokenizer"]))
    assert tok.motion.tokens_grid == (2, 2, 2) and tok.keyframe.num_tokens == 64
    assert tok.clips.clip_frames == 16 and not tok.clips.reencode


def test_tokenize_then_detokenize(runs, tmp_path):
    tokens = tmp_path / "clip.json"
    assert main(["tokenize", str(runs["video"]), "--motion-run", str(runs["motion"]),
                 "--keyframe-run", str(runs["keyframe"]), "--out", str(tokens)]) == 0  # fmt: skip
    doc = json.loads(tokens.read_text())
    (clip,) = doc["clips"]  # a digits-motion video is one 16-frame clip (one I-frame)
    assert clip["start"] == 0 and clip["num_frames"] == 16
    assert len(clip["visual"]) == 64 and len(clip["motion"]) == 8
    assert doc["sequence"].split() == sequence(clip["visual"], clip["motion"])
    assert doc["sequence"].startswith("<visual> v") and doc["sequence"].endswith("</motion>")
    stats = doc["stats"]
    assert stats["tokens"] == 64 + 8 + 4 and stats["seconds"] == pytest.approx(2.0)  # 16 frames at 8 fps
    assert stats["tokens_per_second"] == pytest.approx(38.0)
    assert stats["vit_tokens_per_second"] == pytest.approx(196 * 8)  # 224px/16 ViT, one token per patch

    video = tmp_path / "out.mp4"
    assert main(["detokenize", str(tokens), "--detokenizer-run", str(runs["detokenizer"]),
                 "--out", str(video), "--steps", "2"]) == 0  # fmt: skip
    info = probe(video)
    assert info.num_frames == 16 and (info.width, info.height) == (32, 32) and info.fps == 8

    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({**doc, "format": "other"}))
    assert main(["detokenize", str(broken), "--detokenizer-run", str(runs["detokenizer"]),
                 "--out", str(tmp_path / "x.mp4")]) == 2  # fmt: skip


def test_tokenize_reports_a_broken_video(runs, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    assert main(["tokenize", str(bad), "--motion-run", str(runs["motion"])]) == 2


def test_detokenize_temperature_zero_is_deterministic(runs):
    from vidfm.lavit.tokenize import detokenize, tokenize_video

    tok = load_tokenizers(str(runs["motion"]), str(runs["keyframe"]), str(runs["detokenizer"]))
    doc = tokenize_video(runs["video"], tok)
    cold = [detokenize(doc, tok, steps=2, seed=s, temperature=0.0) for s in (0, 1)]
    warm = [detokenize(doc, tok, steps=2, seed=s, temperature=1.0) for s in (0, 1)]
    assert (cold[0] == cold[1]).all()  # no noise: the seed does not matter
    assert (warm[0] != warm[1]).any()
    from vidfm.cli import build_parser

    args = build_parser().parse_args(["detokenize", "t.json", "--detokenizer-run", "r", "--out", "x.mp4",
                                      "--temperature", "0"])  # fmt: skip
    assert args.temperature == 0.0 and args.handler.__name__ == "run_detokenize"
    args = build_parser().parse_args(["generate", "a 3", "--checkpoint", "r", "--out", "x.mp4",
                                      "--frame-temperature", "0"])  # fmt: skip
    assert args.frame_temperature == 0.0 and args.temperature == 1.0  # tokens still sampled at 1
