"""Cross-frame cosine similarity of teacher features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidfm.teachers.analysis import (
    Similarity,
    SimilarityMeter,
    format_similarity,
    frame_similarity,
    plot_similarity,
)


def test_static_features_are_fully_similar_and_changing_ones_are_not() -> None:
    g = torch.Generator().manual_seed(0)
    frame = torch.randn(2, 1, 9, 16, generator=g)
    static = frame.expand(2, 4, 9, 16).reshape(2, 36, 16)
    s = frame_similarity(static, (4, 3, 3))
    torch.testing.assert_close(s, torch.ones(2, 4, 4))
    moving = torch.randn(2, 36, 16, generator=g)
    s = frame_similarity(moving, (4, 3, 3))
    torch.testing.assert_close(torch.diagonal(s, dim1=1, dim2=2), torch.ones(2, 4))
    assert s[0, 0, 1].abs() < 0.5  # independent random features are nearly orthogonal


def test_similarity_is_per_position_not_of_the_pooled_map() -> None:
    # frame 1 swaps the features of the two positions: same pooled feature, different map
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    tokens = torch.stack([a, b, b, a]).view(1, 4, 2)  # grid (2, 1, 2)
    assert frame_similarity(tokens, (2, 1, 2))[0, 0, 1].item() == pytest.approx(0.0, abs=1e-6)


def test_meter_summary_and_distance_curve() -> None:
    meter = SimilarityMeter()
    angles = torch.tensor([0.0, 0.5, 1.0]) * torch.pi / 2  # the feature turns by 45° per time step
    feats = torch.stack([torch.cos(angles), torch.sin(angles)], -1)  # [T=3, 2]
    for _ in range(2):
        meter.update(feats.view(1, 3, 2).expand(3, 3, 2), (3, 1, 1))
    r = meter.result()
    assert r.clips == 6
    expected = np.cos(np.array([[0, 1, 2], [1, 0, 1], [2, 1, 0]]) * np.pi / 4)
    np.testing.assert_allclose(r.matrix, expected, atol=1e-6)
    np.testing.assert_allclose(r.by_distance(), [1.0, np.cos(np.pi / 4), 0.0], atol=1e-6)
    assert r.off_diagonal == pytest.approx((4 * np.cos(np.pi / 4)) / 6, abs=1e-6)
    with pytest.raises(ValueError, match="grid changed"):
        meter.update(torch.randn(1, 4, 2), (4, 1, 1))
    with pytest.raises(ValueError, match="no clips"):
        SimilarityMeter().result()


def test_table_and_plot(tmp_path) -> None:
    results = {
        "image": Similarity(np.array([[1.0, 0.9], [0.9, 1.0]]), 4),
        "video": Similarity(np.array([[1.0, 0.4], [0.4, 1.0]]), 4),
    }
    text = format_similarity(results)
    assert "| image | 4 | 0.900 | 0.900 |" in text and "| video | 4 | 0.400 | 0.400 |" in text
    pytest.importorskip("matplotlib")
    plot_similarity(results, tmp_path / "sim.png")
    assert (tmp_path / "sim.png").stat().st_size > 1000
