"""Frozen-feature probes: linear (logistic regression) and cosine kNN. Top-1 accuracy.

Both take features already extracted (``[N, D]`` float arrays) so many probes share one pass of the encoder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ProbeResult:
    """top1: test accuracy; detail: how the probe was chosen; predictions: the predicted test classes (where
    the probe keeps them)."""

    top1: float
    detail: str = ""
    predictions: np.ndarray | None = None


def _standardize(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu, sd = train.mean(0, keepdims=True), train.std(0, keepdims=True) + 1e-6
    return (train - mu) / sd, (test - mu) / sd


def linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    cs: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0),
    holdout: float = 0.2,
    seed: int = 0,
) -> ProbeResult:
    """Logistic regression on standardised features; the inverse regularisation C is chosen on a held-out
    stratified fold of the training set (never on test), then the probe is refit on all of train.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    def fit(x: np.ndarray, y: np.ndarray, c: float) -> LogisticRegression:
        return LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x, y)

    counts = np.bincount(train_y)
    stratify = train_y if counts[counts > 0].min() >= 2 else None
    tr_x, va_x, tr_y, va_y = train_test_split(
        train_x, train_y, test_size=holdout, random_state=seed, stratify=stratify
    )
    tr_x, va_x = _standardize(tr_x, va_x)
    scores = {c: float((fit(tr_x, tr_y, c).predict(va_x) == va_y).mean()) for c in cs}
    best = max(cs, key=lambda c: (scores[c], -abs(np.log10(c))))  # ties: the milder regularisation change
    full_x, te_x = _standardize(train_x, test_x)
    pred = fit(full_x, train_y, best).predict(te_x)
    return ProbeResult(float((pred == test_y).mean()), f"C={best:g} (held-out {scores[best]:.3f})", pred)


def knn_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    k: int = 20,
    temperature: float = 0.07,
) -> ProbeResult:
    """Cosine kNN with similarity-weighted votes exp(s/τ) (the DINO/InstDisc protocol, k=20, τ=0.07)."""
    a = train_x / (np.linalg.norm(train_x, axis=1, keepdims=True) + 1e-12)
    b = test_x / (np.linalg.norm(test_x, axis=1, keepdims=True) + 1e-12)
    sim = b @ a.T  # [Nte, Ntr]
    k = min(k, len(train_x))
    idx = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    top_sim = np.take_along_axis(sim, idx, 1)
    votes = np.zeros((len(test_x), int(max(train_y.max(), test_y.max())) + 1))
    np.add.at(votes, (np.arange(len(test_x))[:, None], train_y[idx]), np.exp(top_sim / temperature))
    return ProbeResult(float((votes.argmax(1) == test_y).mean()), f"k={k}")
