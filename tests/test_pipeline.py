"""The whole recognition flow on the shared clips, against LFW watchlists.

The debate clip shows Joe Biden and Donald Trump, both in LFW; the other
three clips show nobody on any watchlist. The watchlist of 100 other LFW
identities is the false-alarm check.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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
from watchkeeper.pipeline import MatchEvent, RecognitionPipeline, resolve_threshold
from watchkeeper.video.sources import open_source
from watchkeeper.vision.detection import FaceDetector
from watchkeeper.vision.embedding import FaceEmbedder

TARGETS = ["Joseph_Biden", "Donald_Trump"]


@pytest.fixture(scope="module")
def others(yunet: FaceDetector, dlib_embedder: FaceEmbedder, settings: Settings) -> dict:
    """100 other LFW identities (seeded), up to 2 photos each."""
    candidates = other_identities(150, exclude=set(TARGETS))
    return enrol_identities(candidates, 100, yunet, dlib_embedder, settings.quality)


@pytest.fixture(scope="module")
def full_gallery(
    others: dict, yunet: FaceDetector, dlib_embedder: FaceEmbedder, settings: Settings
) -> Gallery:
    """Biden (5 photos), Trump (1) and the 100 others."""
    targets = enrol_identities(TARGETS, 2, yunet, dlib_embedder, settings.quality, 5)
    return Gallery.from_templates({**targets, **others})


@pytest.fixture(scope="module")
def others_gallery(others: dict) -> Gallery:
    return Gallery.from_templates(others)


PipelineFactory = Callable[[Gallery], RecognitionPipeline]


@pytest.fixture
def make_pipeline(
    yunet: FaceDetector, dlib_embedder: FaceEmbedder, settings: Settings, registry: ModelRegistry
) -> PipelineFactory:
    def make(gallery: Gallery) -> RecognitionPipeline:
        return RecognitionPipeline(
            yunet,
            dlib_embedder,
            gallery,
            settings.quality,
            settings.tracking,
            resolve_threshold(settings, registry, len(gallery.subjects)),
        )

    return make


def scan(clip: Path, pipeline: RecognitionPipeline, settings: Settings) -> list[MatchEvent]:
    source = open_source(str(clip), settings.video)
    events = list(pipeline.run(source.frames(), source.continuous))
    source.close()
    return events


def test_biden_is_matched_in_the_debate_and_nobody_else_is(
    full_gallery: Gallery, make_pipeline: PipelineFactory, settings: Settings
) -> None:
    pipeline = make_pipeline(full_gallery)
    events = scan(DEBATE, pipeline, settings)
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


@pytest.mark.parametrize("clip", [CROWD, CORRIDOR, STAGE], ids=["crowd", "corridor", "stage"])
def test_clips_of_strangers_raise_no_match(
    clip: Path, others_gallery: Gallery, make_pipeline: PipelineFactory, settings: Settings
) -> None:
    pipeline = make_pipeline(others_gallery)
    assert scan(clip, pipeline, settings) == []
    # The check means something only if faces were really compared.
    assert pipeline.stats.usable_faces > 0
    assert pipeline.stats.embeddings > 0
    assert pipeline.stats.tracks >= 2


def test_unknown_tracks_leave_nothing_behind(
    full_gallery: Gallery, make_pipeline: PipelineFactory, settings: Settings
) -> None:
    """After a clip of strangers, no chip or vector survives in the pipeline."""
    pipeline = make_pipeline(full_gallery)
    source = open_source(str(CORRIDOR), settings.video)
    chips_seen = []
    for frame in source.frames():
        assert pipeline.process(frame) == []
        chips_seen += [shot.chip for track in pipeline.tracker.active for shot in track.best_shots]
    assert pipeline.finish() == []
    assert pipeline.tracker.active == []
    assert chips_seen, "the corridor clip has usable faces"
    assert all(not chip.any() for chip in chips_seen), "every chip was overwritten"


def test_a_gallery_from_another_model_is_refused(
    full_gallery: Gallery, yunet: FaceDetector, dlib_embedder: FaceEmbedder, settings: Settings
) -> None:
    foreign = Gallery("sface-2021dec@2021dec", full_gallery.matrix, full_gallery.labels)
    with pytest.raises(ModelMismatchError, match="re-enrol"):
        RecognitionPipeline(yunet, dlib_embedder, foreign, settings.quality, settings.tracking, 0.9)
