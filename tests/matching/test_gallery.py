"""Gallery search and the open-set decision, on small hand-computed tables."""

from __future__ import annotations

import numpy as np
import pytest

from watchkeeper.matching.gallery import Gallery, ModelMismatchError
from watchkeeper.vision.embedding import Embeddings

MODEL = "test-model@1"


def unit(*angles_deg: float) -> np.ndarray:
    """Unit vectors in the plane at the given angles: cosines are easy to compute."""
    radians = np.radians(angles_deg)
    return np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32)


@pytest.fixture
def gallery() -> Gallery:
    # alice has two templates (0 and 90 degrees), bob one (180 degrees),
    # given out of order to check that labels stay attached to their rows.
    return Gallery(MODEL, unit(90, 180, 0), ["alice", "bob", "alice"])


def test_subject_score_is_best_template(gallery: Gallery) -> None:
    probe = Embeddings(MODEL, unit(60))
    scores = gallery.subject_scores(probe)
    assert gallery.subjects == ("alice", "bob")
    # alice: max(cos 60, cos 30) = cos 30; bob: cos 120.
    np.testing.assert_allclose(
        scores, [[np.cos(np.radians(30)), np.cos(np.radians(120))]], atol=1e-6
    )


@pytest.mark.parametrize(
    ("probe_angle", "expected"),
    [(10, ["alice", "bob"]), (170, ["bob", "alice"]), (100, ["alice", "bob"])],
)
def test_top_k_orders_subjects(gallery: Gallery, probe_angle: float, expected: list[str]) -> None:
    ranked = gallery.top_k(Embeddings(MODEL, unit(probe_angle)), k=5)
    assert [c.subject for c in ranked] == expected
    assert ranked[0].score >= ranked[1].score


@pytest.mark.parametrize(
    ("angles", "weights", "threshold", "subject", "score"),
    [
        # One shot at 20 deg from alice's 0-degree template: cos 20 = 0.9397.
        ((20,), (1.0,), 0.9, "alice", np.cos(np.radians(20))),
        ((20,), (1.0,), 0.95, None, np.cos(np.radians(20))),
        # Two shots, 0 and 60 deg: alice scores cos 0 = 1 and cos 30 = 0.866.
        # Equal weights: 0.933; weights 3:1 give (3 * 1 + 0.866) / 4 = 0.9665.
        ((0, 60), (1.0, 1.0), 0.95, None, (1 + np.cos(np.radians(30))) / 2),
        ((0, 60), (3.0, 1.0), 0.95, "alice", (3 + np.cos(np.radians(30))) / 4),
        # Zero weights fall back to a plain mean.
        ((0, 60), (0.0, 0.0), 0.9, "alice", (1 + np.cos(np.radians(30))) / 2),
    ],
)
def test_decision_fuses_shots_by_quality(
    gallery: Gallery,
    angles: tuple[float, ...],
    weights: tuple[float, ...],
    threshold: float,
    subject: str | None,
    score: float,
) -> None:
    decision = gallery.decide(Embeddings(MODEL, unit(*angles)), np.array(weights), threshold, 5)
    assert decision.subject == subject
    assert decision.score == pytest.approx(score, abs=1e-5)
    assert decision.candidates[0].subject == "alice"


def test_track_without_shots_is_unknown(gallery: Gallery) -> None:
    decision = gallery.decide(Embeddings(MODEL, np.zeros((0, 2), np.float32)), np.zeros(0), 0.0, 5)
    assert decision.subject is None
    assert decision.candidates == ()


def test_embeddings_of_another_model_are_never_compared(gallery: Gallery) -> None:
    with pytest.raises(ModelMismatchError, match="other-model@2"):
        gallery.subject_scores(Embeddings("other-model@2", unit(0)))


def test_templates_of_several_models_cannot_form_a_gallery() -> None:
    with pytest.raises(ModelMismatchError):
        Gallery.from_templates(
            {"alice": Embeddings(MODEL, unit(0)), "bob": Embeddings("other@1", unit(90))}
        )


def test_from_templates_keeps_every_template() -> None:
    gallery = Gallery.from_templates(
        {"alice": Embeddings(MODEL, unit(0, 90)), "bob": Embeddings(MODEL, unit(180))}
    )
    assert len(gallery) == 3
    assert gallery.subjects == ("alice", "bob")
    assert gallery.model_id == MODEL


def test_templates_must_be_unit_length() -> None:
    with pytest.raises(ValueError, match="unit length"):
        Gallery(MODEL, np.array([[2.0, 0.0]], np.float32), ["alice"])


def test_search_is_exact_on_a_large_random_gallery() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(5000, 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = [f"s{i % 1000:04d}" for i in range(5000)]
    gallery = Gallery(MODEL, vectors, labels)
    probe = vectors[1234] + 0.05 * rng.normal(size=128).astype(np.float32)
    probe /= np.linalg.norm(probe)
    ranked = gallery.top_k(Embeddings(MODEL, probe[None]), k=3)
    brute = {}
    for label, vector in zip(labels, vectors, strict=True):
        brute[label] = max(brute.get(label, -2.0), float(vector @ probe))
    expected = sorted(brute, key=brute.get, reverse=True)[:3]
    assert [c.subject for c in ranked] == expected
    assert ranked[0].subject == labels[1234]
    assert ranked[0].score == pytest.approx(brute[expected[0]], abs=1e-5)
