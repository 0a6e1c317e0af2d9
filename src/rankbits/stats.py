"""Statistics for comparing arms: confidence intervals over seeds, paired tests against a
baseline over seeds, and a paired bootstrap over evaluation examples for single-seed studies.

- ``mean_ci``: Student-t interval over seeds (n >= 2); undefined (NaN) for n = 1.
- ``paired_test``: differences paired by seed; mean, t interval, paired t-test p-value, and an
  exact sign-flip permutation p-value (all 2^n sign patterns; Monte Carlo above 2^16), which
  stays valid for the small n studies have.
- ``paired_bootstrap``: resamples evaluation examples (the same indices for both arms) and
  recomputes the metric difference; percentile interval and a two-sided p-value.
- ``outcome``: what a comparison can say, one of three words: *differs* (adjusted p below
  alpha), *equivalent* within a margin ±m (the (1 - 2 alpha) interval of the difference lies
  inside ±m: two one-sided tests), or *unresolved* (neither) — never "tied", which reads as
  proof of equivalence. ``detectable`` is the smallest difference a paired comparison of n seeds
  finds with 80% power at alpha, and ``seeds_for`` how many seeds would find a difference of m.
"""
from __future__ import annotations

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
    if x.std() == 0:
        return m, m, m
    ci = st.ttest_1samp(x, 0.0).confidence_interval(level)
    return m, float(ci.low), float(ci.high)


def sign_flip_p(diffs: Sequence[float], max_exact: int = 16, draws: int = 100_000, seed: int = 0) -> float:
    """Two-sided p-value of mean(diffs) under the null that each difference is symmetric around
    0 (``scipy.stats.permutation_test``, sign flips): exact over all 2^n patterns up to
    ``max_exact`` seeds, else Monte Carlo with the observed pattern counted as one draw, so p is
    never 0 (Phipson & Smyth 2010)."""
    d = np.asarray(diffs, dtype=float)
    n = len(d)
    if n == 0:
        return math.nan
    if not d.any():
        return 1.0
    res = st.permutation_test((d,), lambda x, axis: np.mean(x, axis=axis), vectorized=True,
                              permutation_type="samples", alternative="two-sided",
                              n_resamples=2**n if n <= max_exact else draws, rng=seed)
    return float(min(1.0, res.pvalue))


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment (family-wise error): NaN entries are left out and stay NaN."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m, running = len(order), 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[i]))
        out[i] = running
    return out


def format_p(p: float, n: int | None = None) -> str:
    """A p-value as people read it: 3 significant digits; below the test's resolution (one in
    ``n`` resamples or sign patterns) ``< 1/n``; never ``0``."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "—"
    if n and p < 1 / n:
        return f"< 1/{n}"
    if p == 0:
        return "< 1e-300"
    return f"{p:.3g}"


def paired_test(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> dict:
    """``a`` vs ``b`` paired by position (seed): mean difference a - b, its t interval, the
    paired t-test p-value (``scipy.stats.ttest_rel``) and the sign-flip permutation p-value."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = a - b
    mean, low, high = mean_ci(d, level)
    sd = spread(d)
    if len(d) >= 2 and sd > 0:
        t_p = float(st.ttest_rel(a, b).pvalue)
    elif len(d) >= 2 and mean == 0:  # every pair identical
        t_p = 1.0
    else:
        # one pair, or every pair differs by the same nonzero amount (accuracy on a fixed test
        # set does this): the t statistic is infinite and its interval has zero width, which
        # would read as certainty from two seeds. Undefined: callers use the sign-flip p.
        t_p, low, high = math.nan, math.nan, math.nan
    return {"n": int(len(d)), "diff": mean, "ci_low": low, "ci_high": high, "t_p": t_p,
            "sign_flip_p": sign_flip_p(d), "sd": sd,
            "method": f"paired t ({level:.0%} CI), sign-flip permutation"}


POWER = 0.8


def spread(d: np.ndarray) -> float:
    """Sample standard deviation of paired differences, 0 where it is floating-point noise
    (0.86 - 0.84 and 0.87 - 0.85 differ in the 17th digit; a t-test would call that certainty)."""
    if len(d) < 2:
        return math.nan
    sd = float(np.std(d, ddof=1))
    return 0.0 if sd <= 1e-12 * max(1.0, float(np.abs(d).max())) else sd


def detectable(sd: float, n: int, alpha: float = 1 - LEVEL, power: float = POWER) -> float:
    """The smallest true mean difference a two-sided paired t-test of ``n`` pairs whose
    differences have standard deviation ``sd`` detects with probability ``power`` at ``alpha``:
    (t(1 - alpha/2, n-1) + t(power, n-1)) sd / sqrt(n). NaN when it cannot be estimated (fewer
    than two pairs, or sd not finite)."""
    if n < 2 or not math.isfinite(sd):
        return math.nan
    return float((st.t.ppf(1 - alpha / 2, n - 1) + st.t.ppf(power, n - 1)) * sd / math.sqrt(n))


def seeds_for(margin: float, sd: float, alpha: float = 1 - LEVEL, power: float = POWER,
              most: int = 10_000) -> int | None:
    """How many seeds (pairs) make ``detectable`` at most ``margin``, with the observed ``sd``;
    None when sd is unknown or more than ``most`` would be needed."""
    if not (math.isfinite(sd) and margin > 0):
        return None
    if sd == 0:
        return 2
    n = 2
    while detectable(sd, n, alpha, power) > margin:
        n = n + 1 if n < 64 else int(n * 1.1) + 1
        if n > most:
            return None
    return n


def equivalence_interval(d: Sequence[float], alpha: float = 1 - LEVEL) -> tuple[float, float]:
    """The (1 - 2 alpha) t interval of the mean paired difference (two one-sided tests at alpha:
    equivalence within ±m when it lies inside ±m). NaN when undefined (as in ``paired_test``)."""
    d = np.asarray(d, dtype=float)
    if len(d) < 2 or not spread(d) > 0:
        return math.nan, math.nan
    _, low, high = mean_ci(d, 1 - 2 * alpha)
    return low, high


DIFFERS, EQUIVALENT, UNRESOLVED = "differs", "equivalent", "unresolved"


def outcome(p_adjusted: float, eq_low: float, eq_high: float, margin: float, alpha: float = 1 - LEVEL) -> str:
    """``differs`` when the (adjusted) p is below alpha; else ``equivalent`` when the (1 - 2
    alpha) interval lies inside ±margin; else ``unresolved``."""
    if math.isfinite(p_adjusted) and p_adjusted < alpha:
        return DIFFERS
    if math.isfinite(eq_low) and math.isfinite(eq_high) and -margin < eq_low and eq_high < margin:
        return EQUIVALENT
    return UNRESOLVED


def resolve_margin(margin, reference: float) -> float:
    """A margin as configured: a number in the metric's units, or a string ``"2%"`` relative to
    ``reference`` (the baseline arm's mean)."""
    if isinstance(margin, str) and margin.strip().endswith("%"):
        return abs(reference) * float(margin.strip()[:-1]) / 100
    return float(margin)


def paired_bootstrap(labels: Sequence, pred_a: Sequence, pred_b: Sequence,
                     metric: Callable[[Sequence, Sequence], float], n_boot: int = 2000,
                     seed: int = 0, level: float = LEVEL,
                     per_example: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> dict:
    """Bootstrap over evaluation examples of metric(a) - metric(b), both arms resampled with the
    same indices; percentile interval, and p = 2 x the share of resamples on the other side of 0.
    ``per_example``: for a metric that is the mean of per-example scores (accuracy), those scores;
    the resamples are then computed at once (the same indices, the same result, far faster)."""
    y, pa, pb = (np.asarray(v) for v in (labels, pred_a, pred_b))
    if not len(y) == len(pa) == len(pb):
        raise ValueError("labels and both prediction lists must have the same length")
    rng = np.random.default_rng(seed)
    observed = metric(y, pa) - metric(y, pb)
    if per_example is not None:
        idx = rng.integers(0, len(y), (n_boot, len(y)))
        sa, sb = per_example(y, pa).astype(float), per_example(y, pb).astype(float)
        boots = sa[idx].mean(axis=1) - sb[idx].mean(axis=1)
    else:
        boots = np.empty(n_boot)
        for i in range(n_boot):
            idx = rng.integers(0, len(y), len(y))
            boots[i] = metric(y[idx], pa[idx]) - metric(y[idx], pb[idx])
    low, high = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    # the (1 - 2 alpha) interval, alpha = 1 - level: equivalence by two one-sided tests
    eq_low, eq_high = np.quantile(boots, [1 - level, level])
    p = 2 * min((boots <= 0).mean(), (boots >= 0).mean())
    return {"n_examples": int(len(y)), "diff": float(observed), "ci_low": float(low),
            "ci_high": float(high), "p": float(min(1.0, p)), "se": float(boots.std(ddof=1)),
            "eq_low": float(eq_low), "eq_high": float(eq_high),
            "method": f"paired bootstrap over examples ({n_boot} resamples, percentile {level:.0%} CI)"}
