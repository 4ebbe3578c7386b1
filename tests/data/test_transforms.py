import pytest
import torch

from vidfm.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentConfig,
    VideoAugment,
    crop_and_resize,
    horizontal_flip,
    multi_crop,
    multiscale_boxes,
    random_resized_crop,
    to_float,
)


def test_multiscale_boxes_follow_the_official_scale_set():
    g = torch.Generator().manual_seed(0)
    boxes = multiscale_boxes(80, 100, 64, (1.0, 0.875, 0.75, 0.66), 1, 400, g)
    sides = {int(80 * s) for s in (1.0, 0.875, 0.75, 0.66)}  # 80, 70, 60, 52
    sides = {64 if abs(s - 64) < 3 else s for s in sides}
    for top, left, h, w in boxes:
        assert h in sides and w in sides
        assert 0 <= top <= 80 - h and 0 <= left <= 100 - w
    pairs = {(h, w) for _, _, h, w in boxes}
    assert (80, 80) in pairs and (80, 52) not in pairs  # |i - j| <= max_distort
    tops = {t for t, _, h, _ in boxes if h == 80}
    assert tops == {0}  # no free space vertically for full-height crops


def test_augment_keeps_one_box_per_sample_across_frames():
    video = torch.randint(0, 256, (3, 4, 48, 48, 3), dtype=torch.uint8)
    video[:, 1:] = video[:, :1]  # every frame equal: the crop must keep them equal
    aug = VideoAugment(AugmentConfig(size=32))
    out = aug(video, generator=torch.Generator().manual_seed(0), train=True)
    assert out.shape == (3, 3, 4, 32, 32)
    assert torch.equal(out[:, :, 0], out[:, :, 3])
    test = aug(video, train=False)
    assert test.shape == (3, 3, 4, 32, 32)
    # [0, 1] crop of the centre when no resize happens; normalize applies the config's mean/std
    aug48 = VideoAugment(AugmentConfig(size=48))
    big = aug48(video, train=False)
    torch.testing.assert_close(big[0, :, 0, 0, 0], video[0, 0, 0, 0].float() / 255)
    torch.testing.assert_close(
        aug48.normalize(big)[0, :, 0, 0, 0],
        (video[0, 0, 0, 0].float() / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD),
    )


def test_augment_takes_a_given_view():
    video = torch.randint(0, 256, (2, 3, 40, 48, 3), dtype=torch.uint8)
    view = {
        "box": torch.tensor([[0, 8, 40, 40], [4, 0, 32, 32]], dtype=torch.int32),
        "flip": torch.tensor([False, True]),
    }
    out = VideoAugment(AugmentConfig(size=32))(video, view=view)
    x = video.permute(0, 4, 1, 2, 3).float() / 255
    torch.testing.assert_close(out[0], crop_and_resize(x[:1], [(0, 8, 40, 40)], 32)[0])
    torch.testing.assert_close(out[1], x[1, :, :, 4:36, 0:32].flip(-1))


def test_flip_and_multi_crop():
    x = torch.arange(2 * 1 * 1 * 4 * 6, dtype=torch.float).view(2, 1, 1, 4, 6)
    assert torch.equal(horizontal_flip(x, 1.0, torch.Generator()), x.flip(-1))
    assert torch.equal(horizontal_flip(x, 0.0, torch.Generator()), x)
    crops = multi_crop(x, 4, 3)
    assert crops.shape == (6, 1, 1, 4, 4)
    assert torch.equal(crops[0], x[0, ..., 0:4]) and torch.equal(crops[2], x[0, ..., 2:6])
    assert torch.equal(crops[3], x[1, ..., 0:4])  # crops of one sample are consecutive


def test_fixed_offset_grids_and_random_offsets():
    def offsets(**kw):
        boxes = multiscale_boxes(80, 100, 64, (0.75,), 0, 600, torch.Generator().manual_seed(1), **kw)
        return {(t, l) for t, l, h, w in boxes}, {(h, w) for _, _, h, w in boxes}

    # One crop size 60x60: free space 20 x 40, quarter steps 5 and 10.
    five, sizes = offsets(more_fix_crop=False)
    assert sizes == {(60, 60)}
    assert five == {(0, 0), (0, 40), (20, 0), (20, 40), (10, 20)}  # corners and centre
    thirteen, _ = offsets()
    quarter = {(5, 10), (5, 30), (15, 10), (15, 30)}
    mids = {(10, 0), (10, 40), (20, 20), (0, 20)}
    assert thirteen == five | mids | quarter
    free, _ = offsets(fix_crop=False)
    assert len(free) > 100 and all(0 <= t <= 20 and 0 <= l <= 40 for t, l in free)
    assert {t for t, _ in free} >= {0, 20} and {l for _, l in free} >= {0, 40}  # both ends reachable


def test_random_resized_crop_is_crop_and_resize_of_the_sampled_boxes():
    video = torch.rand(4, 3, 2, 40, 50)
    out = random_resized_crop(video, 32, generator=torch.Generator().manual_seed(3))
    boxes = multiscale_boxes(40, 50, 32, (1.0, 0.875, 0.75, 0.66), 1, 4, torch.Generator().manual_seed(3))
    assert out.shape == (4, 3, 2, 32, 32)
    torch.testing.assert_close(out, crop_and_resize(video, boxes, 32))


def test_to_float_rejects_what_is_not_a_uint8_batch():
    assert to_float(torch.full((1, 2, 4, 4, 3), 255, dtype=torch.uint8)).shape == (1, 3, 2, 4, 4)
    with pytest.raises(ValueError, match="uint8"):
        to_float(torch.zeros(1, 2, 4, 4, 3))
    with pytest.raises(ValueError, match="uint8"):
        to_float(torch.zeros(2, 4, 4, 3, dtype=torch.uint8))
