import torch

from vidfm.objectives.pixel import patchify, pixel_target, unpatchify


def test_patchify_round_trip_and_token_order():
    video = torch.randn(2, 3, 4, 16, 24)
    tokens = patchify(video, tubelet=2, patch=8)  # grid (2, 2, 3)
    assert tokens.shape == (2, 12, 2 * 8 * 8, 3)
    # token index = t*H*W + h*W + w: token 1*6 + 1*3 + 2 is tubelet t=1, row 1, column 2
    expected = video[0, :, 2:4, 8:16, 16:24].permute(1, 2, 3, 0).reshape(-1, 3)
    assert torch.equal(tokens[0, 6 + 3 + 2], expected)
    back = unpatchify(tokens.flatten(2), (2, 2, 3), 2, 8)
    assert torch.equal(back, video)


def test_pixel_target_matches_official_normalisation():
    torch.manual_seed(0)
    raw = torch.rand(1, 3, 2, 16, 16)
    target = pixel_target(raw, tubelet=2, patch=8, normalize=True)
    # written out for one patch: per-channel mean / unbiased std over its 2*8*8 pixels
    patch = raw[0, :, :, :8, 8:16].reshape(3, -1)  # token (0, 0, 1)
    ref = ((patch - patch.mean(1, keepdim=True)) / (patch.var(1, keepdim=True).sqrt() + 1e-6)).T.reshape(-1)
    torch.testing.assert_close(target[0, 1], ref, atol=1e-5, rtol=1e-5)
    plain = pixel_target(raw, tubelet=2, patch=8, normalize=False)
    torch.testing.assert_close(plain[0, 1], patch.T.reshape(-1), atol=1e-6, rtol=1e-6)


def test_pixel_target_for_an_index_equals_the_gathered_full_target():
    video = torch.rand(2, 3, 4, 16, 24)
    index = torch.tensor([[0, 5, 11], [3, 4, 7]])
    full = pixel_target(video, tubelet=2, patch=8)
    some = pixel_target(video, tubelet=2, patch=8, index=index)
    torch.testing.assert_close(some, torch.gather(full, 1, index[..., None].expand(-1, -1, full.shape[-1])))


def test_pixel_target_eps_floors_the_patch_std():
    """A near-flat patch (codec noise only) is blown up to unit variance with the official 1e-6, not with 0.05."""
    video = 0.5 + 0.004 * torch.randn(1, 3, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    assert pixel_target(video, 2, 8).std() > 0.99
    assert pixel_target(video, 2, 8, eps=0.05).std() < 0.1
