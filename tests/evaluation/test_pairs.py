"""Pairs files, the best-threshold accuracy, and same vs different people on LFW pairs."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from tests.support.data import LFW
from watchkeeper.config import QualityConfig
from watchkeeper.evaluation.metrics import best_threshold_accuracy
from watchkeeper.evaluation.pairs import Pair, image_path, read_pairs
from watchkeeper.matching.watchlist import PhotoRefused, enrolment_face
from watchkeeper.vision.detection import FaceDetector
from watchkeeper.vision.embedding import FaceEmbedder
from watchkeeper.vision.images import read_image


def test_lfw_pairs_format(tmp_path: Path) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text("2\t1\nAbel_Pacheco\t1\t4\nAbel_Pacheco\t1\tAkhmed_Zakayev\t3\n\n")
    assert read_pairs(path) == [
        Pair(("Abel_Pacheco", 1), ("Abel_Pacheco", 4), True),
        Pair(("Abel_Pacheco", 1), ("Akhmed_Zakayev", 3), False),
    ]
    assert image_path(Path("/lfw"), "Abel_Pacheco", 4) == Path(
        "/lfw/Abel_Pacheco/Abel_Pacheco_0004.jpg"
    )


def test_malformed_pairs_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text("Abel_Pacheco\t1\n")
    with pytest.raises(ValueError, match=r"pairs.txt:1: expected 3 or 4 fields"):
        read_pairs(path)


@pytest.mark.parametrize(
    ("scores", "same", "accuracy", "threshold"),
    [
        # Perfectly separable: accept the two same pairs, cut midway to 0.3.
        ([0.9, 0.8, 0.3, 0.1], [1, 1, 0, 0], 1.0, 0.55),
        # One different pair (0.85) above a same pair (0.8): best is 3/4, first
        # reached by accepting only 0.9.
        ([0.9, 0.85, 0.8, 0.1], [1, 0, 1, 0], 0.75, 0.875),
        # Tied scores cannot be split: the three 0.5s are accepted together (3/4);
        # splitting them would give 4/4 but no threshold does that.
        ([0.5, 0.5, 0.5, 0.2], [1, 0, 1, 0], 0.75, 0.35),
        # Nothing accepted is best when every pair is different.
        ([0.2, 0.1], [0, 0], 1.0, float("inf")),
    ],
)
def test_best_threshold_accuracy_by_hand(
    scores: list[float], same: list[int], accuracy: float, threshold: float
) -> None:
    got_accuracy, got_threshold = best_threshold_accuracy(np.array(scores), np.array(same))
    assert got_accuracy == pytest.approx(accuracy)
    assert got_threshold == threshold


def test_same_person_pairs_score_higher_than_different_person_pairs(
    yunet: FaceDetector, dlib_embedder: FaceEmbedder
) -> None:
    """300 pairs of pairs-dev.txt (seeded sample), through detection, gate and embedding."""
    pairs = read_pairs(LFW / "pairs-dev.txt")
    sample = random.Random(5).sample(pairs, 300)
    quality = QualityConfig()
    vectors: dict[tuple[str, int], np.ndarray | None] = {}
    for key in {k for pair in sample for k in (pair.first, pair.second)}:
        try:
            face = enrolment_face(read_image(image_path(LFW, *key)), yunet, dlib_embedder, quality)
        except PhotoRefused:
            vectors[key] = None
        else:
            vectors[key] = dlib_embedder.embed([face.chip]).vectors[0]
    usable = [p for p in sample if vectors[p.first] is not None and vectors[p.second] is not None]
    assert len(usable) >= 0.75 * len(sample)
    scores = np.array([float(vectors[p.first] @ vectors[p.second]) for p in usable])
    same = np.array([p.same for p in usable])
    accuracy, _ = best_threshold_accuracy(scores, same)
    assert accuracy >= 0.96
    # Nearly every same pair outranks nearly every different pair (the ROC area).
    ranked = (scores[same][:, None] > scores[~same][None, :]).mean()
    assert ranked >= 0.99
