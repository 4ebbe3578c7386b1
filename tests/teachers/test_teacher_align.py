"""Token-grid alignment between teachers and a tubelet student."""

from __future__ import annotations

import pytest
import torch

from vidfm.teachers.align import align_tokens, target_dim, teacher_frames


def test_first_frame_of_each_tubelet() -> None:
    video = torch.arange(8.0).view(1, 1, 8, 1, 1).expand(2, 3, 8, 4, 4)
    picked = teacher_frames(video, 2, "first")
    assert picked.shape == (2, 3, 4, 4, 4)
    assert picked[0, 0, :, 0, 0].tolist() == [0.0, 2.0, 4.0, 6.0]
    assert teacher_frames(video, 2, "concat") is video
    with pytest.raises(ValueError, match="tubelets of 3"):
        teacher_frames(video, 3)


def test_first_mode_is_identity_on_matching_grids() -> None:
    tokens = torch.randn(2, 4 * 3 * 3, 5)
    assert align_tokens(tokens, (4, 3, 3), (4, 3, 3)) is tokens


def test_concat_puts_the_tubelet_frames_on_channels() -> None:
    # token value = 100·frame + position, so the layout can be read back
    frame = torch.arange(4.0).view(4, 1) * 100
    pos = torch.arange(6.0).view(1, 6)
    tokens = (frame + pos).reshape(1, 24, 1).expand(1, 24, 2)  # grid (4, 2, 3), D = 2
    out = align_tokens(tokens, (4, 2, 3), (2, 2, 3), mode="concat")
    assert out.shape == (1, 12, 4)
    # student token (t=1, position 5) <- frames 2 and 3 at position 5, frame-major on channels
    assert out[0, 6 + 5].tolist() == [205.0, 205.0, 305.0, 305.0]
    assert target_dim(2, 2, "concat", per_frame=True) == 4
    assert target_dim(2, 2, "concat", per_frame=False) == 2


def test_time_mismatch_and_space_mismatch_are_errors() -> None:
    tokens = torch.randn(1, 8 * 4, 3)
    with pytest.raises(ValueError, match="frames\\[::tubelet\\]"):
        align_tokens(tokens, (8, 2, 2), (4, 2, 2), mode="first")
    with pytest.raises(ValueError, match="differs from the student's"):
        align_tokens(tokens, (8, 2, 2), (8, 4, 4))
    with pytest.raises(ValueError, match="do not fill"):
        align_tokens(tokens[:, 1:], (8, 2, 2), (8, 2, 2))


def test_spatial_resize_keeps_constant_maps() -> None:
    tokens = torch.ones(2, 2 * 7 * 7, 3) * torch.tensor([1.0, 2.0, 3.0])
    out = align_tokens(tokens, (2, 7, 7), (2, 4, 4), resize=True)
    assert out.shape == (2, 32, 3)
    torch.testing.assert_close(out, torch.ones(2, 32, 3) * torch.tensor([1.0, 2.0, 3.0]))
