"""Error-rate arithmetic on small score tables worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from watchkeeper.evaluation.metrics import (
    Searches,
    acceptance_rate,
    bootstrap_intervals,
    equal_error_rate,
    roc_curve,
    tar_at_far,
    ten_fold_accuracy,
    threshold_for_rate,
)

# Ten impostor scores 0.1 ... 1.0 and five genuine scores.
IMPOSTOR = np.round(np.arange(1, 11) / 10, 2)
GENUINE = np.array([0.55, 0.75, 0.95, 1.05, 1.2])


@pytest.mark.parametrize(
    ("rate", "accepted"),
    [
        (0.0, 0),  # above the highest impostor (1.0)
        (0.05, 0),  # floor(0.5) = 0 may be accepted
        (0.1, 1),  # just above 0.9: only 1.0 is accepted
        (0.25, 2),  # floor(2.5) = 2: 0.9 and 1.0
        (1.0, 10),
    ],
)
def test_threshold_for_rate_never_exceeds_the_rate(rate: float, accepted: int) -> None:
    threshold = threshold_for_rate(IMPOSTOR, rate)
    assert np.count_nonzero(threshold <= IMPOSTOR) == accepted
    assert acceptance_rate(IMPOSTOR, threshold) <= rate + 1e-12


@pytest.mark.parametrize(
    ("far", "tar"),
    [
        # FAR 0: threshold just above 1.0 accepts 1.05 and 1.2.
        (0.0, 2 / 5),
        # FAR 0.1: just above 0.9, so 0.95 too.
        (0.1, 3 / 5),
        # FAR 0.3: just above 0.7, so 0.75 too.
        (0.3, 4 / 5),
        # FAR 0.5: just above 0.5: every genuine score.
        (0.5, 1.0),
    ],
)
def test_tar_at_far(far: float, tar: float) -> None:
    assert tar_at_far(GENUINE, IMPOSTOR, far)[0] == pytest.approx(tar)


def test_roc_curve_points() -> None:
    curve = roc_curve(np.array([0.9, 0.7]), np.array([0.8, 0.2]))
    # Thresholds 0.9, 0.8, 0.7, 0.2 (falling).
    np.testing.assert_allclose(curve.thresholds, [0.9, 0.8, 0.7, 0.2])
    np.testing.assert_allclose(curve.false_rate, [0.0, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(curve.true_rate, [0.5, 0.5, 1.0, 1.0])


def test_equal_error_rate() -> None:
    # Genuine 0.6..1.5, impostor 0.1..1.0: at t = 0.85 (approx), 2 impostors of 10
    # accepted (0.9, 1.0) and 2 genuine of 10 rejected (0.6, 0.7, 0.8 < t: 3).
    genuine = np.round(np.arange(6, 16) / 10, 2)
    rate, threshold = equal_error_rate(genuine, IMPOSTOR)
    assert rate == pytest.approx(0.25)
    assert 0.8 <= threshold <= 0.9


def test_ten_fold_accuracy_on_separable_and_noisy_folds() -> None:
    rng = np.random.default_rng(0)
    same = np.tile([True, False], 100)
    separable = np.where(same, 0.9, 0.1) + rng.normal(0, 0.01, 200)
    assert ten_fold_accuracy(separable, same) == (1.0, 0.0)
    # Flip the label of one pair in the last fold: that fold scores 19/20.
    noisy = same.copy()
    noisy[-1] = ~noisy[-1]
    mean, std = ten_fold_accuracy(separable, noisy)
    assert mean == pytest.approx((9 * 1.0 + 0.95) / 10)
    assert std == pytest.approx(np.std([1.0] * 9 + [0.95]))


def searches() -> Searches:
    """Three enrolled people searching (two searches each), four strangers searching.

    Person 0 is found at 0.9 and 0.8; person 1 at 0.7 and once ranked second;
    person 2 at 0.6 and 0.5. Strangers' best scores: 0.75, 0.4, 0.3, 0.2.
    """
    return Searches(
        mated_score=np.array([0.9, 0.8, 0.7, 0.65, 0.6, 0.5]),
        mated_rank1=np.array([True, True, True, False, True, True]),
        mated_owner=np.array([0, 0, 1, 1, 2, 2]),
        nonmated_top=np.array([0.75, 0.4, 0.3, 0.2]),
        nonmated_owner=np.array([10, 11, 12, 13]),
    )


@pytest.mark.parametrize(
    ("threshold", "fpir", "fnir"),
    [
        (0.85, 0.0, 5 / 6),  # only 0.9 is a hit
        (0.72, 0.25, 4 / 6),  # the stranger at 0.75 alerts; hits 0.9, 0.8
        (0.55, 0.25, 2 / 6),  # misses: the rank-2 search and 0.5
        (0.1, 1.0, 1 / 6),  # a wrong rank-1 is a miss at any threshold
    ],
)
def test_open_set_rates(threshold: float, fpir: float, fnir: float) -> None:
    result = searches()
    assert result.fpir(threshold) == pytest.approx(fpir)
    assert result.fnir(threshold) == pytest.approx(fnir)
    assert result.rank1_rate() == pytest.approx(5 / 6)


def test_fnir_at_fpir_uses_the_strictest_sufficient_threshold() -> None:
    result = searches()
    # FPIR 0.25 allows one stranger: threshold just above 0.4, hits 0.9 0.8 0.7 0.6 0.5.
    assert result.threshold_at_fpir(0.25) == pytest.approx(0.4)
    assert result.fnir_at_fpir(0.25) == pytest.approx(1 / 6)
    # FPIR 0 allows none: just above 0.75: hits 0.9 and 0.8.
    assert result.fnir_at_fpir(0.0) == pytest.approx(4 / 6)


def test_identification_curve_matches_the_rates() -> None:
    result = searches()
    curve = result.curve()
    for threshold, fpir, hit_rate in zip(
        curve.thresholds, curve.false_rate, curve.true_rate, strict=True
    ):
        assert fpir == pytest.approx(result.fpir(threshold))
        assert 1 - hit_rate == pytest.approx(result.fnir(threshold))


def test_bootstrap_resamples_people_not_searches() -> None:
    result = searches()
    rng = np.random.default_rng(3)
    for _ in range(20):
        replicate = result.resampled(rng)
        # Every person keeps both of their searches.
        _, counts = np.unique(replicate.mated_owner, return_counts=True)
        assert all(count % 2 == 0 for count in counts)
        assert len(replicate.nonmated_top) == 4
    (low, high) = bootstrap_intervals(result, {"fnir": lambda s: s.fnir(0.55)}, 300)["fnir"]
    assert 0.0 <= low <= 2 / 6 <= high <= 1.0
    assert low < high


def test_thinned_curve_keeps_the_ends_and_the_shape() -> None:
    rng = np.random.default_rng(0)
    curve = roc_curve(rng.normal(2, 1, 5000), rng.normal(0, 1, 200_000))
    thin = curve.thinned(300)
    assert len(thin.thresholds) <= 302
    assert thin.false_rate[0] == curve.false_rate[0]
    assert thin.false_rate[-1] == curve.false_rate[-1]
    assert np.all(np.diff(thin.false_rate) >= 0)
    for far, tar in zip(thin.false_rate, thin.true_rate, strict=True):
        assert tar == curve.true_rate[np.searchsorted(curve.false_rate, far)]
