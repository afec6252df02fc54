"""From frames to decisions: the only place that knows the whole flow.

    frame -> detect -> quality gate (geometry, then align + sharpness)
          -> track -> [track ends] -> embed best shots -> match -> decide

Privacy by construction: a face is held only as a chip inside its track's
best shots. When a track ends without a match its chips and vectors are
overwritten and released; nothing about it is logged, returned or written.
Only :class:`MatchEvent` objects leave the pipeline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from watchkeeper.config import QualityConfig, Settings, TrackingConfig
from watchkeeper.errors import ConfigError
from watchkeeper.matching.gallery import Candidate, Gallery, ModelMismatchError
from watchkeeper.models.registry import ModelRegistry
from watchkeeper.tracking.tracker import FaceTracker, Shot, Track
from watchkeeper.video.sources import Frame
from watchkeeper.vision.detection import FaceDetector
from watchkeeper.vision.embedding import Embeddings, FaceEmbedder
from watchkeeper.vision.observation import FaceObservation
from watchkeeper.vision.quality import gate

log = logging.getLogger(__name__)

STAGES = ("decode", "detect", "quality", "track", "embed", "match")


@dataclass(frozen=True)
class MatchEvent:
    """A track decided to be a watchlist subject: a candidate for human review."""

    track_id: int
    subject: str
    score: float
    """Fused cosine similarity of the track to the subject."""
    start: float
    end: float
    """First and last time the face was seen, seconds from the start of the source."""
    frames: int
    """Analysed frames in which the face was detected."""
    candidates: tuple[Candidate, ...]
    shots: tuple[np.ndarray, ...]
    """The track's best aligned chips (BGR), best first."""
    probe: np.ndarray
    """The track's identity: its shots' embeddings averaged with the fusion weights,
    unit length (what an alert stores, encrypted, for subject access searches)."""
    image: str | None = None
    """File name, when the source is a folder of images."""


@dataclass
class PipelineStats:
    """Counts and time spent, for progress displays and benchmarks."""

    frames: int = 0
    """Frames analysed."""
    faces: int = 0
    """Faces detected."""
    usable_faces: int = 0
    """Faces that passed the quality gate."""
    tracks: int = 0
    """Tracks decided (each is one person passing, as far as tracking can tell)."""
    matches: int = 0
    embeddings: int = 0
    """Chips embedded (at most best_shots per track)."""
    stage_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))


class RecognitionPipeline:
    """Runs the recognition flow for one source."""

    def __init__(
        self,
        detector: FaceDetector,
        embedder: FaceEmbedder,
        gallery: Gallery,
        quality: QualityConfig,
        tracking: TrackingConfig,
        threshold: float,
        top_k: int = 5,
    ) -> None:
        if gallery.model_id != embedder.model_id:
            raise ModelMismatchError(
                f"watchlist templates come from {gallery.model_id}, the embedder is "
                f"{embedder.model_id}; re-enrol the watchlist with this model"
            )
        self.detector = detector
        self.embedder = embedder
        self.gallery = gallery
        self.quality = quality
        self.threshold = threshold
        self.top_k = top_k
        self.tracker = FaceTracker(tracking)
        self.stats = PipelineStats()

    @contextmanager
    def _timed(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stats.stage_seconds[stage] += time.perf_counter() - started

    def process(self, frame: Frame, continuous: bool = True) -> list[MatchEvent]:
        """Analyse one frame; return the matches of tracks that ended.

        ``continuous=False`` treats the frame as an unrelated picture: its
        faces are decided at once instead of being tracked into the next one.
        """
        self.stats.frames += 1
        with self._timed("detect"):
            observations = self.detector.detect(frame.image)
        self.stats.faces += len(observations)
        with self._timed("quality"):
            faces = [(obs, self._shot(frame, obs)) for obs in observations]
        self.stats.usable_faces += sum(shot is not None for _, shot in faces)
        with self._timed("track"):
            ended = self.tracker.update(frame.timestamp, faces)
            if not continuous:
                ended += self.tracker.finish()
        return self._decide(ended, frame.name if not continuous else None)

    def finish(self) -> list[MatchEvent]:
        """End the source: decide every track still open."""
        return self._decide(self.tracker.finish(), None)

    def timed(self, frames: Iterable[Frame]) -> Iterator[Frame]:
        """``frames``, with the time spent waiting for each counted as decoding."""
        iterator = iter(frames)
        while True:
            with self._timed("decode"):
                frame = next(iterator, None)
            if frame is None:
                return
            yield frame

    def run(self, frames: Iterable[Frame], continuous: bool = True) -> Iterator[MatchEvent]:
        """Process a whole source, yielding matches as their tracks end."""
        for frame in self.timed(frames):
            yield from self.process(frame, continuous)
        yield from self.finish()

    def _shot(self, frame: Frame, observation: FaceObservation) -> Shot | None:
        report, chip = gate(frame.image, observation, self.embedder.layout, self.quality)
        if not report.kept or chip is None:
            return None
        return Shot(chip=chip, quality=report.score, timestamp=frame.timestamp)

    def _decide(self, tracks: list[Track], image: str | None) -> list[MatchEvent]:
        if not tracks:
            return []
        self.stats.tracks += len(tracks)
        chips = [shot.chip for track in tracks for shot in track.best_shots]
        with self._timed("embed"):
            embeddings = self.embedder.embed(chips)
        self.stats.embeddings += len(chips)
        events = []
        offset = 0
        with self._timed("match"):
            for track in tracks:
                count = len(track.best_shots)
                shots = Embeddings(embeddings.model_id, embeddings.vectors[offset : offset + count])
                offset += count
                weights = np.array([shot.quality for shot in track.best_shots])
                decision = self.gallery.decide(shots, weights, self.threshold, self.top_k)
                if decision.subject is None:
                    track.wipe()
                    continue
                probe = weights @ shots.vectors if weights.sum() > 0 else shots.vectors.mean(0)
                probe = (probe / np.linalg.norm(probe)).astype(np.float32)
                events.append(
                    MatchEvent(
                        track_id=track.id,
                        subject=decision.subject,
                        score=decision.score,
                        start=track.start,
                        end=track.last_seen,
                        frames=track.frames,
                        candidates=decision.candidates,
                        shots=tuple(shot.chip for shot in track.best_shots),
                        probe=probe,
                        image=image,
                    )
                )
                track.best_shots.clear()
        embeddings.vectors.fill(0)
        self.stats.matches += len(events)
        for event in events:
            log.debug("track %d matched %s (%.3f)", event.track_id, event.subject, event.score)
        return events


def resolve_threshold(settings: Settings, registry: ModelRegistry, watchlist_size: int) -> float:
    """The configured threshold, else the embedder's calibrated one for this watchlist size."""
    if settings.matching.threshold is not None:
        return settings.matching.threshold
    spec = registry.spec(settings.embedder)
    if spec.calibration is None:
        raise ConfigError(
            f"model {spec.name!r} has no calibrated threshold; measure one with "
            "`watchkeeper calibrate` or set matching.threshold"
        )
    return spec.calibration.threshold_for(watchlist_size)
