"""Bootstrap intervals and McNemar's test, against hand-computed values and scipy."""

import math

import numpy as np
import pytest
from scipy import stats

from adbench.metrics import MCNEMAR_EXACT_BELOW, bootstrap_ci, mcnemar


def _mean_stat(x):
    x = np.asarray(x, dtype=float)
    return lambda idx: x[idx].mean(axis=1)


def test_bootstrap_of_a_proportion_matches_the_exact_binomial_quantiles():
    # resampling n values with replacement from 10 ones and 10 zeros: the resampled
    # mean is k/20 with k ~ Binomial(20, 1/2). By hand: P(k <= 5) = 0.0207,
    # P(k <= 6) = 0.0577, P(k <= 13) = 0.9423, P(k <= 14) = 0.9793, so the 2.5% and
    # 97.5% quantiles are 6/20 and 14/20.
    x = [1] * 10 + [0] * 10
    assert stats.binom.cdf(5, 20, 0.5) == pytest.approx(0.0207, abs=1e-4)
    assert stats.binom.cdf(14, 20, 0.5) == pytest.approx(0.9793, abs=1e-4)
    lo, hi = bootstrap_ci(_mean_stat(x), 20, n_resamples=40000, seed=1)
    assert (float(lo), float(hi)) == (0.30, 0.70)


def test_bootstrap_agrees_with_scipy_percentile_bootstrap():
    rng = np.random.default_rng(7)
    x = rng.normal(3.0, 2.0, size=200)
    lo, hi = bootstrap_ci(_mean_stat(x), len(x), n_resamples=20000, seed=0)
    ref = stats.bootstrap((x,), np.mean, method="percentile", n_resamples=20000, random_state=0).confidence_interval
    assert float(lo) == pytest.approx(ref.low, abs=0.02)
    assert float(hi) == pytest.approx(ref.high, abs=0.02)
    # and with the normal-theory interval of a mean (n = 200, so they nearly coincide)
    se = x.std(ddof=1) / math.sqrt(len(x))
    assert float(lo) == pytest.approx(x.mean() - 1.96 * se, abs=0.03)
    assert float(hi) == pytest.approx(x.mean() + 1.96 * se, abs=0.03)


def test_bootstrap_is_seeded_vectorised_and_bounded_in_memory():
    x = np.arange(50) % 3 == 0
    a = bootstrap_ci(_mean_stat(x), 50, n_resamples=500, seed=3)
    b = bootstrap_ci(_mean_stat(x), 50, n_resamples=500, seed=3, max_cells=60)  # chunks of one resample
    c = bootstrap_ci(_mean_stat(x), 50, n_resamples=500, seed=4)
    assert a == b
    assert a != c
    # a statistic of k values gives k intervals
    lo, hi = bootstrap_ci(lambda idx: np.stack([x[idx].mean(1), 2 * x[idx].mean(1)], axis=1), 50, seed=3)
    assert lo.shape == (2,) and hi[1] == pytest.approx(2 * hi[0])


def test_stratified_bootstrap_resamples_within_each_stratum():
    # two strata of constant values: any resample within strata has the same mean of
    # stratum means (an interval of width 0); pooled resampling does not.
    x = np.array([1.0] * 5 + [0.0] * 15)
    strata = ["a"] * 5 + ["b"] * 15

    def mean_of_strata(idx):
        v = x[idx]
        return (v[:, :5].mean(1) + v[:, 5:].mean(1)) / 2

    lo, hi = bootstrap_ci(mean_of_strata, 20, strata=strata, n_resamples=2000)
    assert float(lo) == float(hi) == 0.5
    lo, hi = bootstrap_ci(mean_of_strata, 20, n_resamples=2000)
    assert float(hi) - float(lo) > 0.2


def test_bootstrap_rejects_bad_arguments():
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci(_mean_stat([1, 0]), 2, confidence=1.5)
    with pytest.raises(ValueError, match="strata has 1 keys for 2"):
        bootstrap_ci(_mean_stat([1, 0]), 2, strata=["a"])


def _pairs(only_a, only_b, both=5, neither=3):
    a = [True] * only_a + [False] * only_b + [True] * both + [False] * neither
    b = [False] * only_a + [True] * only_b + [True] * both + [False] * neither
    return a, b


def test_mcnemar_exact_by_hand_and_against_scipy_binomtest():
    # 10 discordant pairs one way, 2 the other: exact two-sided p = 2 * P(X <= 2),
    # X ~ Binomial(12, 1/2) = 2 * (1 + 12 + 66) / 4096 = 158 / 4096
    res = mcnemar(*_pairs(10, 2))
    assert (res.only_a, res.only_b, res.method) == (10, 2, "exact")
    assert res.p_value == pytest.approx(158 / 4096, rel=1e-12)
    assert res.p_value == pytest.approx(stats.binomtest(2, 12, 0.5).pvalue, rel=1e-12)
    assert res.statistic == pytest.approx((10 - 2 - 1) ** 2 / 12)  # chi-square (corrected), reported too
    # symmetric and order-free
    assert mcnemar(*_pairs(2, 10)).p_value == pytest.approx(res.p_value)
    for k in range(0, 12):
        assert mcnemar(*_pairs(k, 12 - k)).p_value == pytest.approx(stats.binomtest(k, 12, 0.5).pvalue, rel=1e-9)


def test_mcnemar_chi_square_with_continuity_correction_by_hand_and_against_scipy():
    # 30 vs 12 discordant pairs: statistic (|30 - 12| - 1)^2 / 42 = 289 / 42
    res = mcnemar(*_pairs(30, 12))
    assert res.method == "chi2"
    assert res.statistic == pytest.approx(289 / 42)
    assert res.p_value == pytest.approx(stats.chi2.sf(289 / 42, df=1), rel=1e-10)
    assert res.p_value == pytest.approx(0.00871, abs=1e-5)  # by hand from the chi-square table
    # the switch: below 25 discordant pairs the exact test, from 25 on the approximation
    assert mcnemar(*_pairs(20, MCNEMAR_EXACT_BELOW - 1 - 20)).method == "exact"
    assert mcnemar(*_pairs(20, MCNEMAR_EXACT_BELOW - 20)).method == "chi2"


def test_mcnemar_edge_cases():
    res = mcnemar([True, False], [True, False])  # no discordant pairs: no evidence either way
    assert (res.statistic, res.p_value) == (0.0, 1.0)
    assert mcnemar(*_pairs(15, 15)).p_value == pytest.approx(1.0)  # b = c: corrected statistic 0
    with pytest.raises(ValueError, match="equally long"):
        mcnemar([True], [True, False])
