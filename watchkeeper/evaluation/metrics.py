"""Biometric error rates (ISO/IEC 19795 vocabulary) from score arrays.

Everything here is a pure function of scores; a decision is always
"match when score >= threshold". Thresholds returned for a target rate are
the lowest that keep the observed rate at or below the target, so a quoted
FPIR or FAR is never exceeded on the data it was set on.

1:1 verification: FAR (impostor pairs accepted), TAR = 1 - FRR (genuine
pairs accepted), ROC, DET, EER, LFW 10-fold accuracy.

1:N open-set identification (the watchlist case): a search by a person who
is not enrolled is a false positive when its best score reaches the
threshold (FPIR); a search by an enrolled person is a miss unless their own
entry is ranked first with a score at or above the threshold (FNIR).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

RATE_KEYS = {"1e-2": 1e-2, "1e-3": 1e-3, "1e-4": 1e-4}
"""The operating points reported everywhere, by name."""


def threshold_for_rate(negative_scores: np.ndarray, rate: float) -> float:
    """Lowest threshold at which at most ``rate`` of ``negative_scores`` are accepted.

    With n scores, floor(rate * n) may be accepted: the threshold lies just
    above the next score down. When none may be accepted, it lies just above
    the highest.
    """
    scores = np.sort(np.asarray(negative_scores, np.float64))[::-1]
    if len(scores) == 0:
        raise ValueError("no negative scores")
    allowed = int(np.floor(rate * len(scores) + 1e-9))
    if allowed >= len(scores):
        return float(scores[-1])
    return float(np.nextafter(scores[allowed], np.inf))


def acceptance_rate(scores: np.ndarray, threshold: float) -> float:
    """Share of ``scores`` at or above ``threshold``."""
    scores = np.asarray(scores, np.float64)
    return float((scores >= threshold).mean()) if len(scores) else float("nan")


@dataclass(frozen=True)
class Curve:
    """An error trade-off curve: one point per distinct threshold, thresholds falling."""

    thresholds: np.ndarray
    false_rate: np.ndarray
    """FAR (verification) or FPIR (identification) at each threshold."""
    true_rate: np.ndarray
    """TAR (verification) or 1 - FNIR (identification) at each threshold."""

    def thinned(self, points: int = 2000) -> Curve:
        """At most about ``points`` points, spread evenly over log(false rate), for plots."""
        if len(self.thresholds) <= points:
            return self
        positive = np.maximum(self.false_rate, 1e-12)
        grid = np.geomspace(positive.min(), positive.max(), points)
        keep = np.unique(np.r_[0, np.searchsorted(positive, grid), len(positive) - 1])
        keep = keep[keep < len(positive)]
        return Curve(self.thresholds[keep], self.false_rate[keep], self.true_rate[keep])


def roc_curve(genuine: np.ndarray, impostor: np.ndarray) -> Curve:
    """FAR and TAR at every distinct score used as the threshold."""
    genuine = np.sort(np.asarray(genuine, np.float64))
    impostor = np.sort(np.asarray(impostor, np.float64))
    thresholds = np.unique(np.concatenate([genuine, impostor]))[::-1]
    far = 1.0 - np.searchsorted(impostor, thresholds, side="left") / len(impostor)
    tar = 1.0 - np.searchsorted(genuine, thresholds, side="left") / len(genuine)
    return Curve(thresholds, far, tar)


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, far: float) -> tuple[float, float]:
    """(TAR, threshold) at the lowest threshold whose FAR is at most ``far``."""
    threshold = threshold_for_rate(impostor, far)
    return acceptance_rate(genuine, threshold), threshold


def equal_error_rate(genuine: np.ndarray, impostor: np.ndarray) -> tuple[float, float]:
    """(EER, threshold): where FAR and FRR cross (the mean of the two at the closest point)."""
    curve = roc_curve(genuine, impostor)
    frr = 1.0 - curve.true_rate
    closest = int(np.argmin(np.abs(curve.false_rate - frr)))
    return float((curve.false_rate[closest] + frr[closest]) / 2), float(curve.thresholds[closest])


def best_threshold_accuracy(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """Highest accuracy of ``score >= t`` over all thresholds t, and that t (midway
    between the last accepted and the first rejected score).

    Optimistic (the threshold is chosen on the data it is scored on); the
    10-fold figure of :func:`ten_fold_accuracy` is the honest one.
    """
    scores = np.asarray(scores, np.float64)
    same = np.asarray(same, bool)
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_same = scores[order], same[order]
    # Accepting the k highest scores: true accepts plus true rejects below.
    true_accepts = np.concatenate([[0], np.cumsum(sorted_same)])
    false_accepts = np.concatenate([[0], np.cumsum(~sorted_same)])
    correct = true_accepts + (~same).sum() - false_accepts
    # Only cut between different scores, so that ties fall on one side.
    cuts = np.concatenate([[True], sorted_scores[1:] != sorted_scores[:-1], [True]])
    correct = np.where(cuts, correct, -1)
    k = int(np.argmax(correct))
    if k == 0:
        threshold = float(np.inf)
    elif k == len(scores):
        threshold = float(sorted_scores[-1])
    else:
        # Midway between the last accepted and the first rejected score.
        threshold = float((sorted_scores[k - 1] + sorted_scores[k]) / 2)
    return float(correct[k] / len(scores)), threshold


def ten_fold_accuracy(scores: np.ndarray, same: np.ndarray, folds: int = 10) -> tuple[float, float]:
    """LFW protocol: (mean, standard deviation) of held-out accuracy over folds.

    Pairs are split into ``folds`` consecutive blocks in their given order (the
    order of the pairs file), fewer when there are fewer pairs; each block is
    scored with the threshold that is best on the other blocks.
    """
    scores = np.asarray(scores, np.float64)
    same = np.asarray(same, bool)
    if len(scores) < 2:
        raise ValueError("10-fold accuracy needs at least two pairs")
    blocks = np.array_split(np.arange(len(scores)), min(folds, len(scores)))
    accuracies = []
    for held_out in blocks:
        training = np.setdiff1d(np.arange(len(scores)), held_out)
        _, threshold = best_threshold_accuracy(scores[training], same[training])
        accuracies.append(float(((scores[held_out] >= threshold) == same[held_out]).mean()))
    return float(np.mean(accuracies)), float(np.std(accuracies))


@dataclass(frozen=True)
class Searches:
    """The outcome of 1:N searches against one watchlist.

    ``mated_*``: one entry per search by an enrolled person; ``nonmated_*``:
    one per search by a person who is not enrolled. ``*_owner`` says whose
    search it was, for resampling people rather than images.
    """

    mated_score: np.ndarray
    """Score of the searcher's own entry."""
    mated_rank1: np.ndarray
    """Whether the searcher's own entry was ranked first."""
    mated_owner: np.ndarray
    nonmated_top: np.ndarray
    """Best score over the whole watchlist."""
    nonmated_owner: np.ndarray

    def fpir(self, threshold: float) -> float:
        return acceptance_rate(self.nonmated_top, threshold)

    def fnir(self, threshold: float) -> float:
        hits = self.mated_rank1 & (self.mated_score >= threshold)
        return float(1.0 - hits.mean())

    def rank1_rate(self) -> float:
        return float(self.mated_rank1.mean())

    def threshold_at_fpir(self, fpir: float) -> float:
        return threshold_for_rate(self.nonmated_top, fpir)

    def fnir_at_fpir(self, fpir: float) -> float:
        return self.fnir(self.threshold_at_fpir(fpir))

    def curve(self) -> Curve:
        """FPIR and 1 - FNIR at every distinct score as threshold (a DET's data)."""
        candidates = np.unique(np.concatenate([self.nonmated_top, self.mated_score]))[::-1]
        nonmated = np.sort(self.nonmated_top)
        fpir = 1.0 - np.searchsorted(nonmated, candidates, side="left") / len(nonmated)
        hit_scores = np.sort(self.mated_score[self.mated_rank1])
        hits = len(hit_scores) - np.searchsorted(hit_scores, candidates, side="left")
        return Curve(candidates, fpir, hits / len(self.mated_score))

    def resampled(self, rng: np.random.Generator) -> Searches:
        """A bootstrap replicate: people drawn with replacement, all their searches kept."""
        mated = _resample_groups(self.mated_owner, rng)
        nonmated = _resample_groups(self.nonmated_owner, rng)
        return Searches(
            self.mated_score[mated],
            self.mated_rank1[mated],
            self.mated_owner[mated],
            self.nonmated_top[nonmated],
            self.nonmated_owner[nonmated],
        )


def _resample_groups(owners: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of a resample of ``owners``' groups, drawn with replacement."""
    if len(owners) == 0:
        return np.zeros(0, int)
    order = np.argsort(owners, kind="stable")
    sorted_owners = owners[order]
    starts = np.flatnonzero(np.r_[True, sorted_owners[1:] != sorted_owners[:-1]])
    ends = np.r_[starts[1:], len(owners)]
    drawn = rng.integers(0, len(starts), len(starts))
    lengths = ends[drawn] - starts[drawn]
    # Position k of the output belongs to drawn group g at offset k - (its first k).
    shift = np.repeat(starts[drawn] - np.cumsum(np.r_[0, lengths[:-1]]), lengths)
    return order[np.arange(lengths.sum()) + shift]


def bootstrap_intervals(
    searches: Searches,
    statistics: dict[str, Callable[[Searches], float]],
    replicates: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile confidence intervals of each statistic, resampling people, not images."""
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {name: [] for name in statistics}
    for _ in range(replicates):
        replicate = searches.resampled(rng)
        for name, statistic in statistics.items():
            values[name].append(statistic(replicate))
    tail = (1 - level) / 2 * 100
    return {
        name: tuple(float(v) for v in np.percentile(samples, [tail, 100 - tail]))
        for name, samples in values.items()
    }
