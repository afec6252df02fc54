"""Per-source face tracking, so that one person walking past is one decision.

Detections are joined to tracks greedily: first by overlap with each track's
predicted box (constant-velocity motion), then, for faces that moved further
than their own size between analysed frames, by centre distance relative to
face width. A track keeps its few best shots ranked by quality; only those
are ever embedded, which bounds the embedding work per person.

A track ends when it has not been seen for ``max_missed_seconds`` or has
lasted ``max_track_seconds``; ended tracks are handed back for a decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from watchkeeper.config import TrackingConfig
from watchkeeper.vision.observation import FaceObservation

_VELOCITY_SMOOTHING = 0.5
"""Weight of the newest motion step in the velocity estimate (0-1)."""


@dataclass
class Shot:
    """A quality-gated, aligned view of a tracked face: a candidate for embedding."""

    chip: np.ndarray
    quality: float
    timestamp: float


@dataclass
class Track:
    """One face followed across frames. Holds biometric data in memory only."""

    id: int
    start: float
    last_seen: float
    box: np.ndarray
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4, np.float32))
    frames: int = 1
    best_shots: list[Shot] = field(default_factory=list)
    changes: int = 0
    """How many times a shot was kept into ``best_shots``."""
    early_changes: int | None = None
    """``changes`` when the track was decided early; None while it has not been."""
    matched: bool = False
    """Its early decision matched: the track's end raises no second alert."""
    origin: Track | None = None
    """Set on a snapshot taken for an early decision: the live track it copies."""

    def predicted_box(self, timestamp: float) -> np.ndarray:
        return self.box + self.velocity * (timestamp - self.last_seen)

    def offer(self, shot: Shot, capacity: int) -> None:
        """Keep ``shot`` if it is among the ``capacity`` best seen so far."""
        self.best_shots.append(shot)
        self.best_shots.sort(key=lambda s: s.quality, reverse=True)
        for dropped in self.best_shots[capacity:]:
            dropped.chip.fill(0)
        del self.best_shots[capacity:]
        if any(kept is shot for kept in self.best_shots):
            self.changes += 1

    def snapshot(self) -> Track:
        """A copy to decide early, while the person is still in view. It has its own
        chips: the tracker keeps replacing and overwriting the live track's."""
        shots = [Shot(s.chip.copy(), s.quality, s.timestamp) for s in self.best_shots]
        return replace(
            self, box=self.box.copy(), velocity=self.velocity.copy(), best_shots=shots, origin=self
        )

    @property
    def to_decide(self) -> bool:
        """Whether deciding this track now could raise an alert not raised yet: a
        snapshot whose track has not matched, or an ended track that did not match
        early and has better shots than when it was decided early (if it was)."""
        if self.origin is not None:
            return not self.origin.matched
        return not self.matched and self.changes != self.early_changes

    def wipe(self) -> None:
        """Overwrite and release every chip (for tracks that matched nobody)."""
        for shot in self.best_shots:
            shot.chip.fill(0)
        self.best_shots.clear()


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in ``a`` (N, 4) with every box in ``b`` (M, 4)."""
    left = np.maximum(boxes_a[:, None, 0], boxes_b[None, :, 0])
    top = np.maximum(boxes_a[:, None, 1], boxes_b[None, :, 1])
    right = np.minimum(boxes_a[:, None, 2], boxes_b[None, :, 2])
    bottom = np.minimum(boxes_a[:, None, 3], boxes_b[None, :, 3])
    intersection = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    area_a = (boxes_a[:, 2] - boxes_a[:, 0]) * (boxes_a[:, 3] - boxes_a[:, 1])
    area_b = (boxes_b[:, 2] - boxes_b[:, 0]) * (boxes_b[:, 3] - boxes_b[:, 1])
    union = area_a[:, None] + area_b[None, :] - intersection
    return np.where(union > 0, intersection / np.maximum(union, 1e-9), 0.0)


def _centre_distances(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Distance between centres in units of the larger face width, (N, M)."""
    centres_a = (boxes_a[:, :2] + boxes_a[:, 2:]) / 2
    centres_b = (boxes_b[:, :2] + boxes_b[:, 2:]) / 2
    distance = np.linalg.norm(centres_a[:, None] - centres_b[None], axis=2)
    widths = np.maximum(
        (boxes_a[:, 2] - boxes_a[:, 0])[:, None], (boxes_b[:, 2] - boxes_b[:, 0])[None, :]
    )
    return distance / np.maximum(widths, 1e-6)


def _greedy_pairs(
    cost: np.ndarray, allowed: np.ndarray, taken_rows: set[int], taken_cols: set[int]
) -> list[tuple[int, int]]:
    """Pairs of (row, col) in increasing cost, each row and column used once."""
    pairs = []
    for flat in np.argsort(cost, axis=None, kind="stable"):
        row, col = divmod(int(flat), cost.shape[1])
        if allowed[row, col] and row not in taken_rows and col not in taken_cols:
            pairs.append((row, col))
            taken_rows.add(row)
            taken_cols.add(col)
    return pairs


class FaceTracker:
    """Joins detections of one source into tracks."""

    def __init__(self, config: TrackingConfig) -> None:
        self.config = config
        self._tracks: list[Track] = []
        self._next_id = 1

    @property
    def active(self) -> list[Track]:
        return list(self._tracks)

    def update(
        self, timestamp: float, faces: list[tuple[FaceObservation, Shot | None]]
    ) -> list[Track]:
        """Add one analysed frame's faces; return the tracks that ended.

        Each face comes with its :class:`Shot` when it passed the quality gate,
        else ``None`` (it still extends its track, but is never embedded).
        """
        ended = [track for track in self._tracks if self._expired(track, timestamp)]
        self._tracks = [track for track in self._tracks if track not in ended]
        boxes = np.array([face.box for face, _ in faces], np.float32).reshape(-1, 4)
        assignment = self._associate(timestamp, boxes)
        for index, (observation, shot) in enumerate(faces):
            track = assignment.get(index)
            if track is None:
                track = Track(
                    id=self._next_id, start=timestamp, last_seen=timestamp, box=observation.box
                )
                self._next_id += 1
                self._tracks.append(track)
            else:
                step = max(timestamp - track.last_seen, 1e-6)
                motion = (observation.box - track.box) / step
                track.velocity = (
                    _VELOCITY_SMOOTHING * motion + (1 - _VELOCITY_SMOOTHING) * track.velocity
                ).astype(np.float32)
                track.box = observation.box
                track.last_seen = timestamp
                track.frames += 1
            if shot is not None:
                track.offer(shot, self.config.best_shots)
        return ended

    def finish(self) -> list[Track]:
        """End every active track (end of source, or before an unrelated image)."""
        ended, self._tracks = self._tracks, []
        return ended

    def _expired(self, track: Track, timestamp: float) -> bool:
        return (
            timestamp - track.last_seen > self.config.max_missed_seconds
            or timestamp - track.start >= self.config.max_track_seconds
        )

    def _associate(self, timestamp: float, boxes: np.ndarray) -> dict[int, Track]:
        if not self._tracks or len(boxes) == 0:
            return {}
        predicted = np.array([t.predicted_box(timestamp) for t in self._tracks], np.float32)
        overlap = iou_matrix(predicted, boxes)
        taken_tracks: set[int] = set()
        taken_faces: set[int] = set()
        pairs = _greedy_pairs(
            -overlap, overlap >= self.config.iou_threshold, taken_tracks, taken_faces
        )
        distance = _centre_distances(predicted, boxes)
        widths_t = predicted[:, 2] - predicted[:, 0]
        widths_f = boxes[:, 2] - boxes[:, 0]
        ratio = widths_t[:, None] / np.maximum(widths_f[None, :], 1e-6)
        similar_size = (ratio > 0.5) & (ratio < 2.0)
        pairs += _greedy_pairs(
            distance,
            (distance <= self.config.max_centre_shift) & similar_size,
            taken_tracks,
            taken_faces,
        )
        return {face: self._tracks[track] for track, face in pairs}
