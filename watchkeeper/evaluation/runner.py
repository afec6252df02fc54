"""`watchkeeper eval` and `calibrate`: protocols run on an embedded dataset, as plain data.

The results are nested dicts of numbers (what `--json` prints and the report
renders), plus the curves for plotting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from watchkeeper.evaluation.embeddings import DatasetEmbeddings
from watchkeeper.evaluation.metrics import (
    RATE_KEYS,
    Curve,
    Searches,
    best_threshold_accuracy,
    bootstrap_intervals,
    equal_error_rate,
    roc_curve,
    tar_at_far,
    ten_fold_accuracy,
    threshold_for_rate,
)
from watchkeeper.evaluation.pairs import Pair
from watchkeeper.evaluation.protocols import (
    FAILED,
    all_pairs_scores,
    build_watchlist,
    pairs_file_scores,
    search,
    split_identities,
)

WATCHLIST_SIZES = (100, 400, 1000)
"""Watchlist sizes reported, besides all enrolled identities."""
HEADLINE_SIZE = 1000
"""The watchlist size of the headline identification figures (and of calibration)."""


@dataclass(frozen=True)
class IdentificationSettings:
    """The 1:N protocol's knobs."""

    never_enrolled: int | None = 1000
    gallery_photos: tuple[int, ...] = (1, 3)
    seed: int = 0
    bootstrap: int = 200


@dataclass
class Curves:
    """Everything the report plots."""

    roc: Curve | None = None
    identification: dict[str, Curve] = field(default_factory=dict)


def failure_summary(embeddings: DatasetEmbeddings) -> dict[str, Any]:
    reasons: dict[str, int] = {}
    for failure in embeddings.failures:
        if failure is not None:
            key = failure.split(":")[0]
            reasons[key] = reasons.get(key, 0) + 1
    failed = int((~embeddings.acquired).sum())
    return {
        "images": len(embeddings.failures),
        "failed": failed,
        "rate": round(failed / len(embeddings.failures), 6),
        "reasons": dict(sorted(reasons.items(), key=lambda item: -item[1])),
    }


def verification(
    embeddings: DatasetEmbeddings,
    vectors: np.ndarray,
    pairs: list[Pair] | None,
    curves: Curves,
) -> dict[str, Any]:
    """1:1 figures over all image pairs, plus the pairs file's 10-fold accuracy."""
    scores = all_pairs_scores(embeddings, vectors)
    thresholds = {key: threshold_for_rate(scores.impostor, rate) for key, rate in RATE_KEYS.items()}
    eer, eer_threshold = equal_error_rate(scores.genuine, scores.impostor)
    curves.roc = roc_curve(scores.genuine, scores.impostor)
    result: dict[str, Any] = {
        "genuine_pairs": len(scores.genuine),
        "impostor_pairs": len(scores.impostor),
        "impostor_pairs_sampled": scores.impostor_sampled,
        "tar_at_far": {
            key: round(tar_at_far(scores.genuine, scores.impostor, rate)[0], 6)
            for key, rate in RATE_KEYS.items()
        },
        "threshold_at_far": {key: round(value, 6) for key, value in thresholds.items()},
        "eer": round(eer, 6),
        "eer_threshold": round(eer_threshold, 6),
    }
    if pairs:
        pair_scores, same = pairs_file_scores(embeddings, vectors, pairs)
        mean, std = ten_fold_accuracy(pair_scores, same)
        best, best_threshold = best_threshold_accuracy(pair_scores, same)
        result.update(
            pairs=len(pairs),
            pairs_with_failed_image=int((pair_scores == FAILED).sum()),
            accuracy=round(mean, 6),
            accuracy_std=round(std, 6),
            best_threshold_accuracy=round(best, 6),
            best_threshold=round(best_threshold, 6),
        )
    return result


def identification_searches(
    embeddings: DatasetEmbeddings,
    vectors: np.ndarray,
    size: int,
    photos: int,
    settings: IdentificationSettings,
    reference: DatasetEmbeddings | None = None,
) -> Searches:
    """Searches against a watchlist of the first ``size`` enrolled identities.

    ``reference`` (default: ``embeddings``) chooses the people and photos, so
    that pipelines can be compared on exactly the same searches.
    """
    chooser = reference or embeddings
    split = split_identities(chooser, settings.never_enrolled, settings.seed)
    watchlist = build_watchlist(chooser, split.enrolled[:size], photos, settings.seed)
    return search(embeddings, vectors, watchlist, split.never_enrolled)


def summarise_searches(searches: Searches, bootstrap: int, seed: int) -> dict[str, Any]:
    """FNIR at each FPIR (with a bootstrap interval over people), thresholds, rank-1."""
    intervals = bootstrap_intervals(
        searches,
        {key: (lambda s, rate=rate: s.fnir_at_fpir(rate)) for key, rate in RATE_KEYS.items()},
        replicates=bootstrap,
        seed=seed,
    )
    fnir_ci = {key: [round(low, 4), round(high, 4)] for key, (low, high) in intervals.items()}
    return {
        "fnir_at_fpir": {
            key: round(searches.fnir_at_fpir(rate), 6) for key, rate in RATE_KEYS.items()
        },
        "fnir_at_fpir_ci95": fnir_ci,
        "threshold_at_fpir": {
            key: round(searches.threshold_at_fpir(rate), 6) for key, rate in RATE_KEYS.items()
        },
        "rank1": round(searches.rank1_rate(), 6),
        "mated_searches": len(searches.mated_score),
        "nonmated_searches": len(searches.nonmated_top),
        "nonmated_people": len(np.unique(searches.nonmated_owner)),
    }


def identification(
    embeddings: DatasetEmbeddings,
    vectors: np.ndarray,
    settings: IdentificationSettings,
    curves: Curves,
) -> dict[str, Any]:
    """1:N open-set figures at several watchlist sizes and enrolment photo counts."""
    split = split_identities(embeddings, settings.never_enrolled, settings.seed)
    enrolled = len(split.enrolled)
    sizes = sorted({s for s in WATCHLIST_SIZES if s < enrolled} | {enrolled})
    rows = []
    for photos in settings.gallery_photos:
        for size in sizes:
            searches = identification_searches(embeddings, vectors, size, photos, settings)
            row = {"watchlist_size": size, "gallery_photos": photos}
            row.update(summarise_searches(searches, settings.bootstrap, settings.seed))
            rows.append(row)
            curves.identification[f"{size} people, {photos} photo(s)"] = searches.curve()
    headline_size = min(HEADLINE_SIZE, enrolled)
    headline = next(
        r for r in rows if r["watchlist_size"] == headline_size and r["gallery_photos"] == 1
    )
    return {
        "enrolled_identities": enrolled,
        "never_enrolled_identities": len(split.never_enrolled),
        "seed": settings.seed,
        "watchlist_size": headline_size,
        "gallery_photos": 1,
        "fnir_at_fpir": headline["fnir_at_fpir"],
        "threshold_at_fpir": headline["threshold_at_fpir"],
        "rank1": headline["rank1"],
        "by_watchlist": rows,
    }


ABLATION_SIZE = 400
"""The watchlist size of the step-by-step comparison (about 400 enrolled people)."""


def ablation(
    reference: DatasetEmbeddings,
    baseline: DatasetEmbeddings,
    settings: IdentificationSettings,
) -> list[dict[str, Any]]:
    """FNIR at FPIR, one change at a time, on the same people and photos.

    ``baseline`` is the dataset through dlib's own recipe (HOG detection,
    5-point chip); ``reference`` through Watchkeeper's default pipeline.
    """
    enrolled = len(split_identities(reference, settings.never_enrolled, settings.seed).enrolled)
    size = min(ABLATION_SIZE, enrolled)
    strangers = settings.never_enrolled or "all other"
    protocol = f"a {size}-person watchlist and {strangers} never-enrolled people"
    steps = [
        ("dlib recipe: HOG detection, 5-point chip, 1 photo", baseline, False, 1),
        ("YuNet detection and landmarks", reference, False, 1),
        ("+ flip averaging", reference, True, 1),
        ("+ up to 3 enrolment photos", reference, True, 3),
    ]
    rows = []
    for name, embeddings, flip, photos in steps:
        searches = identification_searches(
            embeddings, embeddings.vectors(flip), size, photos, settings, reference
        )
        row = {"step": name, "protocol": protocol, "watchlist_size": size}
        row.update(summarise_searches(searches, settings.bootstrap, settings.seed))
        rows.append(row)
    return rows
