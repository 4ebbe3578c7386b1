"""MVD: targets, weights, the λ = 0 branch, frozen teachers, and every stage from the CLI on CPU."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vidfm.models.encoder import EncoderConfig, VideoEncoder, gather_tokens
from vidfm.recipes.mvd import MVDTeachers
from vidfm.recipes.mvd import tiny as mvd_tiny
from vidfm.tasks.mvd import MVDTask
from vidfm.teachers.align import teacher_frames
from vidfm.teachers.targets import LiveTargets
from vidfm.teachers.vit import ViTTeacher
from vidfm.train.checkpoint import trainable_state_dict
from vidfm.utils import make_generator

SMALL = dict(size="T/8", depth=1, width=32, heads=2, img_size=32)


class ExplodingTeacher(ViTTeacher):
    """A teacher whose forward must never run."""

    def encode(self, video):  # noqa: ANN001, ANN201
        raise AssertionError("the teacher's forward ran")


def teachers(explode: str = "") -> tuple[ViTTeacher, ViTTeacher]:
    """Tiny random image (width 32) and video (width 48) teachers; ``explode`` names one that must not run."""
    torch.manual_seed(1)
    image_cls = ExplodingTeacher if explode == "image" else ViTTeacher
    video_cls = ExplodingTeacher if explode == "video" else ViTTeacher
    image = image_cls(VideoEncoder(EncoderConfig(**SMALL, tubelet=1, num_frames=1, cls_token=True)))
    video = video_cls(VideoEncoder(EncoderConfig(**{**SMALL, "width": 48}, tubelet=2, num_frames=4)))
    return image, video


def make_task(image_weight: float = 1.0, video_weight: float = 1.0, explode: str = "", **kw) -> MVDTask:
    cfg = mvd_tiny()
    encoder = EncoderConfig(**SMALL, tubelet=2, num_frames=4, pos_embed="sincos_3d")
    augment = dataclasses.replace(cfg.augment, size=32)
    image, video = teachers(explode)
    torch.manual_seed(0)
    image, video = LiveTargets(image), LiveTargets(video)
    return MVDTask(encoder, cfg.decoder, cfg.mask, augment, image, video, image_weight, video_weight, **kw)


def batch(b: int = 2) -> dict:
    g = torch.Generator().manual_seed(5)
    return {"video": torch.randint(0, 256, (b, 4, 32, 32, 3), dtype=torch.uint8, generator=g)}


def test_targets_are_teacher_features_at_masked_positions() -> None:
    task = make_task()
    assert task.decoder_image.head.out_features == 32 and task.decoder_video.head.out_features == 48
    assert task.decoder_image.blocks[0].attn.qkv.in_features == 32  # decoder as wide as the encoder
    clip = task.augment(batch()["video"], train=False)  # [0, 1]
    masked = torch.tensor([[0, 5, 17, 31], [1, 2, 20, 30]])
    visible = torch.stack([torch.tensor([i for i in range(32) if i not in row]) for row in masked.tolist()])
    preds, targets = task.predict(clip, {}, visible, masked)
    # image teacher: frames 0 and 2 (the first of each tubelet), each frame alone
    image_tokens = task.teacher_image(clip[:, :, ::2], {}).tokens  # [B, 2·16, 32]
    torch.testing.assert_close(targets["image"], gather_tokens(image_tokens, masked))
    torch.testing.assert_close(targets["video"], gather_tokens(task.teacher_video(clip, {}).tokens, masked))
    assert preds["image"].shape == (2, 4, 32) and preds["video"].shape == (2, 4, 48)


def test_loss_is_the_weighted_sum_and_only_the_student_learns() -> None:
    task = make_task(image_weight=2.0, video_weight=0.5)
    out = task(batch(), make_generator(0, 0))
    expected = 2.0 * out["loss_image"] + 0.5 * out["loss_video"]
    torch.testing.assert_close(out["loss"].detach(), expected)
    out["loss"].backward()
    assert task.encoder.patch_embed.proj.weight.grad is not None
    assert task.decoder_image.head.weight.grad is not None
    assert all(p.grad is None for n, p in task.named_parameters() if n.startswith("teacher"))
    saved = trainable_state_dict(task)
    assert saved and not any(k.startswith("teacher") for k in saved)


@pytest.mark.parametrize("branch", ["image", "video"])
def test_zero_weight_builds_no_decoder_and_never_runs_the_teacher(branch: str) -> None:
    with pytest.raises(AssertionError, match="forward ran"):  # the stand-in does explode when weighted
        make_task(explode=branch)(batch(), make_generator(0, 1))
    task = make_task(explode=branch, **{f"{branch}_weight": 0.0})
    assert getattr(task, f"decoder_{branch}") is None and getattr(task, f"teacher_{branch}") is None
    other = "video" if branch == "image" else "image"
    out = task(batch(), make_generator(0, 1))
    assert set(out) == {"loss", f"loss_{other}"}
    out["loss"].backward()


def test_concat_alignment_predicts_all_tubelet_frames() -> None:
    task = make_task(video_weight=0.0, align="concat")
    assert task.decoder_image.head.out_features == 2 * 32
    clip = task.augment(batch()["video"], train=False)  # [0, 1]
    masked = torch.arange(4).expand(2, 4)
    visible = torch.arange(4, 32).expand(2, 28)
    _, targets = task.predict(clip, {}, visible, masked)
    frames = task.teacher_image(teacher_frames(clip, 2, "concat"), {}).tokens.view(2, 4, 16, 32)
    # student token 3 (time slot 0, position 3) <- frames 0 and 1 at position 3
    torch.testing.assert_close(targets["image"][:, 3], torch.cat([frames[:, 0, 3], frames[:, 1, 3]], -1))


def test_bad_weights_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="both teacher weights are 0"):
        make_task(0.0, 0.0)
    with pytest.raises(ValueError, match=">= 0"):
        make_task(-1.0)
    cfg = dataclasses.replace(mvd_tiny(), teachers=MVDTeachers(video="somewhere"))
    with pytest.raises(ValueError, match="teachers.image is not set"):
        cfg.build_task()
