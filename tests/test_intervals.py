"""Bootstrap intervals over instants (key2mesh.eval.intervals)."""

from __future__ import annotations

import numpy as np
import pytest

from key2mesh.eval.intervals import bootstrap_mean, paired_difference


def test_two_clusters_by_hand():
    """Two instants with means 0 and 10 (equal sizes): a draw of two instants has mean 0, 5 or 10
    with probabilities 1/4, 1/2, 1/4, so the 95 % interval is [0, 10]. Resampled by sample
    instead, the 6 values would give a narrower interval."""
    values = [0.0, 0.0, 0.0, 10.0, 10.0, 10.0]
    ci = bootstrap_mean(values, clusters=[7, 7, 7, 9, 9, 9])
    assert ci.mean == 5.0 and ci.low == 0.0 and ci.high == 10.0
    by_sample = bootstrap_mean(values)
    assert by_sample.low > 0.0 and by_sample.high < 10.0


def test_unequal_clusters_weigh_by_samples():
    # instant sizes 1 and 3: drawing the big one twice gives mean 2, the small twice 8, mixed 3.5
    ci = bootstrap_mean([8.0, 2.0, 2.0, 2.0], clusters=[0, 1, 1, 1], resamples=4000)
    assert ci.mean == pytest.approx(3.5) and ci.low == 2.0 and ci.high == 8.0


def test_constant_values_and_errors():
    ci = bootstrap_mean(np.full(20, 3.0))
    assert (ci.mean, ci.low, ci.high) == (3.0, 3.0, 3.0) and ci.text() == "3.0 [3.0, 3.0]"
    with pytest.raises(ValueError, match="no values"):
        bootstrap_mean([])
    with pytest.raises(ValueError, match="cluster ids"):
        bootstrap_mean([1.0, 2.0], clusters=[0])
    with pytest.raises(ValueError, match="level"):
        bootstrap_mean([1.0], level=1.5)
    with pytest.raises(ValueError, match="resamples"):  # was an IndexError from np.quantile
        bootstrap_mean([1.0, 2.0], resamples=0)
    with pytest.raises(ValueError, match="differ in length"):
        paired_difference([1.0], [1.0, 2.0])


def test_matches_the_normal_interval_for_many_samples():
    x = np.random.default_rng(1).normal(50.0, 10.0, 4000)
    ci = bootstrap_mean(x, resamples=4000)
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    assert ci.low == pytest.approx(x.mean() - half, abs=0.1 * half)
    assert ci.high == pytest.approx(x.mean() + half, abs=0.1 * half)


def test_paired_difference_sees_what_unpaired_intervals_hide():
    """Method a is 1 mm better on every sample, but the samples vary by ±30 mm: the two intervals
    overlap, the paired one excludes 0."""
    rng = np.random.default_rng(0)
    b = rng.normal(90.0, 30.0, 200)
    a = b - 1.0
    ia, ib = bootstrap_mean(a), bootstrap_mean(b)
    assert ia.high > ib.low  # overlapping
    d = paired_difference(a, b)
    assert d.mean == pytest.approx(-1.0) and d.excludes_zero and d.high < 0
    assert not paired_difference(b, b).excludes_zero


def test_cluster_ids_are_compared_exactly():
    """Ids are grouped as given: two int64 ids that collide as float64 (2**53, 2**53 + 1) are two
    clusters, like 0 and 1 (interval [0, 10], see test_two_clusters_by_hand); names work too."""
    values = [0.0, 0.0, 10.0, 10.0]
    big = np.array([2**53, 2**53, 2**53 + 1, 2**53 + 1], dtype=np.int64)
    ci = bootstrap_mean(values, clusters=big)
    assert (ci.low, ci.high) == (0.0, 10.0)
    named = bootstrap_mean(values, clusters=["seq_a", "seq_a", "seq_b", "seq_b"])
    assert (named.low, named.high) == (0.0, 10.0)


def test_one_cluster_has_no_interval():
    """Every resample of a single cluster is that cluster: the spread says nothing about
    uncertainty, so the bounds are NaN (not [mean, mean]), no difference is called significant,
    and the text / JSON row say so."""
    ci = bootstrap_mean([20.0, 80.0, 140.0], clusters=[3, 3, 3])
    assert ci.mean == 80.0 and np.isnan(ci.low) and np.isnan(ci.high)
    assert not ci.excludes_zero and ci.text() == "80.0 [n/a]" and ci.row() == [None, None]
    d = paired_difference([10.0], [30.0])
    assert d.mean == -20.0 and not d.excludes_zero
    assert bootstrap_mean([1.0, 3.0], clusters=[0, 1]).text() == "2.0 [1.0, 3.0]"


def test_a_non_finite_value_gives_no_interval():
    """One infinite error among 200 (a diverged prediction): the resamples that miss it gave a
    finite lower bound (0.5 for a 0.5 mm rise), so the paired interval 'excluded 0' and adapt's
    source guard read a small finite rise for an infinite error. No interval instead."""
    start = np.random.default_rng(0).normal(60.0, 10.0, 200)
    now = start + 0.5
    now[7] = np.inf
    d = paired_difference(now, start)
    assert d.mean == np.inf and np.isnan(d.low) and np.isnan(d.high)
    assert not d.excludes_zero and d.text() == "inf [n/a]"
    ci = bootstrap_mean([1.0, np.nan, 3.0], clusters=[0, 1, 2])
    assert np.isnan(ci.mean) and not ci.defined and not ci.excludes_zero
