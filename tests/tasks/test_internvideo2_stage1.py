"""InternVideo2 stage 1: several teachers at once, each at its own frame count, the class token never masked,
the loss as the α-weighted sum of the single-teacher losses, the official layout, and the recipe from the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from vidfm.convert.internvideo2 import official_to_vidfm, vidfm_to_official
from vidfm.data.transforms import AugmentConfig
from vidfm.masking import MaskConfig
from vidfm.models.clip_vision import CLIPVisionConfig, CLIPVisionTower, clip_encoder_config
from vidfm.models.encoder import EncoderConfig, VideoEncoder
from vidfm.recipes.internvideo2 import internvideo2_encoder
from vidfm.tasks.internvideo2 import InternVideo2Task
from vidfm.teachers.base import Teacher, TeacherOutput
from vidfm.teachers.clip import CLIPTeacher
from vidfm.teachers.targets import LiveTargets
from vidfm.teachers.vit import ViTTeacher
from vidfm.train.checkpoint import trainable_state_dict

STUDENT = internvideo2_encoder("T/8", num_frames=4, img_size=32, depth=3, width=32, heads=2)
AUGMENT = AugmentConfig(size=32)
POOL = dict(pool_heads=2, pool_dim=24)


class RecordingTeacher(Teacher):
    """Fixed random unit tokens on a (T, 4, 4) grid, all attention on patches 0..3; records its input frames."""

    def __init__(self, dim: int, layers: tuple[int, ...], tubelet: int = 1) -> None:
        super().__init__(None, (0.5,) * 3, (0.5,) * 3)
        self.dim, self.layers, self.tubelet, self.frames_seen = dim, layers, tubelet, []
        self.freeze()

    def encode(self, video: torch.Tensor) -> TeacherOutput:
        b, t = video.shape[0], video.shape[2] // self.tubelet
        self.frames_seen.append(video.shape[2])
        g = torch.Generator().manual_seed(self.dim)
        unit = lambda *s: torch.nn.functional.normalize(torch.randn(*s, generator=g), dim=-1)  # noqa: E731
        hidden = {i: unit(b, t * 16, self.dim) for i in self.layers}
        attention = torch.full((b, t, 16), 0.002)
        attention[:, :, :4] = 0.2
        return TeacherOutput(hidden[self.layers[-1]], (t, 4, 4), unit(b, self.dim), attention, hidden)


def clip_teacher() -> CLIPTeacher:
    torch.manual_seed(3)
    cfg = CLIPVisionConfig(clip_encoder_config("T/8", img_size=32, width=32, depth=3, heads=2), embed_dim=16)
    return CLIPTeacher(CLIPVisionTower(cfg), layers=(-2, -1))


def video_teacher() -> ViTTeacher:
    torch.manual_seed(4)
    enc = VideoEncoder(
        EncoderConfig(size="T/8", depth=2, width=32, heads=2, tubelet=2, num_frames=8, img_size=32)
    )
    return ViTTeacher(enc, final_norm=True, layers=(-1,))


def clips(b: int = 2, t: int = 8) -> dict:
    g = torch.Generator().manual_seed(5)
    return {"video": torch.randint(0, 256, (b, t, 32, 32, 3), dtype=torch.uint8, generator=g)}


def task(mask: str = "semantic", image=None, video=None, **weights) -> InternVideo2Task:
    image, video = (None if t is None else LiveTargets(t) for t in (image, video))
    torch.manual_seed(0)
    return InternVideo2Task(
        STUDENT, MaskConfig(mask, 0.75), AUGMENT, image, video, frame_ratio=2, **POOL, **weights
    )


def test_loss_and_gradients_reach_student_heads_and_pool_never_teachers() -> None:
    t = task(image=clip_teacher(), video=video_teacher())
    out = t(clips(), torch.Generator().manual_seed(1))
    assert {"loss_clip", "loss_clip_final", "loss_video"} <= set(out)
    assert all(0 < float(out[k]) < 4 for k in ("loss_clip", "loss_clip_final", "loss_video"))
    out["loss"].backward()
    for name in ("encoder.cls_token", "encoder.blocks.0.attn.qkv.weight", "encoder.pos_embed", "pool.q.weight",
                 "heads.clip.0.fc.weight", "heads.clip.1.norm.weight", "heads.video.0.fc.2.weight",
                 "final_heads.clip.fc.weight", "pos.clip", "pos.video"):  # fmt: skip
        grad = t.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert all(p.grad is None for n, p in t.named_parameters() if n.startswith("teacher_"))
    saved = trainable_state_dict(t)
    assert not any(k.startswith("teacher_") for k in saved)
    # the task's parameters are the vidfm side of the official stage-1 layout: there and back, key by key
    back, _ = official_to_vidfm(vidfm_to_official(saved))
    assert set(back) == set(saved) and all(torch.equal(back[k], saved[k]) for k in saved)


def test_loss_is_the_weighted_sum_of_the_single_teacher_losses() -> None:
    image, video = RecordingTeacher(8, (1, 2)), RecordingTeacher(12, (0,), tubelet=2)
    weights = dict(image_weight=0.7, final_weight=0.4, video_weight=1.3)
    both = task("frame", image, video, **weights)
    only_image = task("frame", image, None, **{**weights, "video_weight": 0.0})
    only_video = task("frame", None, video, image_weight=0.0, final_weight=0.0, video_weight=1.3)
    for single, other in ((only_image, "video"), (only_video, "clip")):  # the same weights where shared
        missing, unexpected = single.load_state_dict(trainable_state_dict(both), strict=False)
        assert all(k.startswith("teacher_") for k in missing)
        assert unexpected and all(other in k or k.startswith("pool.") for k in unexpected)
    seed = lambda: torch.Generator().manual_seed(9)  # noqa: E731 - same crop and mask for every task
    out = both(clips(), seed())
    a, b = only_image(clips(), seed()), only_video(clips(), seed())
    assert set(b) == {"loss", "loss_video"} and "loss_video" not in a
    torch.testing.assert_close(out["loss"], a["loss"] + b["loss"])
    expected = 0.7 * out["loss_clip"] + 0.4 * out["loss_clip_final"] + 1.3 * out["loss_video"]
    torch.testing.assert_close(out["loss"], expected)


def test_teachers_at_their_own_frame_counts_and_the_class_token_never_masked() -> None:
    image, video = RecordingTeacher(8, (2,)), RecordingTeacher(12, (0,), tubelet=2)
    t = task("semantic", image, video)
    entering = []
    t.encoder.blocks[0].register_forward_pre_hook(lambda m, args: entering.append(args[0].detach()))
    kept = torch.zeros(16)
    for s in range(10):
        clip = t.augment(clips()["video"], generator=torch.Generator().manual_seed(s), train=True)
        _, out, mask = t.losses(clip, {}, torch.Generator().manual_seed(s))
        kept += torch.bincount(mask.visible.flatten() % 16, minlength=16).float()
        assert out.cls is not None and out.tokens.shape[1] == mask.visible.shape[1] == 4 * 4
    assert image.frames_seen == [4] * 10 and video.frames_seen == [8] * 10  # every 2nd frame vs all 8
    # the first token into the blocks is the class token (+ its position) for every sample, every step
    cls = (t.encoder.cls_token + t.encoder.cls_pos)[0, 0]
    assert all(torch.allclose(x[:, 0], cls.expand_as(x[:, 0])) for x in entering)
    assert all(x.shape[1] == 1 + 16 for x in entering)  # class token + 4 visible per frame × 4 frames
    assert kept[:4].sum() > kept[4:].sum()  # semantic: the attended patches are kept far more often


def test_configuration_errors() -> None:
    with pytest.raises(ValueError, match="nothing to align"):
        task("frame", None, None, image_weight=0.0, final_weight=0.0, video_weight=0.0)
    with pytest.raises(ValueError, match="semantic masking needs"):
        task("semantic", None, RecordingTeacher(8, (0,), 2), image_weight=0.0, final_weight=0.0)
    with pytest.raises(ValueError, match="non-zero weight"):
        task("frame", None, None)


def test_recipe_trains_two_steps_from_the_cli(tmp_path) -> None:
    pytest.importorskip("sklearn")  # digits-motion ships scikit-learn's digits
    pytest.importorskip("efficientnet_lite_pytorch", reason="the 'teachers' extra is not installed")
    from vidfm.cli import main
    from vidfm.data.digits import make_digits_motion
    from vidfm.recipes import load_run_config, load_run_encoder

    manifest = make_digits_motion(tmp_path / "digits", n=4, size=32, seed=0)
    small = ["encoder.depth=2", "encoder.width=32", "encoder.heads=2", "encoder.img_size=32", "augment.size=32",
             "data.short_side=32", "train.steps=2", "train.batch_size=2", "train.warmup_steps=0",
             "train.workers=0", "train.progress=false", f"data.manifest={manifest}"]  # fmt: skip
    sets = lambda items: [a for i in items for a in ("--set", i)]  # noqa: E731
    assert main(["pretrain", "--recipe", "videomae:tiny", "--out", str(tmp_path / "vid"),
                 *sets([*small, "decoder.depth=1", "decoder.width=32", "decoder.heads=2"])]) == 0  # fmt: skip
    iv2 = [*small, f"teachers.video.path={tmp_path / 'vid'}", "teachers.image.size=32", "pool_heads=2",
           "pool_dim=32"]  # fmt: skip
    assert (
        main(["pretrain", "--recipe", "internvideo2:tiny", "--out", str(tmp_path / "iv2"), *sets(iv2)]) == 0
    )
    rows = [json.loads(line) for line in (tmp_path / "iv2" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 2 and {"loss_clip", "loss_clip_final", "loss_video"} <= set(rows[-1])
    assert load_run_config(tmp_path / "iv2").teachers.video.path == str(tmp_path / "vid")
    encoder, _ = load_run_encoder(tmp_path / "iv2")
    assert encoder.cfg.cls_token and encoder.cfg.qk_norm and encoder.width == 32
