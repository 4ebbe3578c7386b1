import numpy as np

from vidfm.eval.probes import knn_probe, linear_probe


def _blobs(n: int, seed: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(99).normal(size=(4, 16)) * 3
    y = rng.integers(0, 4, n)
    return centers[y] + rng.normal(size=(n, 16)) * noise, y


def test_probes_separate_clusters_and_fail_on_noise():
    x, y = _blobs(400, 0, 1.0)
    xt, yt = _blobs(200, 1, 1.0)
    assert linear_probe(x, y, xt, yt).top1 > 0.95
    assert knn_probe(x, y, xt, yt).top1 > 0.95
    # labels unrelated to the features: both probes must drop to about chance
    rng = np.random.default_rng(2)
    assert linear_probe(x, rng.integers(0, 4, 400), xt, rng.integers(0, 4, 200)).top1 < 0.4
    assert knn_probe(x, rng.integers(0, 4, 400), xt, rng.integers(0, 4, 200)).top1 < 0.4


def test_linear_probe_chooses_c_on_train_only():
    x, y = _blobs(200, 0, 3.0)
    xt, yt = _blobs(100, 1, 3.0)
    a = linear_probe(x, y, xt, yt, seed=0)
    b = linear_probe(x, y, xt, 1 - yt.clip(0, 1), seed=0)  # other test labels cannot change the chosen C
    assert a.detail.split()[0] == b.detail.split()[0]
