"""The streaming engine on real clips: order, batching, overload, failures, stopping."""

from __future__ import annotations

import random
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.streaming.conftest import BIDEN_THRESHOLD
from tests.support.data import CROWD, DEBATE, STAGE
from tests.support.sources import PacedClip
from watchkeeper.config import Settings, StreamingConfig
from watchkeeper.errors import SourceError
from watchkeeper.matching.gallery import Gallery
from watchkeeper.models.registry import ModelRegistry
from watchkeeper.pipeline import AnalysedFrame, CameraPipeline, FaceAnalyser, Matcher
from watchkeeper.streaming.engine import RecognitionEngine, analyser_factory
from watchkeeper.tracking.tracker import Track
from watchkeeper.video.sources import Frame, FrameSource, open_source
from watchkeeper.vision.detection import FaceDetector
from watchkeeper.vision.embedding import FaceEmbedder


class RecordingPipeline(CameraPipeline):
    """Remembers the timestamps the tracker was given, in the order it got them."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.tracked: list[float] = []

    def track(self, analysed: AnalysedFrame, continuous: bool = True) -> list[Track]:
        self.tracked.append(analysed.frame.timestamp)
        return super().track(analysed, continuous)


class SlowAnalyser(FaceAnalyser):
    """Real detection, plus a delay per frame (seconds drawn from ``delay()``), and an
    optional failure from one frame index on."""

    def __init__(
        self, base: FaceAnalyser, delay: Callable[[], float], fail_at: int | None = None
    ) -> None:
        super().__init__(base.detector, base.layout, base.quality)
        self.delay = delay
        self.fail_at = fail_at

    def analyse(self, frame: Frame) -> AnalysedFrame:
        if self.fail_at is not None and frame.index >= self.fail_at:
            raise RuntimeError("analysis broke on purpose")
        time.sleep(self.delay())
        return super().analyse(frame)


@pytest.fixture
def build(
    biden_gallery: Gallery,
    yunet: FaceDetector,
    face_embedder: FaceEmbedder,
    settings: Settings,
    registry: ModelRegistry,
) -> Callable[..., tuple[RecognitionEngine, Callable[[str, FrameSource], RecordingPipeline]]]:
    """``build(workers=, queue_frames=, delay=, fail_at=)`` -> (engine, add_camera)."""

    def make(
        workers: int = 2,
        queue_frames: int = 4,
        delay: Callable[[], float] | None = None,
        fail_at: int | None = None,
    ) -> tuple[RecognitionEngine, Callable[[str, FrameSource], RecordingPipeline]]:
        base = analyser_factory(yunet, settings, registry, face_embedder.layout)
        if delay is None and fail_at is None:
            factory = base
        else:
            factory = lambda: SlowAnalyser(base(), delay or (lambda: 0.0), fail_at)  # noqa: E731
        config = StreamingConfig(workers=workers, queue_frames=queue_frames, max_batch=16)
        engine = RecognitionEngine(factory, face_embedder, config)
        matcher = Matcher(biden_gallery, BIDEN_THRESHOLD)

        def add(name: str, source: FrameSource) -> RecordingPipeline:
            pipeline = RecordingPipeline(face_embedder.model_id, matcher, settings.tracking)
            engine.add_camera(name, source, pipeline)
            return pipeline

        return engine, add

    return make


def test_frames_are_tracked_in_order_however_the_workers_finish(build, settings) -> None:
    jitter = random.Random(3)
    engine, add = build(workers=3, delay=lambda: jitter.uniform(0, 0.02))
    pipeline = add("debate", open_source(str(DEBATE), settings.video))
    engine.run()
    assert len(pipeline.tracked) == 171  # every sampled frame: 17 s at 10 fps
    assert pipeline.tracked == sorted(pipeline.tracked)
    assert len(set(pipeline.tracked)) == len(pipeline.tracked)


def test_decisions_do_not_depend_on_the_number_of_workers(build, settings) -> None:
    results = []
    for workers in (1, 3):
        engine, add = build(workers=workers)
        add("debate", open_source(str(DEBATE), settings.video))
        results.append(
            [
                (
                    e.camera,
                    e.event.track_id,
                    e.event.subject,
                    e.event.start,
                    e.event.end,
                    e.event.frames,
                    round(e.event.score, 5),
                )
                for e in engine.run()
            ]
        )
    assert results[0] == results[1]
    assert any(event[2] == "Joseph_Biden" for event in results[0])


def test_cameras_are_batched_together_and_decided_separately(build, settings) -> None:
    engine, add = build(workers=2)
    debate = add("debate", open_source(str(DEBATE), settings.video))
    stage = add("stage", open_source(str(STAGE), settings.video))
    events = engine.run()
    assert {e.camera for e in events} == {"debate"}
    assert {e.event.subject for e in events} == {"Joseph_Biden"}
    assert debate.stats.tracks > 0
    assert stage.stats.tracks > 0
    assert stage.stats.embeddings > 0
    batches = engine.timings.summary()["embed_batch"].count
    assert batches < debate.stats.tracks + stage.stats.tracks, "tracks share batches"
    assert all(camera.finished and camera.error is None for camera in engine.cameras)


def test_a_live_camera_faster_than_analysis_drops_its_oldest_frames(build) -> None:
    engine, add = build(workers=1, queue_frames=3, delay=lambda: 0.03)
    source = PacedClip(DEBATE, fps=100, count=150, limit=50)
    pipeline = add("busy", source)
    engine.run()
    camera = engine.cameras[0]
    assert camera.queue.dropped > 0
    assert pipeline.stats.frames + camera.queue.dropped == source.delivered == 150
    assert pipeline.tracked == sorted(pipeline.tracked)


def test_a_file_waits_for_analysis_and_loses_no_frame(build) -> None:
    engine, add = build(workers=1, queue_frames=2, delay=lambda: 0.01)
    source = PacedClip(DEBATE, fps=1000, count=60, live=False, limit=60)
    pipeline = add("file", source)
    engine.run()
    assert engine.cameras[0].queue.dropped == 0
    assert pipeline.stats.frames == 60


def test_a_busy_camera_does_not_starve_a_quiet_one(build) -> None:
    engine, add = build(workers=1, queue_frames=2, delay=lambda: 0.02)
    busy = add("busy", PacedClip(DEBATE, fps=200, count=300, limit=40))
    quiet_source = PacedClip(STAGE, fps=5, count=10, limit=10)
    quiet = add("quiet", quiet_source)
    engine.run()
    assert quiet.stats.frames == quiet_source.delivered == 10, "every quiet frame analysed"
    assert engine.cameras[0].queue.dropped > 100, "the busy camera pays for its own rate"
    assert busy.stats.frames > 0


def test_a_broken_source_ends_only_its_own_camera(build, settings, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.mp4"
    data = DEBATE.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    engine, add = build()
    add("broken", open_source(str(truncated), settings.video))
    healthy_source = open_source(str(DEBATE), settings.video)
    healthy = add("healthy", healthy_source)
    events = engine.run()
    broken = engine.cameras[0]
    assert isinstance(broken.error, SourceError)
    assert "truncated" in str(broken.error)
    assert broken.pipeline.stats.frames > 0, "what decoded was analysed"
    assert engine.cameras[1].error is None
    assert healthy.stats.frames == 171  # every sampled frame of the 17 s clip at 10 fps
    assert "Joseph_Biden" in {e.event.subject for e in events if e.camera == "healthy"}
    shutil.rmtree(tmp_path)


def test_an_analysis_failure_stops_the_engine_and_is_raised(build, settings) -> None:
    engine, add = build(workers=2, fail_at=40)
    add("debate", open_source(str(DEBATE), settings.video))
    with pytest.raises(RuntimeError, match="on purpose"):
        engine.run()
    assert not any(
        thread.is_alive() for thread in threading.enumerate() if thread.name == "decider"
    )


def test_stopping_a_live_camera_still_decides_its_open_tracks(build) -> None:
    """Ctrl-C: decoding stops, what was decoded is analysed and every open track decided,
    so a person on screen at that moment is not lost."""
    engine, add = build(workers=2)
    source = PacedClip(DEBATE, fps=25, count=100_000, limit=100)
    pipeline = add("live", source)
    engine.start()
    events = []
    for item in engine.events(poll_s=0.05):
        if item is not None:
            events.append(item)
        elif pipeline.stats.frames >= 40 and not engine._stopping.is_set():
            engine.stop()
    assert source.delivered < 1000
    assert [e.event.subject for e in events] == ["Joseph_Biden"]
    assert pipeline.tracker.active == []


class SlowEmbedder:
    """The real embedder, taking ``delay`` seconds longer per batch (a machine that
    cannot keep up with its cameras' decisions)."""

    def __init__(self, real: FaceEmbedder, delay: float) -> None:
        self.real = real
        self.delay = delay

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)

    def embed(self, chips):  # type: ignore[no-untyped-def]
        time.sleep(self.delay)
        return self.real.embed(chips)


class MeasuredEngine(RecognitionEngine):
    """Remembers the largest single decision (in chips) submitted."""

    largest = 0

    def _submit(self, decision) -> None:  # type: ignore[no-untyped-def]
        self.largest = max(self.largest, decision.chips)
        super()._submit(decision)


@pytest.mark.parametrize(("backlog", "bounded"), [(6, True), (10_000, False)])
def test_decisions_that_cannot_keep_up_wait_in_a_bounded_backlog(
    yunet, face_embedder, settings, registry, biden_gallery, backlog: int, bounded: bool
) -> None:
    """With a slow embedder, analysis waits at ``decision_backlog`` chips (the live camera
    drops frames instead) and every track is still decided; without the bound, decisions
    pile up in memory."""
    factory = analyser_factory(yunet, settings, registry, face_embedder.layout)
    config = StreamingConfig(workers=2, queue_frames=2, max_batch=2, decision_backlog=backlog)
    slow = SlowEmbedder(face_embedder, 0.15)
    engine = MeasuredEngine(factory, slow, config)  # type: ignore[arg-type]
    tracking = settings.tracking.model_copy(update={"early_decision_shots": 1})
    matcher = Matcher(biden_gallery, BIDEN_THRESHOLD)
    pipeline = CameraPipeline(face_embedder.model_id, matcher, tracking)
    camera = engine.add_camera("crowd", PacedClip(CROWD, fps=25, count=50, limit=50), pipeline)
    assert engine.decision_delay(camera) is None, "nothing decided yet"
    engine.run()
    delay = engine.decision_delay(camera)
    assert delay is not None
    assert delay >= slow.delay, "every decision waits for the embedder"
    if bounded:
        assert engine.peak_waiting_chips <= max(backlog, engine.largest)
    else:
        assert engine.peak_waiting_chips > max(6, engine.largest), "decisions pile up"
    assert pipeline.tracker.active == [], "every track was decided"
    assert pipeline.stats.tracks > 3
    assert engine.waiting_chips == 0
