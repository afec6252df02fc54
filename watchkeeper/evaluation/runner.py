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
    CohortNormaliser,
    all_pairs_scores,
    build_watchlist,
    fused_search,
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
    """Images without a usable face, by reason (the first words of each)."""
    reasons: dict[str, int] = {}
    acquired = embeddings.acquired
    for failure, ok in zip(embeddings.failures, acquired, strict=True):
        if not ok and failure is not None:
            key = failure.split(":")[0]
            reasons[key] = reasons.get(key, 0) + 1
    failed = int((~acquired).sum())
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
    curves.roc = roc_curve(scores.genuine, scores.impostor).thinned()
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
        pair_scores, same, left_out = pairs_file_scores(embeddings, vectors, pairs)
        mean, std = ten_fold_accuracy(pair_scores, same)
        best, best_threshold = best_threshold_accuracy(pair_scores, same)
        result.update(
            pairs=len(pair_scores),
            pairs_left_out=left_out,
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
            curves.identification[f"{size} people, {photos} photo(s)"] = searches.curve().thinned()
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
COHORT_TOP = 200
SHOTS = 3
"""Images fused per search in the track-like comparison."""


def ablation(
    reference: DatasetEmbeddings,
    baseline: DatasetEmbeddings,
    settings: IdentificationSettings,
) -> list[dict[str, Any]]:
    """FNIR at FPIR, one change at a time, on the same people and photos.

    ``baseline`` is the dataset through dlib's own recipe (HOG detection,
    5-point chip); ``reference`` through Watchkeeper's default pipeline.
    """
    split = split_identities(reference, settings.never_enrolled, settings.seed)
    size = min(ABLATION_SIZE, len(split.enrolled))
    on_list = split.enrolled[:size]
    one_photo = build_watchlist(reference, on_list, 1, settings.seed)
    three_photos = build_watchlist(reference, on_list, 3, settings.seed)
    strangers = split.never_enrolled
    protocol = f"a {size}-person watchlist, {len(strangers)} never-enrolled people"
    flipped = reference.vectors(flip=True)
    outside = np.isin(reference.owner, [*on_list, *strangers]) | ~reference.acquired
    normaliser = CohortNormaliser(flipped[~outside], top=COHORT_TOP)
    steps: list[tuple[str, Searches]] = [
        (
            "dlib recipe: HOG detection, 5-point chip, 1 photo",
            search(baseline, baseline.vectors(flip=False), one_photo, strangers),
        ),
        (
            "YuNet detection and landmarks",
            search(reference, reference.vectors(flip=False), one_photo, strangers),
        ),
        ("+ flip averaging", search(reference, flipped, one_photo, strangers)),
        (
            f"+ score normalisation against a cohort of {int((~outside).sum())} other "
            f"people's images (AS-norm, top {COHORT_TOP}; not adopted)",
            search(reference, flipped, one_photo, strangers, normaliser),
        ),
        (
            "+ up to 3 enrolment photos (instead)",
            search(reference, flipped, three_photos, strangers),
        ),
    ]
    # Track-like searches: several shots of one person, fused by quality. The
    # strangers here are enrollable people left off this watchlist, who have
    # several images (the never-enrolled mostly have one).
    mated = _groups(reference, one_photo.probes, on_list)
    others = _groups(reference, tuple(np.flatnonzero(reference.acquired)), split.enrolled[size:])
    single = fused_search(
        reference, flipped, one_photo, [g[:1] for g in mated], [g[:1] for g in others]
    )
    fused = fused_search(reference, flipped, one_photo, mated, others)
    track_protocol = (
        f"a {size}-person watchlist, 1 photo each; {len(others)} people off the watchlist"
    )
    steps_rows = [(name, searches, protocol) for name, searches in steps]
    steps_rows += [
        ("track-like: 1 shot per search", single, track_protocol),
        (f"track-like: up to {SHOTS} shots fused by quality", fused, track_protocol),
    ]
    rows = []
    for name, searches, described in steps_rows:
        row = {"step": name, "protocol": described, "watchlist_size": size}
        row.update(summarise_searches(searches, settings.bootstrap, settings.seed))
        rows.append(row)
    return rows


def _groups(
    embeddings: DatasetEmbeddings, images: tuple[int, ...], people: tuple[int, ...]
) -> list[tuple[int, ...]]:
    """For each person with at least one usable image among ``images``, their first
    few (up to SHOTS)."""
    chosen = np.array(images, int)
    groups = []
    for person in people:
        own = [int(i) for i in chosen[embeddings.owner[chosen] == person]]
        if own:
            groups.append(tuple(own[:SHOTS]))
    return groups


def calibrate_size(
    embeddings: DatasetEmbeddings,
    vectors: np.ndarray,
    size: int,
    photos: int,
    fpir: float,
    draws: int,
    never_enrolled: int | None,
    seed: int,
) -> dict[str, Any]:
    """The median over ``draws`` seeded watchlists of the threshold for ``fpir``."""
    thresholds, misses, enrolled, strangers = [], [], 0, 0
    for draw in range(draws):
        protocol = IdentificationSettings(never_enrolled=never_enrolled, seed=seed + draw)
        searches = identification_searches(embeddings, vectors, size, photos, protocol)
        threshold = searches.threshold_at_fpir(fpir)
        thresholds.append(threshold)
        misses.append(searches.fnir(threshold))
        enrolled = len(set(searches.mated_owner.tolist()))
        strangers = len(searches.nonmated_top)
    return {
        "watchlist_size": size,
        "threshold": round(float(np.median(thresholds)), 6),
        "threshold_min": round(min(thresholds), 6),
        "threshold_max": round(max(thresholds), 6),
        "fnir": round(float(np.median(misses)), 6),
        "enrolled": enrolled,
        "nonmated_searches": strangers,
    }
