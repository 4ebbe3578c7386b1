"""InternVideo2 stage 3: a frozen video encoder's tokens through a projector into a causal LM, the text-only
control, and ``vidfm chat`` from the command line."""

from __future__ import annotations

import pytest
import torch

from vidfm.data.transforms import AugmentConfig
from vidfm.models.encoder import EncoderConfig, VideoEncoder
from vidfm.models.lm import LMConfig, WordTokenizer
from vidfm.tasks.internvideo2_stage3 import VideoLMTask
from vidfm.train.checkpoint import trainable_state_dict

pytest.importorskip("transformers")

LM = LMConfig(width=32, depth=1, heads=2, max_len=32)
WORDS = WordTokenizer.build(["which digit is shown?", "how does the digit move?", "3 7 left rotate cw"])


def encoder() -> VideoEncoder:
    torch.manual_seed(0)
    return VideoEncoder(
        EncoderConfig(size="T/8", depth=1, width=32, heads=2, tubelet=1, num_frames=2, img_size=16)
    )


def batch() -> dict:
    g = torch.Generator().manual_seed(1)
    return {
        "video": torch.randint(0, 256, (2, 2, 16, 16, 3), dtype=torch.uint8, generator=g),
        "instruction": ["which digit is shown?", "how does the digit move?"],
        "answer": ["7", "rotate cw"],
    }


def test_loss_reaches_the_projector_and_lm_never_the_encoder() -> None:
    task = VideoLMTask(LM, WORDS, encoder(), AugmentConfig(size=16), num_queries=3, heads=2, max_text=12)
    out = task(batch(), torch.Generator())
    out["loss"].backward()
    for name in (
        "projector.pool.query",
        "projector.proj.weight",
        "lm.model.transformer.h.0.attn.c_attn.weight",
    ):
        grad = task.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert all(p.grad is None for n, p in task.named_parameters() if n.startswith("encoder."))
    assert not any(k.startswith("encoder.") for k in trainable_state_dict(task))
    # only the answer and <eos> are targets: "7 <eos>" and "rotate cw <eos>"
    ids, mask, target = task.sequences(batch()["instruction"], batch()["answer"], torch.device("cpu"))
    assert target.sum(1).tolist() == [2, 3] and (target <= mask).all()
    assert WORDS.decode(ids[1][target[1]].tolist()) == "rotate cw"


def test_text_only_lm_is_the_same_lm_without_video_tokens_and_answers() -> None:
    video = VideoLMTask(LM, WORDS, encoder(), AugmentConfig(size=16), num_queries=3, heads=2)
    text = VideoLMTask(LM, WORDS, None, None)
    lm_keys = {k for k in trainable_state_dict(video) if k.startswith("lm.")}
    assert set(trainable_state_dict(text)) == lm_keys
    assert float(text(batch(), torch.Generator())["loss"].detach()) > 0
    answers = video.answer(batch()["video"], "which digit is shown?", max_new=3)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    assert len(text.answer(None, "how does the digit move?", max_new=3)) == 1


def test_stage3_recipe_trains_and_chats_from_the_cli(tmp_path, capsys) -> None:
    pytest.importorskip("sklearn")  # digits-motion ships scikit-learn's digits
    from vidfm.cli import main
    from vidfm.data.digits import make_digits_motion

    manifest = make_digits_motion(tmp_path / "digits", n=4, size=32, seed=0)
    train = ["train.steps=2", "train.batch_size=2", "train.warmup_steps=0", "train.workers=0",
             "train.progress=false", f"data.manifest={manifest}", "data.short_side=32"]  # fmt: skip
    sets = lambda items: [a for i in items for a in ("--set", i)]  # noqa: E731
    vid = ["encoder.depth=1", "encoder.width=32", "encoder.heads=2", "encoder.img_size=32", "augment.size=32",
           "decoder.depth=1", "decoder.width=32", "decoder.heads=2"]  # fmt: skip
    assert (
        main(["pretrain", "--recipe", "videomae:tiny", "--out", str(tmp_path / "vid"), *sets(train + vid)])
        == 0
    )
    lm = ["lm.width=32", "lm.depth=1", "lm.heads=2", "num_queries=2", "projector_heads=2"]
    args = ["pretrain", "--recipe", "internvideo2_stage3:tiny", "--out", str(tmp_path / "chat")]
    assert main([*args, *sets([*train, *lm, f"encoder_run={tmp_path / 'vid'}"])]) == 0
    args = ["pretrain", "--recipe", "internvideo2_stage3:text", "--out", str(tmp_path / "text")]
    assert main([*args, *sets([*train, *lm])]) == 0
    capsys.readouterr()
    clip = str(next((tmp_path / "digits").rglob("*.mp4")))
    for run in ("chat", "text"):
        assert main(["chat", clip, "--checkpoint", str(tmp_path / run), "which digit is shown?"]) == 0
        assert capsys.readouterr().out.count("\n") == 1  # one answer line (an untrained LM may stop at once)
    # user errors: one line, exit 2
    assert main(["chat", str(tmp_path / "missing.mp4"), "--checkpoint", str(tmp_path / "chat"), "q?"]) == 2
    assert main(["chat", clip, "--checkpoint", str(tmp_path / "vid"), "q?"]) == 2
    assert (
        main(["pretrain", "--recipe", "internvideo2_stage3:tiny", "--out", str(tmp_path / "x"), *sets(train)])
        == 2
    )  # fmt: skip - no encoder_run
    err = capsys.readouterr().err
    assert "no such video" in err and "not internvideo2_stage3" in err and "encoder_run is not set" in err
