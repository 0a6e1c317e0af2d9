"""Statistics for comparing arms: confidence intervals over seeds, paired tests against a
baseline over seeds, and a paired bootstrap over evaluation examples for single-seed studies.

- ``mean_ci``: Student-t interval over seeds (n >= 2); undefined (NaN) for n = 1.
- ``paired_test``: differences paired by seed; mean, t interval, paired t-test p-value, and an
  exact sign-flip permutation p-value (all 2^n sign patterns; Monte Carlo above 2^16), which
  stays valid for the small n studies have.
- ``paired_bootstrap``: resamples evaluation examples (the same indices for both arms) and
  recomputes the metric difference; percentile interval and a two-sided p-value.
"""
from __future__ import annotations

import itertools
import math
from typing import Callable, Sequence

import numpy as np
from scipy import stats as st

LEVEL = 0.95


def mean_ci(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval over ``values`` (NaN bounds when n < 2)."""
    x = np.asarray(values, dtype=float)
    m = float(x.mean()) if len(x) else math.nan
    if len(x) < 2:
        return m, math.nan, math.nan
    half = float(st.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return m, m - half, m + half


def sign_flip_p(diffs: Sequence[float], max_exact: int = 16, draws: int = 100_000, seed: int = 0) -> float:
    """Two-sided p-value of mean(diffs) under the null that each difference is symmetric around
    0: the share of sign patterns whose |mean| is at least the observed one."""
    d = np.asarray(diffs, dtype=float)
    n = len(d)
    if n == 0:
        return math.nan
    observed = abs(d.mean())
    if n <= max_exact:  # every pattern, the observed one among them: p >= 1 / 2^n
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        return float((np.abs((signs * d).mean(axis=1)) >= observed - 1e-12).mean())
    # Monte Carlo: count the observed pattern as one draw, so p is never 0 (Phipson & Smyth 2010)
    signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(draws, n))
    hits = int((np.abs((signs * d).mean(axis=1)) >= observed - 1e-12).sum())
    return (hits + 1) / (draws + 1)


def paired_test(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> dict:
    """``a`` vs ``b`` paired by position (seed): mean difference a - b, its t interval, the
    paired t-test p-value and the sign-flip permutation p-value."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    mean, low, high = mean_ci(d, level)
    if len(d) >= 2 and d.std(ddof=1) > 0:
        t_p = float(st.ttest_rel(np.asarray(a, float), np.asarray(b, float)).pvalue)
    elif len(d) >= 2:  # every pair differs by the same amount
        t_p = 1.0 if mean == 0 else 0.0
    else:
        t_p = math.nan
    return {"n": int(len(d)), "diff": mean, "ci_low": low, "ci_high": high, "t_p": t_p,
            "sign_flip_p": sign_flip_p(d), "method": f"paired t ({level:.0%} CI), sign-flip permutation"}


def paired_bootstrap(labels: Sequence, pred_a: Sequence, pred_b: Sequence,
                     metric: Callable[[Sequence, Sequence], float], n_boot: int = 2000,
                     seed: int = 0, level: float = LEVEL) -> dict:
    """Bootstrap over evaluation examples of metric(a) - metric(b), both arms resampled with the
    same indices; percentile interval, and p = 2 x the share of resamples on the other side of 0."""
    y, pa, pb = (np.asarray(v) for v in (labels, pred_a, pred_b))
    if not len(y) == len(pa) == len(pb):
        raise ValueError("labels and both prediction lists must have the same length")
    rng = np.random.default_rng(seed)
    observed = metric(y, pa) - metric(y, pb)
    boots = np.empty(n_boot)
    for i in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        boots[i] = metric(y[idx], pa[idx]) - metric(y[idx], pb[idx])
    low, high = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    p = 2 * min((boots <= 0).mean(), (boots >= 0).mean())
    return {"n_examples": int(len(y)), "diff": float(observed), "ci_low": float(low),
            "ci_high": float(high), "p": float(min(1.0, p)),
            "method": f"paired bootstrap over examples ({n_boot} resamples, percentile {level:.0%} CI)"}
