"""Statistics on known inputs."""
import math

import numpy as np
import pytest

from rankbits.stats import mean_ci, paired_bootstrap, paired_test, sign_flip_p


def test_t_interval_over_seeds():
    m, lo, hi = mean_ci([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, df=2) x sd 1 / sqrt(3)
    assert m == 2.0 and lo == pytest.approx(2 - half) and hi == pytest.approx(2 + half)
    m, lo, hi = mean_ci([0.8])
    assert m == 0.8 and math.isnan(lo) and math.isnan(hi)  # one seed: no interval from seeds


def test_paired_t_and_exact_sign_flip():
    r = paired_test([1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0])
    assert r["n"] == 4 and r["diff"] == 2.5
    assert r["t_p"] == pytest.approx(0.030466, abs=1e-5)  # t = 3.873, df = 3
    assert r["sign_flip_p"] == pytest.approx(2 / 16)  # only all-plus and all-minus reach 2.5
    same = paired_test([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert same["diff"] == 0 and same["t_p"] == 1.0 and same["sign_flip_p"] == 1.0
    assert sign_flip_p([1.0, -1.0]) == 1.0


def test_paired_bootstrap_over_examples():
    y = np.array([0, 1] * 200)
    acc = lambda t, p: float((t == p).mean())  # noqa: E731
    r = paired_bootstrap(y, y, np.zeros_like(y), acc, n_boot=500)
    assert r["diff"] == 0.5 and 0.4 < r["ci_low"] < 0.5 < r["ci_high"] < 0.6 and r["p"] == 0.0
    r = paired_bootstrap(y, y, y, acc, n_boot=200)
    assert r["diff"] == 0 and r["ci_low"] == r["ci_high"] == 0 and r["p"] == 1.0
    with pytest.raises(ValueError, match="same length"):
        paired_bootstrap(y, y[:3], y, acc)


def test_monte_carlo_sign_flip_p_is_never_zero():
    """Above 16 seeds the sign patterns are drawn; the observed one counts as a draw, so 20
    differences all of one sign give (hits + 1) / (draws + 1), not 0."""
    p = sign_flip_p([1.0] * 20, draws=1000)
    assert 0 < p <= 2 / 1001  # the 2 extreme patterns are 2 of 2^20: about never drawn
    assert sign_flip_p(np.linspace(-1, 1, 20), draws=1000) > 0.99  # mean 0: (almost) every draw reaches it


def test_holm_and_p_formatting():
    from rankbits.stats import format_p, holm

    adj = holm([0.01, 0.04, 0.03, float("nan")])
    assert list(adj[:3]) == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(adj[3])
    assert format_p(0.0, 2000) == "< 1/2000" and format_p(0.0) != "0"
    assert format_p(0.01234) == "0.0123" and format_p(float("nan")) == "—"


def test_vectorised_bootstrap_of_a_mean_metric_is_the_same_bootstrap():
    y = np.random.default_rng(1).integers(0, 2, 300)
    pa, pb = y.copy(), y.copy()
    pa[:30] = 1 - pa[:30]
    pb[:60] = 1 - pb[:60]
    acc = lambda t, p: float((t == p).mean())  # noqa: E731
    slow = paired_bootstrap(y, pa, pb, acc, n_boot=400)
    fast = paired_bootstrap(y, pa, pb, acc, n_boot=400, per_example=lambda t, p: t == p)
    assert fast["diff"] == slow["diff"] == pytest.approx(0.1)
    assert fast["ci_low"] == pytest.approx(slow["ci_low"]) and fast["ci_high"] == pytest.approx(slow["ci_high"])
    assert fast["p"] == slow["p"]
