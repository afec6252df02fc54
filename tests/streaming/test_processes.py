"""Cameras shared among worker processes: same decisions, failures kept apart, stopping."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.streaming.conftest import BIDEN_THRESHOLD
from tests.support.data import DEBATE, STAGE
from tests.support.rtsp_server import RtspServer
from watchkeeper.config import Settings
from watchkeeper.matching.gallery import Gallery
from watchkeeper.models.registry import ModelRegistry
from watchkeeper.pipeline import CameraPipeline, FaceModels, Matcher
from watchkeeper.streaming.engine import CameraEvent, RecognitionEngine
from watchkeeper.streaming.processes import ProcessEngine, WorkerError, worker_settings
from watchkeeper.video.sources import open_source
from watchkeeper.vision.detection import FaceDetector
from watchkeeper.vision.embedding import FaceEmbedder


def engine_with(settings: Settings, gallery: Gallery, cameras: dict[str, str]) -> ProcessEngine:
    """Two worker processes of one analysis thread each, watching for Biden."""
    streaming = settings.streaming.model_copy(update={"processes": 2, "workers": 1})
    engine = ProcessEngine(settings.model_copy(update={"streaming": streaming}))
    for name, source in cameras.items():
        pipeline = CameraPipeline(
            gallery.model_id, Matcher(gallery, BIDEN_THRESHOLD), settings.tracking
        )
        engine.add_camera(name, source, pipeline)
    return engine


def decisions(events: list[CameraEvent]) -> list[tuple]:
    return sorted(
        (e.camera, e.event.track_id, e.event.subject, e.event.frames, round(e.event.score, 4))
        for e in events
    )


def test_cameras_in_worker_processes_give_the_threaded_engines_decisions(
    settings: Settings,
    registry: ModelRegistry,
    yunet: FaceDetector,
    face_embedder: FaceEmbedder,
    biden_gallery: Gallery,
) -> None:
    cameras = {"debate": str(DEBATE), "stage": str(STAGE)}
    engine = engine_with(settings, biden_gallery, cameras)
    engine.start()
    events = [item for item in engine.events() if item is not None]
    one_thread = settings.model_copy(
        update={"streaming": settings.streaming.model_copy(update={"workers": 1})}
    )
    models = FaceModels(yunet, face_embedder, settings.quality, registry, settings.matching)
    threaded = RecognitionEngine.with_models(one_thread, models)
    for name, source in cameras.items():
        matcher = Matcher(biden_gallery, BIDEN_THRESHOLD)
        pipeline = CameraPipeline(face_embedder.model_id, matcher, settings.tracking)
        threaded.add_camera(name, open_source(source, settings.video), pipeline)
    assert decisions(events) == decisions(threaded.run())
    assert {(e.camera, e.event.subject) for e in events} == {("debate", "Joseph_Biden")}
    assert all(len(e.event.shots) > 0 for e in events), "a match's chips come back for review"
    reports = {report.name: report for report in engine.reports}
    assert set(reports) == {"debate", "stage"}
    assert all(r.error is None and r.decoded >= r.stats.frames > 0 for r in reports.values())
    assert reports["debate"].stats.matches == len(events)
    assert engine.timings.summary()["detect"].count == sum(r.stats.frames for r in reports.values())
    assert len(engine.usage) == 2
    assert all(usage.cpu_s > 0 for usage in engine.usage)


def test_a_camera_that_cannot_be_opened_fails_alone(
    settings: Settings, biden_gallery: Gallery, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    cameras = {"broken": str(broken), "missing": str(tmp_path / "no.mp4"), "debate": str(DEBATE)}
    engine = engine_with(settings, biden_gallery, cameras)
    engine.start()
    events = [item for item in engine.events() if item is not None]
    assert {e.event.subject for e in events} == {"Joseph_Biden"}
    reports = {report.name: report for report in engine.reports}
    assert "cannot open" in (reports["broken"].error or "")
    assert "no such file" in (reports["missing"].error or "")
    assert reports["debate"].error is None


def test_stopping_live_cameras_ends_every_worker(settings: Settings, biden_gallery: Gallery):
    with RtspServer(DEBATE, loop=True) as server:
        engine = engine_with(settings, biden_gallery, {"one": server.url, "two": server.url})
        engine.start()
        started = time.monotonic()
        for _ in engine.events(poll_s=0.1):
            if time.monotonic() - started > 3:
                engine.stop()
        assert time.monotonic() - started < 30, "the workers ended soon after stop()"
    reports = {report.name: report for report in engine.reports}
    assert set(reports) == {"one", "two"}
    assert all(report.stats.frames > 10 for report in reports.values())
    assert all(report.error is None for report in reports.values())


def test_a_failing_worker_is_an_error_not_a_hang(
    settings: Settings, biden_gallery: Gallery
) -> None:
    """A pipeline for another embedding model is refused inside the worker."""
    other = Gallery("some-other-model@1", biden_gallery.matrix, biden_gallery.labels)
    engine = engine_with(settings, other, {"debate": str(DEBATE)})
    with pytest.raises(WorkerError, match="different models"):
        engine.start()


@pytest.mark.parametrize(
    ("cores", "processes", "fixed", "expected"),
    [
        (16, 4, {}, (4, 4)),
        (2, 4, {}, (1, 1)),  # never less than one thread
        (8, 1, {}, (8, 8)),
        (8, 2, {"workers": 3, "threads": 2}, (3, 2)),  # what the settings fix is kept
    ],
)
def test_each_worker_process_gets_its_share_of_the_cores(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    cores: int,
    processes: int,
    fixed: dict[str, int],
    expected: tuple[int, int],
) -> None:
    """One rule for the service's camera workers and for `bench`'s: the cores divided
    among the processes, for analysis threads and CPU inference alike."""
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    given = settings.model_copy(
        update={
            "streaming": settings.streaming.model_copy(update={"workers": fixed.get("workers", 0)}),
            "inference": settings.inference.model_copy(update={"threads": fixed.get("threads", 0)}),
        }
    )
    shared = worker_settings(given, processes)
    assert (shared.streaming.workers, shared.inference.threads) == expected
    assert shared.streaming.processes == 1
