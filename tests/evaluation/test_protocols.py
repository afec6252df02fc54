"""Evaluation protocols on synthetic embeddings whose answers are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from watchkeeper.errors import ConfigError
from watchkeeper.evaluation.dataset import Dataset, LabelledImage, scan_dataset
from watchkeeper.evaluation.embeddings import DatasetEmbeddings
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


def synthetic(
    images_per_person: list[int], failed: set[int] = frozenset(), noise: float = 0.05, seed: int = 0
) -> DatasetEmbeddings:
    """People with random unit 'identity' directions; each image is a noisy copy."""
    rng = np.random.default_rng(seed)
    records, owner = [], []
    for person, count in enumerate(images_per_person):
        for number in range(1, count + 1):
            name = f"person{person:03d}"
            records.append(LabelledImage(name, Path(f"/data/{name}/{name}_{number:04d}.jpg")))
            owner.append(person)
    owner_array = np.array(owner)
    centres = rng.normal(size=(len(images_per_person), 64))
    plain = centres[owner_array] + noise * rng.normal(size=(len(owner), 64))
    plain = plain.astype(np.float32)
    failures = tuple("no face found" if i in failed else None for i in range(len(owner)))
    plain[list(failed)] = 0.0
    return DatasetEmbeddings(
        dataset=Dataset(Path("/data"), tuple(records)),
        model_id="synthetic@1",
        owner=owner_array,
        identities=tuple(f"person{p:03d}" for p in range(len(images_per_person))),
        plain=plain,
        mirrored=plain.copy(),
        quality=np.ones(len(owner)),
        failures=failures,
        cached=0,
    )


@pytest.mark.parametrize("seed", range(8))
def test_enrolled_and_never_enrolled_people_never_overlap(seed: int) -> None:
    rng = np.random.default_rng(seed)
    counts = list(rng.permutation([1] * 25 + list(rng.integers(2, 6, size=35))))
    embeddings = synthetic(counts, failed={0, 5, 9})
    split = split_identities(embeddings, never_enrolled=15, seed=seed)
    assert set(split.enrolled).isdisjoint(split.never_enrolled)
    assert len(split.never_enrolled) == 15
    usable = np.bincount(embeddings.owner[embeddings.acquired], minlength=60)
    assert all(usable[i] >= 2 for i in split.enrolled)
    assert {i for i in range(60) if usable[i] >= 2} == set(split.enrolled)
    # A watchlist's probes and strangers' searches never share a person either.
    watchlist = build_watchlist(embeddings, split.enrolled[:10], photos=3, seed=seed)
    probe_people = set(embeddings.owner[list(watchlist.probes)].tolist())
    assert probe_people <= set(split.enrolled[:10])
    assert probe_people.isdisjoint(split.never_enrolled)
    assert split == split_identities(embeddings, never_enrolled=15, seed=seed)


def test_too_many_never_enrolled_is_refused() -> None:
    with pytest.raises(ValueError, match="50 never-enrolled identities asked for, 2 available"):
        split_identities(synthetic([2, 2, 1, 1]), never_enrolled=50)


@pytest.mark.parametrize("photos", [1, 2, 3])
def test_watchlist_enrols_usable_photos_and_always_leaves_one_to_search(photos: int) -> None:
    embeddings = synthetic([2, 3, 5], failed={2})
    watchlist = build_watchlist(embeddings, (0, 1, 2), photos=photos)
    acquired = embeddings.acquired
    for person, gallery in zip(watchlist.identities, watchlist.gallery, strict=True):
        usable = int(acquired[embeddings.owner == person].sum())
        assert len(gallery) == min(photos, usable - 1)
        assert all(acquired[i] and embeddings.owner[i] == person for i in gallery)
    enrolled = {i for gallery in watchlist.gallery for i in gallery}
    assert enrolled.isdisjoint(watchlist.probes)
    assert enrolled | set(watchlist.probes) == set(range(10))


def test_search_finds_well_separated_people() -> None:
    embeddings = synthetic([3] * 20 + [1] * 30)
    split = split_identities(embeddings, never_enrolled=30)
    watchlist = build_watchlist(embeddings, split.enrolled, photos=1)
    searches = search(embeddings, embeddings.vectors(flip=False), watchlist, split.never_enrolled)
    assert len(searches.mated_score) == 40
    assert len(searches.nonmated_top) == 30
    assert searches.rank1_rate() == 1.0
    assert searches.mated_score.min() > searches.nonmated_top.max()
    assert searches.fnir_at_fpir(1e-3) == 0.0


def test_failures_to_acquire_are_misses_and_never_alarms() -> None:
    # Person 0's second and third images fail; stranger image 10 fails.
    embeddings = synthetic([3, 3, 3, 1, 1], failed={1, 2, 10}, noise=0.01)
    watchlist = build_watchlist(embeddings, (0, 1, 2), photos=1)
    searches = search(embeddings, embeddings.vectors(flip=False), watchlist, (3, 4))
    # Person 0 has a single usable image, which must stay a search: with no
    # template, all three of their searches are misses (3 of 7).
    assert watchlist.gallery[0] == ()
    assert searches.fnir(-1.0) == pytest.approx(3 / 7)
    assert list(searches.nonmated_top).count(FAILED) == 1
    assert searches.fpir(-1.0) == pytest.approx(1 / 2)


def test_a_person_whose_enrolment_photo_failed_is_missed_every_time() -> None:
    reference = synthetic([3, 3], noise=0.01)
    other_pipeline = synthetic([3, 3], failed={0}, noise=0.01)
    watchlist = build_watchlist(reference, (0, 1), photos=1, seed=1)
    assert watchlist.gallery[0] == (0,) or 0 not in watchlist.gallery[0]
    searches = search(other_pipeline, other_pipeline.vectors(flip=False), watchlist, ())
    person0 = searches.mated_owner == 0
    if watchlist.gallery[0] == (0,):
        assert not searches.mated_rank1[person0].any()
    assert searches.mated_rank1[~person0].all()


def test_all_pairs_counts_every_pair_once() -> None:
    embeddings = synthetic([3, 2, 1], failed={4})
    scores = all_pairs_scores(embeddings, embeddings.vectors(flip=False), block=2)
    # Same person: 3 + 1 pairs; different: 15 - 4 = 11.
    assert len(scores.genuine) == 4
    assert len(scores.impostor) == 11
    assert not scores.impostor_sampled
    # Image 4 (person 1's second) failed: its pairs can never be accepted.
    assert np.isneginf(scores.genuine).sum() == 1
    assert np.isneginf(scores.impostor).sum() == 4


def test_pairs_file_scores_use_the_numbered_images() -> None:
    embeddings = synthetic([2, 2], failed={3}, noise=0.01)
    pairs = [
        Pair(("person000", 1), ("person000", 2), True),
        Pair(("person000", 1), ("person001", 1), False),
        Pair(("person001", 1), ("person001", 2), True),
    ]
    scores, same, left_out = pairs_file_scores(embeddings, embeddings.vectors(flip=False), pairs)
    assert left_out == 0
    assert same.tolist() == [True, False, True]
    assert scores[0] > 0.9
    assert scores[1] < 0.5
    assert scores[2] == FAILED
    with pytest.raises(ValueError, match=r"names person009_0001\.jpg, which is not in"):
        pairs_file_scores(
            embeddings,
            embeddings.vectors(flip=False),
            [Pair(("person009", 1), ("person000", 1), False)],
        )


def test_fused_searches_decide_like_a_track() -> None:
    embeddings = synthetic([4, 4, 4, 3, 3], failed={13}, noise=0.3, seed=2)
    vectors = embeddings.vectors(flip=False)
    watchlist = build_watchlist(embeddings, (0, 1, 2), photos=1, seed=0)
    probes = {p: [i for i in watchlist.probes if embeddings.owner[i] == p] for p in (0, 1, 2)}
    mated = [tuple(probes[p]) for p in (0, 1, 2)]
    strangers = [(12, 13, 14), (13,)]  # person 3: all three images; the failed one alone
    fused = fused_search(embeddings, vectors, watchlist, mated, strangers)
    single = fused_search(
        embeddings, vectors, watchlist, [g[:1] for g in mated], [g[:1] for g in strangers]
    )
    assert fused.mated_rank1.all()
    assert fused.nonmated_top[1] == FAILED
    # Fusing three noisy shots brings a person's score closer to its expected value
    # than one shot: here it must not fall below the weakest single shot.
    for person, group in enumerate(mated):
        gallery_row = watchlist.gallery[person][0]
        shots = [float(vectors[i] @ vectors[gallery_row]) for i in group]
        assert min(shots) <= fused.mated_score[person] <= max(shots)
    assert len(single.mated_score) == 3


def test_cohort_normalisation_gives_standardised_scores() -> None:
    embeddings = synthetic([3] * 10 + [1] * 40, noise=0.2, seed=4)
    vectors = embeddings.vectors(flip=False)
    split = split_identities(embeddings, never_enrolled=20, seed=0)
    watchlist = build_watchlist(embeddings, split.enrolled, photos=1)
    outside = np.isin(embeddings.owner, [*split.enrolled, *split.never_enrolled])
    normaliser = CohortNormaliser(vectors[~outside], top=10)
    plain = search(embeddings, vectors, watchlist, split.never_enrolled)
    normalised = search(embeddings, vectors, watchlist, split.never_enrolled, normaliser)
    assert np.isfinite(normalised.nonmated_top).all()
    # Standardised against strangers: mated scores lie many deviations above them.
    assert normalised.mated_score.min() > 3 * normalised.nonmated_top.std()
    assert normalised.rank1_rate() == plain.rank1_rate() == 1.0


def test_corrections_relabel_and_leave_out_images(tmp_path: Path) -> None:
    root = tmp_path / "people"
    for name, count in (("Ann_Lee", 2), ("Lee_Ann", 1), ("Bo_Chan", 2)):
        (root / name).mkdir(parents=True)
        for number in range(1, count + 1):
            (root / name / f"{name}_{number:04d}.jpg").write_bytes(b"")
    corrections = tmp_path / "corrections.txt"
    corrections.write_text(
        "# comment\nLee_Ann  Ann_Lee  # name order\nBo_Chan/Bo_Chan_0002.jpg  -\n"
    )
    dataset = scan_dataset(root, corrections)
    assert dataset.identities == ("Ann_Lee", "Bo_Chan")
    assert [i.identity for i in dataset.images] == ["Ann_Lee", "Ann_Lee", "Bo_Chan", "Ann_Lee"]
    assert dataset.corrections == 2
    assert dataset.left_out == {("Bo_Chan", "Bo_Chan_0002.jpg")}
    assert dataset.index()[("Lee_Ann", "Lee_Ann_0001.jpg")] == 3
    corrections.write_text("Nobody  Ann_Lee\n")
    with pytest.raises(ConfigError, match="does not hold: Nobody"):
        scan_dataset(root, corrections)
    corrections.write_text("Lee_Ann\n")
    with pytest.raises(ConfigError, match=r"corrections.txt:1: expected"):
        scan_dataset(root, corrections)
