import math

import numpy as np
import pytest

from vidfm.train.schedule import constant_schedule, cosine_schedule, linear_schedule


def test_cosine_warmup_endpoints_and_monotone_decay():
    base, final, total, warm = 1e-3, 1e-5, 50, 10
    s = cosine_schedule(base, final, total, warm, warmup_start=1e-6)
    assert s.shape == (total,) and s.dtype == np.float64
    # Warmup: linear from warmup_start to base, both ends included (np.linspace as VideoMAE).
    np.testing.assert_allclose(s[:warm], np.linspace(1e-6, base, warm))
    assert np.allclose(np.diff(s[:warm]), (base - 1e-6) / (warm - 1))
    # The cosine part starts at base and decays monotonically towards final.
    assert s[warm] == pytest.approx(base)
    assert np.all(np.diff(s[warm:]) < 0)
    n = total - warm
    assert s[-1] == pytest.approx(final + 0.5 * (base - final) * (1 + math.cos(math.pi * (n - 1) / n)))
    assert final < s[-1] < final + 0.01 * (base - final)
    # Midpoint of the cosine is the mean of base and final.
    assert s[warm + n // 2] == pytest.approx((base + final) / 2)


def test_cosine_without_warmup_and_increasing():
    s = cosine_schedule(0.1, 0.1, 7, 0)
    np.testing.assert_allclose(s, 0.1)
    up = cosine_schedule(0.04, 0.4, 20, 0)  # e.g. a weight-decay schedule that grows
    assert up[0] == pytest.approx(0.04) and np.all(np.diff(up) > 0)


def test_all_warmup_and_bad_arguments():
    s = cosine_schedule(1.0, 0.0, 5, 5)
    np.testing.assert_allclose(s, np.linspace(0, 1, 5))
    with pytest.raises(ValueError, match="warmup_steps"):
        cosine_schedule(1.0, 0.0, 5, 6)
    with pytest.raises(ValueError, match="total_steps"):
        cosine_schedule(1.0, 0.0, 0, 0)


def test_linear_and_constant():
    lin = linear_schedule(1.0, 0.0, 12, warmup_steps=2, warmup_start=0.5)
    np.testing.assert_allclose(lin[:2], [0.5, 1.0])
    np.testing.assert_allclose(lin[2:], np.linspace(1.0, 0.0, 10))
    const = constant_schedule(3.0, 6, warmup_steps=3)
    np.testing.assert_allclose(const, [0.0, 1.5, 3.0, 3.0, 3.0, 3.0])
