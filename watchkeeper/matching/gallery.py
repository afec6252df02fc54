"""The watchlist gallery and the open-set decision for a track.

The gallery is one normalised (templates x dim) float32 matrix with a subject
label per row; several templates per subject are allowed. Search is exact:
one matrix product gives every cosine similarity, and each subject's score
is its best template's.

A track is decided from its best shots: each shot's per-subject scores are
averaged with the shots' quality scores as weights, and the best subject is a
match only if that fused score reaches the threshold. Otherwise the track is
UNKNOWN, which is the expected answer for almost everyone a camera sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from watchkeeper.vision.embedding import Embeddings


class ModelMismatchError(ValueError):
    """Embeddings from one model were compared with templates from another."""


@dataclass(frozen=True)
class Candidate:
    subject: str
    score: float


@dataclass(frozen=True)
class Decision:
    """The outcome for one track. ``subject`` is None for UNKNOWN."""

    subject: str | None
    score: float
    """Fused score of the best candidate (cosine similarity, -1 to 1)."""
    candidates: tuple[Candidate, ...]
    """Best first; empty when the track had no usable shot."""


class Gallery:
    """Templates of watchlist subjects from one embedding model."""

    def __init__(self, model_id: str, vectors: np.ndarray, labels: Sequence[str]) -> None:
        vectors = np.asarray(vectors, np.float32)
        if vectors.ndim != 2 or len(vectors) != len(labels):
            raise ValueError("need one label per template row")
        norms = np.linalg.norm(vectors, axis=1)
        if len(norms) and not np.allclose(norms, 1.0, atol=1e-3):
            raise ValueError("gallery templates must be unit length")
        order = np.argsort(np.asarray(labels, dtype=object), kind="stable")
        self.model_id = model_id
        self.labels = tuple(labels[i] for i in order)
        self.matrix = np.ascontiguousarray(vectors[order])
        self.subjects, self._starts = _runs(self.labels)

    @classmethod
    def from_templates(cls, templates: dict[str, Embeddings]) -> Gallery:
        """Build from each subject's template embeddings (all from one model)."""
        model_ids = {embeddings.model_id for embeddings in templates.values()}
        if len(model_ids) > 1:
            raise ModelMismatchError(f"templates from several models: {sorted(model_ids)}")
        model_id = model_ids.pop() if model_ids else ""
        rows = [e.vectors for e in templates.values() if len(e)]
        labels = [subject for subject, e in templates.items() for _ in range(len(e))]
        dim = rows[0].shape[1] if rows else 0
        return cls(model_id, np.concatenate(rows) if rows else np.zeros((0, dim)), labels)

    def __len__(self) -> int:
        return len(self.matrix)

    def subject_scores(self, probes: Embeddings) -> np.ndarray:
        """(probes, subjects) best cosine similarity of each probe to each subject."""
        if probes.model_id != self.model_id:
            raise ModelMismatchError(
                f"probe embeddings from {probes.model_id} cannot be compared with a gallery "
                f"from {self.model_id}"
            )
        if not self.subjects:
            return np.zeros((len(probes), 0), np.float32)
        similarities = probes.vectors @ self.matrix.T
        return np.maximum.reduceat(similarities, self._starts, axis=1)

    def top_k(self, probe: Embeddings, k: int) -> list[Candidate]:
        """The ``k`` best subjects for a single probe vector, exact search."""
        return _ranked(self.subject_scores(probe)[0], self.subjects, k)

    def fused_scores(self, shots: Embeddings, weights: np.ndarray) -> np.ndarray:
        """(subjects,) scores of a track: each shot's subject scores averaged with the
        shots' quality scores as weights (equal weights when they sum to zero)."""
        weights = np.asarray(weights, np.float64)
        weights = (
            weights / weights.sum() if weights.sum() > 0 else np.full(len(shots), 1 / len(shots))
        )
        return weights @ self.subject_scores(shots)

    def decide(
        self, shots: Embeddings, weights: np.ndarray, threshold: float, top_k: int
    ) -> Decision:
        """Open-set decision over a track's shots (quality-weighted score fusion)."""
        if len(shots) == 0 or not self.subjects:
            return Decision(subject=None, score=float("-inf"), candidates=())
        fused = self.fused_scores(shots, weights)
        candidates = _ranked(fused, self.subjects, top_k)
        best = candidates[0]
        return Decision(
            subject=best.subject if best.score >= threshold else None,
            score=best.score,
            candidates=tuple(candidates),
        )


def _runs(labels: tuple[str, ...]) -> tuple[tuple[str, ...], np.ndarray]:
    """Distinct labels of a sorted sequence and the index where each run starts."""
    subjects, starts = [], []
    for index, label in enumerate(labels):
        if not subjects or subjects[-1] != label:
            subjects.append(label)
            starts.append(index)
    return tuple(subjects), np.array(starts, np.intp)


def _ranked(scores: np.ndarray, subjects: tuple[str, ...], k: int) -> list[Candidate]:
    k = min(k, len(subjects))
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    return [Candidate(subjects[i], float(scores[i])) for i in top]
