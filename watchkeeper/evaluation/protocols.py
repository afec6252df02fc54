"""Evaluation protocols over an embedded dataset.

- :func:`all_pairs_scores`: 1:1 verification over every pair of images.
- :func:`pairs_file_scores`: 1:1 verification over listed pairs (LFW format).
- :func:`split_identities` and :func:`search`: 1:N open-set identification.

Failures to acquire are never dropped: a pair or search that involves an
image without a usable face gets the score ``-inf``, so it can never be
accepted. A genuine pair or an enrolled person's search then counts as a miss,
an impostor pair or a stranger's search as a correct rejection (ISO/IEC
19795's generalised error rates).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from watchkeeper.evaluation.embeddings import DatasetEmbeddings
from watchkeeper.evaluation.metrics import Searches
from watchkeeper.evaluation.pairs import Pair
from watchkeeper.matching.gallery import Gallery
from watchkeeper.vision.embedding import Embeddings

FAILED = -np.inf
MAX_IMPOSTOR_PAIRS = 60_000_000
"""Above this many impostor pairs, a seeded random sample of this size is scored."""


@dataclass(frozen=True)
class PairScores:
    genuine: np.ndarray
    impostor: np.ndarray
    impostor_sampled: bool
    """True when only a sample of the impostor pairs was scored."""


def all_pairs_scores(
    embeddings: DatasetEmbeddings, vectors: np.ndarray, seed: int = 0, block: int = 1024
) -> PairScores:
    """Scores of every same-person pair and every (or a sample of) different-person pair."""
    acquired = embeddings.acquired
    owner = embeddings.owner
    count = len(owner)
    impostor_total = count * (count - 1) // 2 - int(
        sum(n * (n - 1) // 2 for n in np.bincount(owner))
    )
    keep_share = min(1.0, MAX_IMPOSTOR_PAIRS / max(impostor_total, 1))
    rng = np.random.default_rng(seed)
    genuine, impostor = [], []
    for start in range(0, count, block):
        rows = np.arange(start, min(start + block, count))
        scores = vectors[rows] @ vectors.T
        failed = ~acquired[rows][:, None] | ~acquired[None, :]
        scores = np.where(failed, FAILED, scores)
        upper = np.arange(count)[None, :] > rows[:, None]
        same = owner[rows][:, None] == owner[None, :]
        genuine.append(scores[upper & same])
        different = scores[upper & ~same]
        if keep_share < 1.0:
            different = different[rng.random(len(different)) < keep_share]
        impostor.append(different.astype(np.float32))
    return PairScores(np.concatenate(genuine), np.concatenate(impostor), keep_share < 1.0)


def pairs_file_scores(
    embeddings: DatasetEmbeddings, vectors: np.ndarray, pairs: list[Pair]
) -> tuple[np.ndarray, np.ndarray, int]:
    """(scores, same, pairs left out) for listed pairs, whose images are numbered from 1
    in each folder. Pairs naming an image that corrections left out are skipped."""
    index = embeddings.dataset.index()
    left_out = embeddings.dataset.left_out
    acquired = embeddings.acquired
    scores, same, skipped = [], [], 0
    for pair in pairs:
        names = [(name, f"{name}_{number:04d}.jpg") for name, number in (pair.first, pair.second)]
        if any(key in left_out for key in names):
            skipped += 1
            continue
        first, second = (_lookup(index, key) for key in names)
        ok = acquired[first] and acquired[second]
        scores.append(float(vectors[first] @ vectors[second]) if ok else FAILED)
        same.append(pair.same)
    return np.array(scores), np.array(same), skipped


def _lookup(index: dict[tuple[str, str], int], key: tuple[str, str]) -> int:
    try:
        return index[key]
    except KeyError:
        raise ValueError(f"pairs file names {key[1]}, which is not in the dataset") from None


@dataclass(frozen=True)
class Split:
    """Identities (indices) enrolled on watchlists, in a seeded order, and never enrolled."""

    enrolled: tuple[int, ...]
    never_enrolled: tuple[int, ...]


def split_identities(
    embeddings: DatasetEmbeddings, never_enrolled: int | None = 1000, seed: int = 0
) -> Split:
    """Disjoint enrolled and never-enrolled identities.

    An identity can be enrolled when it has at least two usable images (one
    to enrol, one to search with); all such identities are enrolled, in a
    seeded random order, so that a watchlist of size k is the first k. The
    never-enrolled are ``never_enrolled`` of the remaining identities (all of
    them when None).
    """
    rng = np.random.default_rng(seed)
    usable = np.bincount(
        embeddings.owner[embeddings.acquired], minlength=len(embeddings.identities)
    )
    eligible = np.flatnonzero(usable >= 2)
    enrolled = rng.permutation(eligible)
    others = np.setdiff1d(np.arange(len(embeddings.identities)), eligible)
    others = rng.permutation(others)
    if never_enrolled is not None:
        if never_enrolled > len(others):
            raise ValueError(
                f"{never_enrolled} never-enrolled identities asked for, {len(others)} available"
            )
        others = others[:never_enrolled]
    return Split(tuple(int(i) for i in enrolled), tuple(int(i) for i in others))


@dataclass(frozen=True)
class Watchlist:
    """Gallery rows (image indices) per enrolled identity and the probes left over."""

    identities: tuple[int, ...]
    gallery: tuple[tuple[int, ...], ...]
    probes: tuple[int, ...]
    """Images of the enrolled identities not used for enrolment (all searched)."""


def build_watchlist(
    embeddings: DatasetEmbeddings, identities: tuple[int, ...], photos: int, seed: int = 0
) -> Watchlist:
    """Enrol up to ``photos`` usable images per identity (always leaving one to search)."""
    rng = np.random.default_rng(seed)
    acquired = embeddings.acquired
    gallery, probes = [], []
    for identity in identities:
        images = rng.permutation(np.flatnonzero(embeddings.owner == identity))
        usable = [int(i) for i in images if acquired[i]]
        enrol = usable[: min(photos, len(usable) - 1)]
        gallery.append(tuple(enrol))
        probes += [int(i) for i in images if int(i) not in enrol]
    return Watchlist(tuple(identities), tuple(gallery), tuple(sorted(probes)))


def watchlist_gallery(
    embeddings: DatasetEmbeddings, vectors: np.ndarray, watchlist: Watchlist
) -> Gallery:
    """The engine's own :class:`Gallery` for a watchlist.

    Enrolment photos this pipeline could not use leave their person with
    fewer templates, or none (then every search by that person is a miss).
    """
    names = embeddings.identities
    acquired = embeddings.acquired
    enrolment = [
        (names[identity], row)
        for identity, images in zip(watchlist.identities, watchlist.gallery, strict=True)
        for row in images
        if acquired[row]
    ]
    return Gallery(
        embeddings.model_id, vectors[[row for _, row in enrolment]], [n for n, _ in enrolment]
    )


@dataclass(frozen=True)
class CohortNormaliser:
    """Adaptive symmetric score normalisation (AS-norm) against a cohort of strangers.

    Each score is restated as how far it stands above the ``top`` best cohort
    scores of the gallery subject and of the probe, averaged. Evaluation
    only: Watchkeeper does not ship a cohort of other people's faces.
    """

    cohort: np.ndarray
    """(C, D) unit vectors of people in neither the watchlist nor the searches."""
    top: int = 200

    def __call__(
        self, gallery: Gallery, probes: np.ndarray, subject_scores: np.ndarray
    ) -> np.ndarray:
        cohort_scores = gallery.subject_scores(Embeddings(gallery.model_id, self.cohort))
        subject_top = np.sort(cohort_scores, axis=0)[-self.top :]
        probe_top = np.sort(probes @ self.cohort.T, axis=1)[:, -self.top :]
        # Images without a face have zero vectors and no spread; their searches are
        # failures whatever this returns.
        with np.errstate(invalid="ignore", divide="ignore"):
            by_subject = (subject_scores - subject_top.mean(axis=0)) / subject_top.std(axis=0)
            by_probe = (subject_scores - probe_top.mean(axis=1, keepdims=True)) / probe_top.std(
                axis=1, keepdims=True
            )
        return (by_subject + by_probe) / 2


def search(
    embeddings: DatasetEmbeddings,
    vectors: np.ndarray,
    watchlist: Watchlist,
    strangers: tuple[int, ...],
    normaliser: CohortNormaliser | None = None,
) -> Searches:
    """Every probe image of the watchlist's people and every image of ``strangers``,
    searched one by one against the watchlist."""
    names = embeddings.identities
    acquired = embeddings.acquired
    gallery = watchlist_gallery(embeddings, vectors, watchlist)
    column = {name: k for k, name in enumerate(gallery.subjects)}

    def scores(images: np.ndarray) -> np.ndarray:
        raw = gallery.subject_scores(Embeddings(embeddings.model_id, vectors[images]))
        return raw if normaliser is None else normaliser(gallery, vectors[images], raw)

    mated = np.array(watchlist.probes, int)
    own = np.array([column.get(names[embeddings.owner[i]], -1) for i in mated], int)
    mated_scores = scores(mated)
    usable = acquired[mated] & (own >= 0)
    own_score = np.where(usable, mated_scores[np.arange(len(mated)), np.maximum(own, 0)], FAILED)
    rank1 = (mated_scores.argmax(axis=1) == own) & usable
    nonmated = np.flatnonzero(np.isin(embeddings.owner, np.array(strangers, int)))
    top = np.where(acquired[nonmated], scores(nonmated).max(axis=1), FAILED)
    return Searches(
        mated_score=own_score,
        mated_rank1=rank1,
        mated_owner=embeddings.owner[mated],
        nonmated_top=top,
        nonmated_owner=embeddings.owner[nonmated],
    )


def fused_search(
    embeddings: DatasetEmbeddings,
    vectors: np.ndarray,
    watchlist: Watchlist,
    mated: list[tuple[int, ...]],
    nonmated: list[tuple[int, ...]],
) -> Searches:
    """Searches made of several images of one person each, like a track's best shots,
    decided by the engine's own quality-weighted fusion (:meth:`Gallery.decide`)."""
    gallery = watchlist_gallery(embeddings, vectors, watchlist)
    acquired = embeddings.acquired

    def decide(group: tuple[int, ...]) -> tuple[str | None, float]:
        usable = [i for i in group if acquired[i]]
        if not usable:
            return None, FAILED
        decision = gallery.decide(
            Embeddings(embeddings.model_id, vectors[usable]),
            embeddings.quality[usable],
            threshold=np.inf,
            top_k=1,
        )
        return decision.candidates[0].subject, decision.score

    names = embeddings.identities
    mated_results = [decide(group) for group in mated]
    own = [names[embeddings.owner[group[0]]] for group in mated]
    return Searches(
        mated_score=np.array([score for _, score in mated_results]),
        mated_rank1=np.array([best == o for (best, _), o in zip(mated_results, own, strict=True)]),
        mated_owner=np.array([embeddings.owner[group[0]] for group in mated]),
        nonmated_top=np.array([decide(group)[1] for group in nonmated]),
        nonmated_owner=np.array([embeddings.owner[group[0]] for group in nonmated]),
    )
