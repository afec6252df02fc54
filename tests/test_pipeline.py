"""The whole recognition flow on the shared clips, against LFW watchlists.

The debate clip shows Joe Biden and Donald Trump, both in LFW; the other
three clips show nobody on any watchlist. The watchlist of 100 other LFW
identities is the false-alarm check.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.data import (
    CORRIDOR,
    CROWD,
    DEBATE,
    STAGE,
    enrol_identities,
    other_identities,
)
from watchkeeper.config import Settings
from watchkeeper.matching.gallery import Gallery, ModelMismatchError
from watchkeeper.models.registry import ModelRegistry
from watchkeeper.pipeline import (
    CameraPipeline,
    FaceAnalyser,
    FaceModels,
    Matcher,
    MatchEvent,
    shots_of,
)
from watchkeeper.streaming.engine import RecognitionEngine
from watchkeeper.video.sources import open_source
from watchkeeper.vision.detection import FaceDetector
from watchkeeper.vision.embedding import FaceEmbedder

TARGETS = ["Joseph_Biden", "Donald_Trump"]


@pytest.fixture(scope="module")
def others(yunet: FaceDetector, face_embedder: FaceEmbedder, settings: Settings) -> dict:
    """100 other LFW identities (seeded), up to 2 photos each."""
    candidates = other_identities(150, exclude=set(TARGETS))
    return enrol_identities(candidates, 100, yunet, face_embedder, settings.quality)


@pytest.fixture(scope="module")
def full_gallery(
    others: dict, yunet: FaceDetector, face_embedder: FaceEmbedder, settings: Settings
) -> Gallery:
    """Biden (5 photos), Trump (1) and the 100 others."""
    targets = enrol_identities(TARGETS, 2, yunet, face_embedder, settings.quality, 5)
    return Gallery.from_templates({**targets, **others})


@pytest.fixture(scope="module")
def others_gallery(others: dict) -> Gallery:
    return Gallery.from_templates(others)


def scan(
    clip: Path,
    gallery: Gallery,
    embedder: FaceEmbedder,
    settings: Settings,
    registry: ModelRegistry,
    yunet: FaceDetector,
) -> tuple[list[MatchEvent], CameraPipeline]:
    """Run ``clip`` through the streaming engine as one camera; its events and pipeline."""
    models = FaceModels(yunet, embedder, settings.quality, registry, settings.matching)
    pipeline = models.pipeline(gallery, settings.tracking)
    engine = RecognitionEngine.with_models(settings, models)
    engine.add_camera("clip", open_source(str(clip), settings.video), pipeline)
    return [item.event for item in engine.run()], pipeline


@pytest.fixture(scope="module")
def run(
    face_embedder: FaceEmbedder, settings: Settings, registry: ModelRegistry, yunet: FaceDetector
) -> Run:
    """``run(clip, gallery, early_decision_shots=...)``: events and pipeline of one scan."""

    def scan_with(clip: Path, gallery: Gallery, **tracking: Any) -> Scanned:
        changed = settings.tracking.model_copy(update=tracking)
        adjusted = settings.model_copy(update={"tracking": changed})
        return scan(clip, gallery, face_embedder, adjusted, registry, yunet)

    return scan_with


Scanned = tuple[list[MatchEvent], CameraPipeline]
Run = Callable[..., Scanned]


@pytest.fixture(scope="module")
def debate_early(run: Run, full_gallery: Gallery) -> Scanned:
    """The debate, with early decisions (the default)."""
    return run(DEBATE, full_gallery)


@pytest.fixture(scope="module")
def debate_late(run: Run, full_gallery: Gallery) -> Scanned:
    """The debate, decided only when tracks end, so that each event spans its track."""
    return run(DEBATE, full_gallery, early_decision_shots=0)


def test_biden_is_matched_in_the_debate_and_nobody_else_is(
    debate_late: Scanned, settings: Settings
) -> None:
    events, pipeline = debate_late
    subjects = [event.subject for event in events]
    assert "Joseph_Biden" in subjects
    # Trump's only LFW photo is 20 years older than the clip: Trump or UNKNOWN,
    # never one of the 100 others.
    assert set(subjects) <= set(TARGETS)
    biden = [e for e in events if e.subject == "Joseph_Biden"]
    # Biden is on screen for the whole clip (a cut at 2.5 s moves him).
    assert sum(e.end - e.start for e in biden) > 14
    assert all(e.candidates[0].subject == e.subject for e in events)
    assert pipeline.stats.tracks >= 3
    # Embeddings are computed for best shots only: at most best_shots per track.
    assert pipeline.stats.embeddings <= settings.tracking.best_shots * pipeline.stats.tracks
    assert pipeline.stats.faces > 10 * pipeline.stats.embeddings


def test_a_match_is_decided_while_the_person_is_still_in_view(
    debate_early: Scanned, debate_late: Scanned, settings: Settings
) -> None:
    """Early decisions (the default): an alert from a track's first usable shots, and
    only one per track however long the person stays."""
    events, pipeline = debate_early
    late, _ = debate_late
    biden = [e for e in events if e.subject == "Joseph_Biden"]
    assert biden
    assert {e.subject for e in events} <= set(TARGETS)
    # Three usable shots at 10 analysed frames/s: decided within a second of the start,
    # while the tracks that end (the whole clip, in the late run) last far longer.
    needed = settings.tracking.early_decision_shots
    assert all(e.end - e.start < 1.0 and e.frames >= needed for e in biden)
    assert max(e.end - e.start for e in late if e.subject == "Joseph_Biden") > 5
    assert len({e.track_id for e in events}) == len(events), "one alert per track"
    assert pipeline.stats.matches == len(events)


def test_early_decisions_count_each_track_once(debate_early: Scanned, debate_late: Scanned) -> None:
    _, early = debate_early
    _, late = debate_late
    assert early.stats.tracks == late.stats.tracks
    assert early.stats.embeddings > late.stats.embeddings, "tracks decided early were embedded"


@pytest.mark.parametrize("clip", [CROWD, CORRIDOR, STAGE], ids=["crowd", "corridor", "stage"])
def test_clips_of_strangers_raise_no_match(clip: Path, others_gallery: Gallery, run: Run) -> None:
    events, pipeline = run(clip, others_gallery)
    assert events == []
    # The check means something only if faces were really compared.
    assert pipeline.stats.usable_faces > 0
    assert pipeline.stats.embeddings > 0
    assert pipeline.stats.tracks >= 2


def test_unknown_tracks_leave_nothing_behind(
    full_gallery: Gallery,
    yunet: FaceDetector,
    face_embedder: FaceEmbedder,
    settings: Settings,
    registry: ModelRegistry,
) -> None:
    """After a clip of strangers, no chip or vector survives in the pipeline."""
    analyser = FaceAnalyser(yunet, face_embedder.layout, settings.quality)
    models = FaceModels(yunet, face_embedder, settings.quality, registry, settings.matching)
    threshold = models.threshold(len(full_gallery.subjects))
    pipeline = CameraPipeline(
        face_embedder.model_id, Matcher(full_gallery, threshold), settings.tracking
    )
    source = open_source(str(CORRIDOR), settings.video)
    chips_seen, vectors_seen = [], []

    def decide(tracks: list) -> list[MatchEvent]:
        embeddings = face_embedder.embed(shots_of(tracks))
        vectors_seen.append(embeddings.vectors)
        return pipeline.decide(tracks, embeddings)

    for frame in source.frames():
        assert decide(pipeline.track(analyser.analyse(frame))) == []
        chips_seen += [shot.chip for track in pipeline.tracker.active for shot in track.best_shots]
    assert decide(pipeline.finish()) == []
    assert pipeline.tracker.active == []
    assert chips_seen, "the corridor clip has usable faces"
    assert all(not chip.any() for chip in chips_seen), "every chip was overwritten"
    assert any(len(vectors) for vectors in vectors_seen)
    assert all(not vectors.any() for vectors in vectors_seen), "every vector was overwritten"


def test_a_gallery_from_another_model_is_refused(
    full_gallery: Gallery, face_embedder: FaceEmbedder, settings: Settings
) -> None:
    foreign = Gallery("dlib-resnet-v1@1", full_gallery.matrix, full_gallery.labels)
    with pytest.raises(ModelMismatchError, match="re-enrol"):
        CameraPipeline(face_embedder.model_id, Matcher(foreign, 0.9), settings.tracking)
    pipeline = CameraPipeline(face_embedder.model_id, Matcher(full_gallery, 0.9), settings.tracking)
    with pytest.raises(ModelMismatchError, match="re-enrol"):
        pipeline.matcher = Matcher(foreign, 0.9)
