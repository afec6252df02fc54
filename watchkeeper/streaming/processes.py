"""Cameras shared among worker processes, for machines with many cores.

The threads of one :class:`~watchkeeper.streaming.engine.RecognitionEngine`
stop scaling at about 8 busy cores: decoding, detection and embedding release
the GIL, but tracking, the quality gate and the glue between stages hold it.
:class:`ProcessEngine` splits the cameras among worker processes instead. Each
worker runs a whole engine (decoding, analysis, its own detector and embedder,
decisions against its copy of the watchlist) over its share, with its share of
the cores. Only :class:`~watchkeeper.pipeline.MatchEvent` objects come back
while it runs, and each camera's counts and timings when it ends: a face that
matches nobody never leaves the worker that saw it.

Workers are started with ``spawn`` (a fresh interpreter each): forking a
process that runs threads, or holds a GPU context, is unsafe.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import resource
import signal
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event as SyncEvent
from typing import Any

from watchkeeper.config import Settings
from watchkeeper.errors import WatchkeeperError
from watchkeeper.pipeline import CameraPipeline, FaceModels, PipelineStats
from watchkeeper.streaming.engine import CameraEvent, RecognitionEngine
from watchkeeper.streaming.timing import StageTimings
from watchkeeper.video.sources import open_source

log = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0
"""How long a worker may take to load its models and open its sources."""


class WorkerError(WatchkeeperError):
    """A worker process failed; its cameras stopped."""


@dataclass(frozen=True)
class CameraJob:
    """One camera for a worker: its name, its source as the user gave it (a file, URL
    or webcam, opened in the worker) and its pipeline (tracker and watchlist)."""

    name: str
    source: str
    pipeline: CameraPipeline


@dataclass
class CameraReport:
    """What a camera did, reported by its worker when the camera ended."""

    name: str
    stats: PipelineStats = field(default_factory=PipelineStats)
    decoded: int = 0
    dropped: int = 0
    analysed_fps: float = 0.0
    first_frame: float | None = None
    """``time.monotonic()`` of its first frame (one clock for every process)."""
    ended: float | None = None
    error: str | None = None


@dataclass
class WorkerUsage:
    """CPU seconds a worker used while streaming, and its peak memory."""

    cpu_s: float = 0.0
    peak_rss_mib: float = 0.0


def worker_settings(settings: Settings, processes: int) -> Settings:
    """The settings of one of ``processes`` worker processes that share this machine:
    its share of the cores for analysis threads and CPU inference (unless the settings
    fix them). The service's camera workers and :class:`ProcessEngine`'s use it alike."""
    cores = max(1, (os.cpu_count() or 1) // max(1, processes))
    streaming = settings.streaming.model_copy(
        update={"workers": settings.streaming.workers or cores, "processes": 1}
    )
    inference = settings.inference.model_copy(
        update={"threads": settings.inference.threads or cores}
    )
    return settings.model_copy(update={"streaming": streaming, "inference": inference})


class ProcessEngine:
    """Runs cameras in ``settings.streaming.processes`` worker processes (0: one per
    camera, as the service runs them).

    Use like :class:`RecognitionEngine`, with sources given as text::

        engine = ProcessEngine(settings)
        engine.add_camera("door", "rtsp://...", pipeline)
        engine.start()                 # returns once every worker is streaming
        for item in engine.events():   # None now and then
            ...
        engine.reports, engine.timings, engine.usage   # once events() has ended
    """

    def __init__(self, settings: Settings, processes: int | None = None) -> None:
        self.settings = settings
        self.processes = processes or settings.streaming.processes
        self.jobs: list[CameraJob] = []
        self.reports: list[CameraReport] = []
        self.timings = StageTimings()
        self.usage: list[WorkerUsage] = []
        context = multiprocessing.get_context("spawn")
        self._results: multiprocessing.Queue[tuple[Any, ...]] = context.Queue()
        self._stop = context.Event()
        self._go = context.Event()
        self._context = context
        self._workers: list[multiprocessing.process.BaseProcess] = []
        self.workers = 0
        """Analysis threads in each worker process (known once started)."""
        self._pending: list[CameraEvent] = []
        self._done = 0

    def add_camera(self, name: str, source: str, pipeline: CameraPipeline) -> None:
        self.jobs.append(CameraJob(name, source, pipeline))

    def start(self) -> None:
        """Start the workers and wait until every one of them is streaming."""
        if not self.jobs:
            raise ValueError("no cameras to run")
        count = min(self.processes or len(self.jobs), len(self.jobs))
        self.processes = count  # as run (0 asked for one per camera)
        shares = [self.jobs[index::count] for index in range(count)]
        settings = worker_settings(self.settings, count)
        self.workers = settings.streaming.workers
        for number, jobs in enumerate(shares):
            worker = self._context.Process(
                target=_run_worker,
                args=(settings, jobs, self._results, self._go, self._stop),
                name=f"watchkeeper-worker-{number}",
                daemon=True,
            )
            worker.start()
            self._workers.append(worker)
        try:
            self._wait_until_ready(count)
        except BaseException:
            self._end_workers()
            raise
        self._go.set()  # every worker starts streaming at once
        log.info("streaming %d camera(s) in %d worker process(es)", len(self.jobs), count)

    def _wait_until_ready(self, count: int) -> None:
        ready = 0
        deadline = time.monotonic() + START_TIMEOUT_S
        while ready < count:
            message = self._receive(min(1.0, max(0.0, deadline - time.monotonic())))
            if message is not None and message[0] == "ready":
                ready += 1
            elif message is not None:
                self._handle(message)
            elif time.monotonic() >= deadline:
                raise WorkerError(f"workers did not start within {START_TIMEOUT_S:.0f} s")
            else:
                self._check_alive()

    def _end_workers(self) -> None:
        self.stop()
        for worker in self._workers:
            worker.join(10)
            if worker.is_alive():
                worker.kill()

    def stop(self) -> None:
        """Stop decoding everywhere; workers decide their open tracks, then end."""
        self._stop.set()

    def events(self, poll_s: float = 0.25) -> Iterator[CameraEvent | None]:
        """Match events from every worker as they come, ``None`` every ``poll_s``
        seconds without one; ends when every worker has ended. A worker that fails
        or dies stops the others, and raises :class:`WorkerError` here."""
        try:
            while self._done < len(self._workers):
                while self._pending:
                    yield self._pending.pop(0)
                message = self._receive(poll_s)
                if message is None:
                    self._check_alive()
                    yield None
                else:
                    self._handle(message)
            yield from self._pending
            self._pending.clear()
        finally:
            self._end_workers()

    def _receive(self, timeout: float) -> tuple[Any, ...] | None:
        try:
            return self._results.get(timeout=timeout)
        except queue.Empty:
            return None

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "event":
            self._pending.append(message[1])
        elif kind == "done":
            _, reports, exported, usage = message
            self.reports.extend(reports)
            self.timings.absorb(exported)
            self.usage.append(usage)
            self._done += 1
        elif kind == "failed":
            self.stop()
            raise WorkerError(f"a worker process failed:\n{message[1]}")

    def _check_alive(self) -> None:
        """A worker that died without a word (killed, out of memory) is an error."""
        for worker in self._workers:
            if worker.exitcode not in (None, 0):
                self.stop()
                raise WorkerError(f"{worker.name} died with exit code {worker.exitcode}")


def _run_worker(*args: Any) -> None:
    """A worker process: :func:`_stream`, with its failure reported to the parent.
    Ctrl-C reaches the whole process group; the parent decides, so workers ignore it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _stream(*args)
    except BaseException:
        results = args[2]  # _stream's third parameter
        results.put(("failed", traceback.format_exc()))
        raise SystemExit(1) from None


def _stream(
    settings: Settings,
    jobs: list[CameraJob],
    results: multiprocessing.Queue[tuple[Any, ...]],
    go: SyncEvent,
    stop: SyncEvent,
) -> None:
    """One engine over ``jobs``: ready once its models are loaded and sources opened,
    streaming once ``go`` is set, until its sources end or ``stop`` is set."""
    timings = StageTimings()
    engine = RecognitionEngine.with_models(settings, FaceModels.load(settings), timings)
    failed: list[CameraReport] = []
    for job in jobs:
        try:
            source = open_source(job.source, settings.video)
        except WatchkeeperError as exc:  # this camera only
            failed.append(CameraReport(job.name, error=str(exc)))
            continue
        engine.add_camera(job.name, source, job.pipeline)
    results.put(("ready",))
    while not go.wait(0.25):  # the others are still loading
        if stop.is_set():
            break
    started = _cpu_seconds()
    if engine.cameras and not stop.is_set():
        engine.start()
        for item in engine.events():
            if stop.is_set():
                engine.stop()
            if item is not None:
                results.put(("event", item))
    reports = [
        CameraReport(
            name=camera.name,
            stats=camera.pipeline.stats,
            decoded=camera.source.decoded,
            dropped=camera.queue.dropped,
            analysed_fps=camera.analysed_fps,
            first_frame=camera.first_frame,
            ended=camera.ended,
            error=str(camera.error) if camera.error else None,
        )
        for camera in engine.cameras
    ]
    usage = WorkerUsage(
        cpu_s=_cpu_seconds() - started,
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    results.put(("done", reports + failed, timings.export(), usage))


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
