"""Runs every enabled camera in a worker process of its own, and keeps them running.

One thread per camera starts its worker (:mod:`watchkeeper.service.camera_worker`),
reads what it sends, stores each match as a pending alert (in this process: one
writer for the database) and hands it to ``on_alert`` (the live alert page).
A worker that crashes, fails to open its source, or stalls (nothing new for
``streaming.stall_seconds``) is restarted after 1, 2, 4, ... seconds, at most
``streaming.restart_max_seconds``, and shown as failed meanwhile; the other
cameras carry on. :meth:`Supervisor.stop` stops every camera at once: each
worker decides its open tracks and every match it sends is stored before it
ends, so stopping loses no alert.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from sqlalchemy import select

from watchkeeper.config import Settings
from watchkeeper.governance import access, audit
from watchkeeper.governance.live import StoredAlert, record_match
from watchkeeper.service.camera_worker import EXIT_STOPPED, run_camera
from watchkeeper.store.database import Store
from watchkeeper.store.models import Camera, Site

log = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 60.0
"""How long a stopping worker may take to decide its open tracks."""


class CameraState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    FAILED = "failed"
    FINISHED = "finished"
    """A file source played to its end."""
    STOPPED = "stopped"


@dataclass(frozen=True)
class CameraHealth:
    """What the cameras page shows for one camera."""

    camera_id: uuid.UUID
    name: str
    state: CameraState
    frames: int = 0
    """Frames analysed by the current worker."""
    fps: float = 0.0
    dropped: int = 0
    last_frame_at: float | None = None
    """``time.time()`` when the frame count last went up."""
    error: str | None = None
    restarts: int = 0
    alerts: int = 0


AlertHandler = Callable[[CameraHealth, StoredAlert], None]


class Supervisor:
    """Every enabled camera of the store's organisation, each in its own process."""

    def __init__(self, settings: Settings, store: Store, on_alert: AlertHandler | None = None):
        self.settings = settings
        self.store = store
        self.on_alert = on_alert
        self._context = multiprocessing.get_context("spawn")
        self._runners: list[_CameraRunner] = []
        self._running = False
        self._retired: list[_CameraRunner] = []
        self._background_stop: threading.Thread | None = None
        """The cameras of the last stop, whose states the cameras page still shows."""
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        """Recognition is on (even where no camera is enabled)."""
        return self._running

    def start(self, actor: str | None = None) -> None:
        """Start a worker for every enabled camera (logged when a user asks)."""
        with self._lock:
            if self._running:
                return
            with self.store.session() as session:
                organisation = access.organisation(session)
                cameras = session.scalars(
                    select(Camera)
                    .join(Site)
                    .where(Site.organisation_id == organisation.id, Camera.enabled.is_(True))
                    .order_by(Site.name, Camera.name)
                ).all()
                found = [(c.id, f"{c.site.name}/{c.name}") for c in cameras]
                if actor is not None:
                    audit.record(
                        session, self.store.keys, organisation.id, actor, "recognition.start",
                        cameras=len(found),
                    )  # fmt: skip
            self._runners = [_CameraRunner(self, camera_id, name) for camera_id, name in found]
            self._running = True
            for runner in self._runners:
                runner.start()
        log.info("recognition started on %d camera(s)", len(found))

    def stop(self, actor: str | None = None) -> list[CameraHealth]:
        """Stop every camera at once; returns, with each camera's final state, when
        each has stored its last alerts."""
        runners = self._retire()
        self._finish_stop(runners, actor)
        if self._background_stop is not None:  # a stop asked from the web, still draining
            self._background_stop.join()
        return [runner.health for runner in runners or self._retired]

    def request_start(self, actor: str) -> None:
        """:meth:`start` in the background (a web request must not wait for it)."""
        threading.Thread(target=self.start, args=(actor,), name="recognition-start").start()

    def request_stop(self, actor: str) -> None:
        """Tell every camera to stop now; they store their last alerts, and the stop is
        logged, in the background."""
        runners = self._retire()
        self._background_stop = threading.Thread(
            target=self._finish_stop, args=(runners, actor), name="recognition-stop"
        )
        self._background_stop.start()

    def _retire(self) -> list[_CameraRunner] | None:
        """Signal every worker to stop; the runners to wait for (None: not running)."""
        with self._lock:
            if not self._running:
                return None
            runners, self._runners, self._running = self._runners, [], False
            self._retired = runners
            for runner in runners:
                runner.stopping.set()
                runner.stop_worker.set()
            return runners

    def _finish_stop(self, runners: list[_CameraRunner] | None, actor: str | None) -> None:
        if runners is None:
            return
        for runner in runners:
            runner.join()
        if actor is not None:
            with self.store.session() as session:
                organisation = access.organisation(session)
                audit.record(
                    session, self.store.keys, organisation.id, actor, "recognition.stop",
                    cameras=len(runners),
                )  # fmt: skip
        log.info("recognition stopped")

    def health(self) -> list[CameraHealth]:
        """Each camera's state now; when stopped, as it was when stopped."""
        with self._lock:
            runners = self._runners if self._running else self._retired
            return [runner.health for runner in runners]


class _CameraRunner(threading.Thread):
    """Keeps one camera's worker process running, and stores what it finds."""

    def __init__(self, supervisor: Supervisor, camera_id: uuid.UUID, name: str) -> None:
        super().__init__(name=f"camera-{name}", daemon=True)
        self.supervisor = supervisor
        self.camera_id = camera_id
        self.health = CameraHealth(camera_id, name, CameraState.STARTING)
        self.stopping = threading.Event()
        self.stop_worker = supervisor._context.Event()
        self.model_id = ""

    def run(self) -> None:
        streaming = self.supervisor.settings.streaming
        delay = 1.0
        while not self.stopping.is_set():
            exit_code, ran = self._run_worker()
            if self.stopping.is_set():
                self._update(state=CameraState.STOPPED, fps=0.0)
                return
            if exit_code == EXIT_STOPPED:
                self._update(state=CameraState.FINISHED, fps=0.0)
                return
            delay = 1.0 if ran else min(delay * 2, streaming.restart_max_seconds)
            self._update(state=CameraState.FAILED, fps=0.0, restarts=self.health.restarts + 1)
            log.warning("camera %s failed: %s", self.health.name, self.health.error)
            if self.stopping.wait(delay):
                self._update(state=CameraState.STOPPED)
                return

    def _run_worker(self) -> tuple[int | None, bool]:
        """Run one worker to its end; its exit code, and whether it streamed for a while
        (then the next restart comes after a second again)."""
        settings = self.supervisor.settings
        messages: multiprocessing.Queue[tuple[Any, ...]] = self.supervisor._context.Queue()
        self.stop_worker.clear()
        worker = self.supervisor._context.Process(
            target=run_camera,
            args=(settings, self.camera_id, messages, self.stop_worker),
            name=f"watchkeeper-camera-{self.health.name}",
            daemon=True,
        )
        self._update(state=CameraState.STARTING, frames=0, fps=0.0)
        worker.start()
        started = last_progress = time.monotonic()
        stopping_since: float | None = None
        while True:
            try:
                message = messages.get(timeout=0.25)
            except queue.Empty:
                message = None
            if message is not None:
                if self._handle(message):
                    last_progress = time.monotonic()
                continue
            if not worker.is_alive():
                break
            now = time.monotonic()
            if self.stopping.is_set():
                stopping_since = stopping_since or now
                if now - stopping_since > DRAIN_TIMEOUT_S:
                    worker.kill()
            elif now - last_progress > settings.streaming.stall_seconds:
                self._update(error=f"stalled: nothing for {settings.streaming.stall_seconds:g} s")
                worker.kill()
        worker.join()
        ran = time.monotonic() - started > settings.streaming.stall_seconds
        return worker.exitcode, ran

    def _handle(self, message: tuple[Any, ...]) -> bool:
        """Act on one message; whether it shows progress (a frame, a start, a match)."""
        kind = message[0]
        if kind == "running":
            self.model_id = message[1]
            self._update(state=CameraState.RUNNING, error=None)
            return True
        if kind == "health":
            _, frames, fps, dropped = message
            progressed = frames > self.health.frames
            self._update(
                frames=frames,
                fps=round(fps, 2),
                dropped=dropped,
                last_frame_at=time.time() if progressed else self.health.last_frame_at,
            )
            return progressed
        if kind == "match":
            _, event, threshold = message
            stored = record_match(
                self.supervisor.store, self.camera_id, self.model_id, event, threshold
            )
            if stored is not None:
                self._update(alerts=self.health.alerts + 1)
                if self.supervisor.on_alert is not None:
                    self.supervisor.on_alert(self.health, stored)
            return True
        if kind == "error":
            self._update(error=message[1])
        return False

    def _update(self, **changes: Any) -> None:
        self.health = replace(self.health, **changes)
