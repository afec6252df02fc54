"""The streaming engine: many cameras, every core busy, bounded latency.

Threads, and what each one does::

    camera feed (one per camera)   decode -> FrameQueue (drop-oldest when live)
    analysis workers (N, shared)   take frames from the cameras in turn -> detect + gate
                                   -> put back in order -> track (per camera, in order)
    decider (one)                  ended tracks of all cameras -> one embedding batch
                                   -> match against each camera's watchlist -> events

Decoding (FFmpeg), detection (OpenCV) and embedding (ONNX Runtime or dlib)
release the GIL, so threads give real parallelism without copying frames
between processes. The workers serve the cameras round-robin, so a camera
that produces many frames cannot starve the others; its own queue drops its
oldest frames instead. Frames of one camera may be analysed by two workers
at once; a small reorder buffer hands them to the tracker in order.

Frame-to-decision latency is measured for every analysed frame, from the
moment its decoder delivered it to the moment everything it caused is done:
tracked, and if it ended tracks, those embedded and decided.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import cv2

from watchkeeper.config import Settings, StreamingConfig
from watchkeeper.models.registry import ModelRegistry
from watchkeeper.pipeline import (
    AnalysedFrame,
    CameraPipeline,
    FaceAnalyser,
    FaceModels,
    MatchEvent,
    shots_of,
    split_decidable,
)
from watchkeeper.streaming.queues import FrameQueue
from watchkeeper.streaming.timing import StageTimings
from watchkeeper.tracking.tracker import Track
from watchkeeper.video.sources import Frame, FrameSource
from watchkeeper.vision.alignment import ChipLayout
from watchkeeper.vision.detection import FaceDetector, create_detector
from watchkeeper.vision.embedding import Embeddings, FaceEmbedder

log = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 5.0
"""How long stopping waits for a decoding thread blocked on its source."""


@dataclass(frozen=True)
class Captured:
    """A decoded frame and when its decoder delivered it (``time.monotonic()``)."""

    frame: Frame
    arrived: float


@dataclass(frozen=True)
class CameraEvent:
    camera: str
    event: MatchEvent


@dataclass
class _Decision:
    """Ended tracks of one camera waiting to be embedded and decided."""

    camera: Camera
    tracks: list[Track]
    arrivals: list[float]
    """When the frames that ended these tracks arrived (for latency)."""
    image: str | None = None
    last: bool = False
    """The camera's final decision: its source has ended."""
    chips: int = field(init=False)
    """Shots to embed (the tracks have left the tracker, so this no longer changes)."""

    def __post_init__(self) -> None:
        self.chips = len(shots_of(self.tracks))


@dataclass
class Camera:
    """One source inside the engine: its queue, its pipeline and its threads' state."""

    name: str
    source: FrameSource
    pipeline: CameraPipeline
    queue: FrameQueue[Captured]
    error: Exception | None = None
    """Why the source ended early (damaged file, stream lost), if it did."""
    finished: bool = False
    """Every frame analysed and every track decided."""
    first_frame: float | None = None
    """When the source delivered its first frame (``time.monotonic()``): rates are
    measured from there, not from connection set-up."""
    ended: float | None = None
    last_decision_delay: float | None = None
    """Seconds from the arrival of the frame that ended the camera's last decided tracks
    to their decision (waiting, detection, tracking, embedding and search)."""
    # Reorder state: frames are numbered when a worker takes them and tracked in that order.
    _taken: int = 0
    _tracked: int = 0
    _in_flight: int = 0
    _closing: bool = False
    _ready: dict[int, tuple[Captured, AnalysedFrame]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def analysed_fps(self) -> float:
        """Frames analysed per second since the first one arrived."""
        if self.first_frame is None:
            return 0.0
        seconds = (self.ended or time.monotonic()) - self.first_frame
        return self.pipeline.stats.frames / seconds if seconds > 0 else 0.0


class RecognitionEngine:
    """Runs any number of cameras through detection, tracking and decisions.

    Use::

        engine = RecognitionEngine(make_analyser, embedder, config)
        engine.add_camera("door", source, pipeline)
        engine.start()
        for item in engine.events():     # None now and then, for progress displays
            ...
        # engine.stop() (e.g. on Ctrl-C) stops decoding; events() then drains
        # what was already decoded and decides every open track.
    """

    def __init__(
        self,
        make_analyser: Callable[[], FaceAnalyser],
        embedder: FaceEmbedder,
        config: StreamingConfig,
        timings: StageTimings | None = None,
    ) -> None:
        self.make_analyser = make_analyser
        self.embedder = embedder
        self.config = config
        self.timings = timings or StageTimings()
        self.cameras: list[Camera] = []
        self.workers = config.workers or os.cpu_count() or 1
        self._condition = threading.Condition()
        self._cursor = 0
        self._stopping = threading.Event()
        self._decisions: deque[_Decision] = deque()
        self._decisions_ready = threading.Condition()
        self.waiting_chips = 0
        """Face chips waiting to be embedded now (at most ``config.decision_backlog``
        plus one decision's)."""
        self.peak_waiting_chips = 0
        """The most chips that waited at once (for benchmarks and tests)."""
        self._events: deque[CameraEvent | None] = deque()
        self._events_ready = threading.Condition()
        self._failure: BaseException | None = None
        self._threads: list[threading.Thread] = []
        self._feeds: list[threading.Thread] = []
        self._done = False

    @classmethod
    def with_models(
        cls, settings: Settings, models: FaceModels, timings: StageTimings | None = None
    ) -> RecognitionEngine:
        """An engine for ``settings.streaming`` whose workers detect with ``models``'
        detector (or a new one of its kind each) and which embeds with its embedder."""
        return cls(
            analyser_factory(models.detector, settings, models.registry, models.embedder.layout),
            models.embedder,
            settings.streaming,
            timings,
        )

    def add_camera(self, name: str, source: FrameSource, pipeline: CameraPipeline) -> Camera:
        if pipeline.model_id != self.embedder.model_id:
            raise ValueError("camera pipeline and embedder use different models")
        camera = Camera(
            name,
            source,
            pipeline,
            FrameQueue(self.config.queue_frames, source.live, self._condition),
        )
        self.cameras.append(camera)
        return camera

    # -- running -------------------------------------------------------------

    def start(self) -> None:
        """Start decoding every camera and the analysis and decision threads."""
        if not self.cameras:
            raise ValueError("no cameras to run")
        cores = os.cpu_count() or 1
        if self.workers > 1:
            # The workers already analyse frames in parallel; OpenCV's own thread pool
            # inside each of them (detection, alignment, quality) would put cores x
            # workers threads on the cores. On 16 cores that made the quality gate 15
            # times slower. (A process-wide setting: the engine owns the process's cores.)
            cv2.setNumThreads(1)
        for camera in self.cameras:
            camera.source.limit_decoder_threads(max(1, cores // len(self.cameras)))
        for camera in self.cameras:
            thread = threading.Thread(
                target=self._guard, args=(self._feed, camera), name=f"feed-{camera.name}"
            )
            thread.daemon = True  # a source stuck in a network read must not block exit
            self._feeds.append(thread)
        for index in range(self.workers):
            self._threads.append(
                threading.Thread(target=self._guard, args=(self._work,), name=f"analysis-{index}")
            )
        self._threads.append(
            threading.Thread(target=self._guard, args=(self._decide,), name="decider")
        )
        for thread in [*self._feeds, *self._threads]:
            thread.start()
        log.info(
            "streaming %d camera(s): %d analysis worker(s), embedding batches of up to %d",
            len(self.cameras),
            self.workers,
            self.config.max_batch,
        )

    def stop(self) -> None:
        """Stop decoding; frames already decoded are analysed and open tracks decided."""
        self._stopping.set()
        for camera in self.cameras:
            camera.queue.close()

    def events(self, poll_s: float = 0.25) -> Iterator[CameraEvent | None]:
        """Match events as they are decided, and ``None`` every ``poll_s`` seconds
        without one; ends when every camera has finished. Re-raises the first
        unexpected error of any engine thread."""
        while not self._done:
            with self._events_ready:
                if not self._events:
                    self._events_ready.wait(poll_s)
                item = self._events.popleft() if self._events else None
                finished = item is None and self._failure_or_end()
            if item is not None:
                yield item
            elif finished:
                self._done = True
            else:
                yield None
        self._join()
        if self._failure is not None:
            raise self._failure

    def run(self) -> list[CameraEvent]:
        """Start, wait for every source to end, and return all events (for files)."""
        self.start()
        return [item for item in self.events() if item is not None]

    def _failure_or_end(self) -> bool:
        return self._failure is not None or all(camera.finished for camera in self.cameras)

    def _join(self) -> None:
        self.stop()
        for thread in self._threads:
            thread.join()
        for thread in self._feeds:
            thread.join(JOIN_TIMEOUT_S)

    def _guard(self, target: Callable[..., None], *args: object) -> None:
        """Run a thread's body; an unexpected error stops the engine and is re-raised
        by :meth:`events`."""
        try:
            target(*args)
        except BaseException as exc:
            log.exception("%s failed", threading.current_thread().name)
            with self._events_ready:
                if self._failure is None:
                    self._failure = exc
                self._events_ready.notify_all()
            self.stop()
            with self._decisions_ready:
                self._decisions_ready.notify_all()
            with self._condition:
                self._condition.notify_all()

    # -- decoding ------------------------------------------------------------

    def _feed(self, camera: Camera) -> None:
        frames = camera.source.frames()
        try:
            while not self._stopping.is_set():
                waited = time.perf_counter()
                frame = next(frames, None)
                if frame is None:
                    break
                self.timings.add("decode", time.perf_counter() - waited)
                arrived = time.monotonic()
                if camera.first_frame is None:
                    camera.first_frame = arrived
                if not camera.queue.put(Captured(frame, arrived)):
                    break
        except Exception as exc:  # the source's own errors end this camera only
            camera.error = exc
            log.warning("camera %s: %s", camera.name, exc)
        finally:
            frames.close()
            camera.source.close()
            camera.queue.close()

    # -- analysis ------------------------------------------------------------

    def _work(self) -> None:
        analyser = self.make_analyser()
        while True:
            job = self._next_job()
            if job is None:
                return
            camera, number, captured = job
            if captured is None:
                self._finish_camera(camera)
                continue
            analysed = analyser.analyse(captured.frame)
            self.timings.add("detect", analysed.detect_s)
            if analysed.faces:
                self.timings.add("quality", analysed.quality_s / len(analysed.faces))
            self._track_in_order(camera, number, captured, analysed)

    def _next_job(self) -> tuple[Camera, int, Captured | None] | None:
        """The next frame to analyse, taking cameras in turn; a ``None`` frame means
        "this camera's source has ended: decide its open tracks". None when every
        camera is done with analysis."""
        with self._condition:
            while True:
                if self._failure is not None:
                    return None
                count = len(self.cameras)
                for step in range(count):
                    camera = self.cameras[(self._cursor + step) % count]
                    captured = camera.queue.take_locked()
                    if captured is not None:
                        self._cursor = (self._cursor + step + 1) % count
                        number = camera._taken
                        camera._taken += 1
                        camera._in_flight += 1
                        return camera, number, captured
                    if (
                        camera.queue.exhausted_locked()
                        and camera._in_flight == 0
                        and not camera._closing
                    ):
                        camera._closing = True
                        return camera, -1, None
                if all(camera._closing for camera in self.cameras):
                    return None
                self._condition.wait()

    def _track_in_order(
        self, camera: Camera, number: int, captured: Captured, analysed: AnalysedFrame
    ) -> None:
        continuous = camera.source.continuous
        with camera._lock:
            camera._ready[number] = (captured, analysed)
            while camera._tracked in camera._ready:
                captured, analysed = camera._ready.pop(camera._tracked)
                camera._tracked += 1
                started = time.perf_counter()
                ended = camera.pipeline.track(analysed, continuous)
                self.timings.add("track", time.perf_counter() - started)
                analysed.faces.clear()
                if ended:
                    image = None if continuous else captured.frame.name
                    self._submit(_Decision(camera, ended, [captured.arrived], image))
                else:
                    self.timings.add("frame_to_decision", time.monotonic() - captured.arrived)
        with self._condition:
            camera._in_flight -= 1
            self._condition.notify_all()

    def _finish_camera(self, camera: Camera) -> None:
        with camera._lock:
            camera.pipeline.stats.dropped_frames = camera.queue.dropped
            ended = camera.pipeline.finish()
        self._submit(_Decision(camera, ended, [], last=True))

    # -- decisions -----------------------------------------------------------

    def _submit(self, decision: _Decision) -> None:
        """Queue ``decision`` for embedding. Until its chips fit in
        ``config.decision_backlog`` (or nothing else waits), the analysis worker that
        ended these tracks waits here, and with it the camera's frames (a live camera
        drops its oldest meanwhile): a machine that cannot keep up holds a bounded
        backlog instead of a growing one."""
        with self._decisions_ready:
            while (
                self._failure is None
                and self.waiting_chips > 0
                and self.waiting_chips + decision.chips > self.config.decision_backlog
            ):
                self._decisions_ready.wait(0.5)
            self._decisions.append(decision)
            self.waiting_chips += decision.chips
            self.peak_waiting_chips = max(self.peak_waiting_chips, self.waiting_chips)
            self._decisions_ready.notify_all()

    def decision_delay(self, camera: Camera) -> float | None:
        """How late ``camera``'s decisions (and so its alerts) come, in seconds after the
        frame that ended the tracks: the last decision's delay, or the age of its oldest
        decision still waiting if that is more (a backlog shows before it is decided).
        None before its first decision."""
        with self._decisions_ready:
            oldest = min(
                (a for d in self._decisions if d.camera is camera for a in d.arrivals),
                default=None,
            )
        delay = camera.last_decision_delay
        if oldest is not None:
            waited = time.monotonic() - oldest
            delay = waited if delay is None else max(delay, waited)
        return delay

    def _take_decisions(self) -> list[_Decision] | None:
        """Waiting decisions, oldest first, up to one embedding batch of chips (at
        least one decision); None when every camera has been decided."""
        with self._decisions_ready:
            while not self._decisions:
                if self._failure is not None or all(c.finished for c in self.cameras):
                    return None
                self._decisions_ready.wait(0.5)
            taken = [self._decisions.popleft()]
            chips = taken[0].chips
            while self._decisions and chips + self._decisions[0].chips <= self.config.max_batch:
                chips += self._decisions[0].chips
                taken.append(self._decisions.popleft())
            self.waiting_chips -= chips
            self._decisions_ready.notify_all()  # analysis waiting on the backlog goes on
            return taken

    def _decide(self) -> None:
        while True:
            batch = self._take_decisions()
            if batch is None:
                return
            plans = [split_decidable(decision.tracks) for decision in batch]
            parts = [shots_of(chosen) for chosen, _ in plans]
            chips = [chip for part in parts for chip in part]
            started = time.perf_counter()
            embeddings = self.embedder.embed(chips)
            if chips:
                elapsed = time.perf_counter() - started
                self.timings.add("embed_batch", elapsed)
                self.timings.add("embed", elapsed / len(chips))
            offset = 0
            for decision, (chosen, skipped), part in zip(batch, plans, parts, strict=True):
                vectors = Embeddings(
                    embeddings.model_id, embeddings.vectors[offset : offset + len(part)]
                )
                offset += len(part)
                started = time.perf_counter()
                pipeline = decision.camera.pipeline
                events = pipeline.decide(chosen, vectors, decision.image)
                pipeline.discard(skipped)
                if chosen:
                    self.timings.add("match", (time.perf_counter() - started) / len(chosen))
                now = time.monotonic()
                for arrived in decision.arrivals:
                    self.timings.add("frame_to_decision", now - arrived)
                    decision.camera.last_decision_delay = now - arrived
                self._publish([CameraEvent(decision.camera.name, event) for event in events])
                if decision.last:
                    decision.camera.ended = now
                    decision.camera.finished = True
            embeddings.vectors.fill(0)
            self._publish([])

    def _publish(self, events: list[CameraEvent]) -> None:
        with self._events_ready:
            self._events.extend(events)
            self._events_ready.notify_all()


def analyser_factory(
    detector: FaceDetector, settings: Settings, registry: ModelRegistry, layout: ChipLayout
) -> Callable[[], FaceAnalyser]:
    """Makes one :class:`FaceAnalyser` per worker: the first gets ``detector``, the others
    a new detector of the same kind (detectors keep per-call state)."""
    resolved = settings.detection.model_copy(update={"backend": detector.name})
    spare = [detector]

    def make() -> FaceAnalyser:
        own = spare.pop() if spare else create_detector(resolved, registry)
        return FaceAnalyser(own, layout, settings.quality)

    return make
