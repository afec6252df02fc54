"""From frames to decisions: the stages of recognition for one camera.

    frame -> detect -> quality gate (geometry, then align + sharpness)      FaceAnalyser
          -> track                                                         CameraPipeline.track
          -> [track ends] -> embed best shots -> match -> decide           CameraPipeline.decide

Detection and the gate keep no state between frames, so frames of one camera
may be analysed by several threads at once; tracking needs the frames in
order, and embedding is batched across tracks and cameras. The streaming
engine (:mod:`watchkeeper.streaming`) schedules these stages; this module
only defines them.

Privacy by construction: a face is held only as a chip inside its track's
best shots. When a track ends without a match its chips and vectors are
overwritten and released; nothing about it is logged, returned or written.
Only :class:`MatchEvent` objects leave the pipeline.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from watchkeeper.config import MatchingConfig, QualityConfig, Settings, TrackingConfig
from watchkeeper.errors import ConfigError
from watchkeeper.matching.gallery import Candidate, Gallery, ModelMismatchError
from watchkeeper.models.registry import ModelRegistry
from watchkeeper.tracking.tracker import FaceTracker, Shot, Track
from watchkeeper.video.sources import Frame
from watchkeeper.vision.alignment import ChipLayout
from watchkeeper.vision.detection import FaceDetector, create_detector
from watchkeeper.vision.embedding import Embeddings, FaceEmbedder, create_embedder
from watchkeeper.vision.observation import FaceObservation
from watchkeeper.vision.quality import gate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MatchEvent:
    """A track decided to be a watchlist subject: a candidate for human review."""

    track_id: int
    subject: str
    score: float
    """Fused cosine similarity of the track to the subject."""
    threshold: float
    """The threshold the score was decided against (the calibrated one for the size of
    the watchlist searched, or the configured one): stored with the alert."""
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
    qualities: tuple[float, ...] = ()
    """The quality score (0 to 1) of each shot, in the order of ``shots``."""

    def sighting(self) -> dict[str, float | int | None]:
        """What a reviewer should know about how the match was seen (stored with the
        alert): how long and in how many frames, how many usable shots and the best
        one's quality, and the margin to the next-best watchlist entry (None if only
        one entry was a candidate)."""
        others = [c.score for c in self.candidates if c.subject != self.subject]
        return {
            "seconds": round(self.end - self.start, 2),
            "frames": self.frames,
            "shots": len(self.shots),
            "best_quality": round(max(self.qualities), 3) if self.qualities else None,
            "runner_up_margin": round(self.score - max(others), 4) if others else None,
        }


@dataclass
class PipelineStats:
    """One camera's counts, for progress displays, summaries and benchmarks."""

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
    dropped_frames: int = 0
    """Frames of a live source discarded unanalysed because analysis fell behind."""


@dataclass
class AnalysedFrame:
    """One frame's faces after detection and the quality gate."""

    frame: Frame
    faces: list[tuple[FaceObservation, Shot | None]]
    """Every detected face, with its aligned shot when it passed the gate."""
    detect_s: float = 0.0
    quality_s: float = 0.0


class FaceAnalyser:
    """Detection and the quality gate for single frames.

    It keeps no state between frames, so one camera's frames can be analysed
    in parallel; detectors are not thread-safe, so each thread has its own.
    """

    def __init__(self, detector: FaceDetector, layout: ChipLayout, quality: QualityConfig) -> None:
        self.detector = detector
        self.layout = layout
        self.quality = quality

    def analyse(self, frame: Frame) -> AnalysedFrame:
        started = time.perf_counter()
        observations = self.detector.detect(frame.image)
        detected = time.perf_counter()
        faces = [(obs, self._shot(frame, obs)) for obs in observations]
        return AnalysedFrame(
            frame, faces, detect_s=detected - started, quality_s=time.perf_counter() - detected
        )

    def _shot(self, frame: Frame, observation: FaceObservation) -> Shot | None:
        report, chip = gate(frame.image, observation, self.layout, self.quality)
        if not report.kept or chip is None:
            return None
        return Shot(chip=chip, quality=report.score, timestamp=frame.timestamp)


@dataclass(frozen=True)
class Matcher:
    """What a camera's tracks are decided against. Replaced whole (never mutated)
    when the watchlist is reloaded, so a decision sees one consistent version."""

    gallery: Gallery
    threshold: float
    """Cosine similarity a track's fused score must reach to be a match."""
    top_k: int = 5


class CameraPipeline:
    """One camera's state: its tracker, the watchlist it searches and its counts.

    :meth:`track` must see the camera's frames in order; :meth:`decide` may
    run in another thread (the tracks it gets have left the tracker).
    """

    def __init__(self, model_id: str, matcher: Matcher, tracking: TrackingConfig) -> None:
        self.model_id = model_id
        self.tracker = FaceTracker(tracking)
        self.stats = PipelineStats()
        self._matcher = matcher
        self.matcher = matcher

    @property
    def matcher(self) -> Matcher:
        return self._matcher

    @matcher.setter
    def matcher(self, matcher: Matcher) -> None:
        if matcher.gallery.model_id != self.model_id:
            raise ModelMismatchError(
                f"watchlist templates come from {matcher.gallery.model_id}, the embedder is "
                f"{self.model_id}; re-enrol the watchlist with this model"
            )
        self._matcher = matcher

    def track(self, analysed: AnalysedFrame, continuous: bool = True) -> list[Track]:
        """Add one analysed frame; return the tracks to decide: those that ended, and
        snapshots of live tracks ready for an early decision (see
        ``TrackingConfig.early_decision_shots``).

        ``continuous=False`` treats the frame as an unrelated picture: its
        faces are decided at once instead of being tracked into the next one.
        """
        self.stats.frames += 1
        self.stats.faces += len(analysed.faces)
        self.stats.usable_faces += sum(shot is not None for _, shot in analysed.faces)
        ended = self.tracker.update(analysed.frame.timestamp, analysed.faces)
        if not continuous:
            return ended + self.tracker.finish()
        return ended + self._early_snapshots()

    def _early_snapshots(self) -> list[Track]:
        """Snapshots of the live tracks that just reached ``early_decision_shots``."""
        needed = self.tracker.config.early_decision_shots
        snapshots = []
        for track in self.tracker.active:
            if needed and track.early_changes is None and len(track.best_shots) >= needed:
                track.early_changes = track.changes
                snapshots.append(track.snapshot())
        return snapshots

    def finish(self) -> list[Track]:
        """End the source: every track still open."""
        return self.tracker.finish()

    def discard(self, tracks: list[Track]) -> None:
        """Tracks with nothing new to decide (see ``Track.to_decide``): counted, wiped."""
        self.stats.tracks += sum(track.origin is None for track in tracks)
        for track in tracks:
            track.wipe()

    def decide(
        self, tracks: list[Track], embeddings: Embeddings, image: str | None = None
    ) -> list[MatchEvent]:
        """Decide ``tracks`` given the embeddings of their best shots, in order.

        Tracks that match nobody are wiped, and so is ``embeddings``. A snapshot that
        matches marks its live track matched, so that the track raises no second alert.
        """
        self.stats.tracks += sum(track.origin is None for track in tracks)
        self.stats.embeddings += len(embeddings)
        matcher = self.matcher
        events = []
        offset = 0
        for track in tracks:
            count = len(track.best_shots)
            shots = Embeddings(embeddings.model_id, embeddings.vectors[offset : offset + count])
            offset += count
            if track.origin is None and track.matched:  # its snapshot matched just now
                track.wipe()
                continue
            weights = np.array([shot.quality for shot in track.best_shots])
            decision = matcher.gallery.decide(shots, weights, matcher.threshold, matcher.top_k)
            if decision.subject is None:
                track.wipe()
                continue
            if track.origin is not None:
                track.origin.matched = True
            probe = weights @ shots.vectors if weights.sum() > 0 else shots.vectors.mean(0)
            probe = (probe / np.linalg.norm(probe)).astype(np.float32)
            events.append(
                MatchEvent(
                    track_id=track.id,
                    subject=decision.subject,
                    score=decision.score,
                    threshold=matcher.threshold,
                    start=track.start,
                    end=track.last_seen,
                    frames=track.frames,
                    candidates=decision.candidates,
                    shots=tuple(shot.chip for shot in track.best_shots),
                    probe=probe,
                    image=image,
                    qualities=tuple(float(shot.quality) for shot in track.best_shots),
                )
            )
            track.best_shots.clear()
        embeddings.vectors.fill(0)
        self.stats.matches += len(events)
        for event in events:
            log.debug("track %d matched %s (%.3f)", event.track_id, event.subject, event.score)
        return events


def split_decidable(tracks: list[Track]) -> tuple[list[Track], list[Track]]:
    """``tracks`` split into those to embed and decide and those to discard (see
    ``Track.to_decide``). Call it just before embedding: an early decision of the
    same track can change the answer."""
    return [t for t in tracks if t.to_decide], [t for t in tracks if not t.to_decide]


def shots_of(tracks: list[Track]) -> list[np.ndarray]:
    """The chips :meth:`CameraPipeline.decide` needs embedded for ``tracks``, in order."""
    return [shot.chip for track in tracks for shot in track.best_shots]


def model_name(model_id: str) -> str:
    """The registry name in a template's model id (``ModelSpec.model_id``, "name@version")."""
    return model_id.rpartition("@")[0] or model_id


@dataclass(frozen=True)
class FaceModels:
    """The models of one process, loaded once (:meth:`load`): the detector, the identity
    embedder and the quality gate that turn a photo or a frame into templates, and how
    a watchlist searched with them is matched (the threshold for its size).

    Everything that detects or embeds builds its models here: `scan`, `bench`, the
    camera workers of `serve`, enrolment on the web and the command line, evaluation."""

    detector: FaceDetector
    embedder: FaceEmbedder
    quality: QualityConfig
    registry: ModelRegistry
    """Where the embedder's calibration is read."""
    matching: MatchingConfig

    @classmethod
    def load(cls, settings: Settings, embedder: str | None = None) -> FaceModels:
        """The configured detector and quality gate, and the embedder called ``embedder``
        (default ``settings.embedder``; for the stored watchlist, the organisation's
        model in use, ``governance.subjects.model_in_use``)."""
        registry = ModelRegistry(settings.models_dir)
        return cls(
            create_detector(settings.detection, registry),
            create_embedder(embedder or settings.embedder, registry, settings.inference),
            settings.quality,
            registry,
            settings.matching,
        )

    def threshold(self, watchlist_size: int) -> float:
        """The configured threshold, else the embedder's calibrated one for a watchlist
        of ``watchlist_size`` people."""
        if self.matching.threshold is not None:
            return self.matching.threshold
        spec = self.registry.spec(model_name(self.embedder.model_id))
        if spec.calibration is None:
            raise ConfigError(
                f"model {spec.name!r} has no calibrated threshold; measure one with "
                "`watchkeeper calibrate` or set matching.threshold"
            )
        return spec.calibration.threshold_for(watchlist_size)

    def matcher(self, gallery: Gallery, watchlist_size: int | None = None) -> Matcher:
        """What a camera's tracks are decided against: ``gallery`` at the threshold for
        its number of people (or for ``watchlist_size``, where it is a part of a larger
        watchlist, as in the video protocol)."""
        size = len(gallery.subjects) if watchlist_size is None else watchlist_size
        return Matcher(gallery, self.threshold(size), self.matching.top_k)

    def pipeline(
        self, gallery: Gallery, tracking: TrackingConfig, watchlist_size: int | None = None
    ) -> CameraPipeline:
        """A new camera's pipeline searching ``gallery`` (see :meth:`matcher`)."""
        matcher = self.matcher(gallery, watchlist_size)
        return CameraPipeline(self.embedder.model_id, matcher, tracking)
