"""Runs every enabled camera in a worker process of its own, and keeps them running.

One thread per camera starts its worker (:mod:`watchkeeper.service.camera_worker`),
reads what it sends, stores each match as a pending alert (in this process: one
writer for the database) and hands it to ``on_alert`` (the live alert page).
A worker that crashes, fails to open its source, or stalls (nothing new for
``streaming.stall_seconds``) is restarted after 1, 2, 4, ... seconds, at most
``streaming.restart_max_seconds``, and shown as failed meanwhile; the other
cameras carry on. :meth:`Supervisor.stop` stops every camera at once: each
worker decides its open tracks and every match it sends is stored before it
ends, so stopping loses no alert. While running, the supervisor follows the
cameras in the database and tells workers to reload their watchlist when asked
(:meth:`Supervisor.cameras_changed`, :meth:`Supervisor.watchlist_changed`). A
worker that finds, on a reload, that the organisation switched to another model
ends after storing its last alerts and is replaced at once by one that runs the
new model (not counted as a failure): the camera is down only while it loads.
"""

from __future__ import annotations

import collections
import logging
import multiprocessing
import queue
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from watchkeeper.config import Settings
from watchkeeper.governance import access, audit
from watchkeeper.governance.edges import edge_run_sites
from watchkeeper.governance.live import StoredAlert, record_match
from watchkeeper.pipeline import MatchEvent
from watchkeeper.service.camera_worker import EXIT_MODEL_CHANGED, EXIT_STOPPED, run_camera
from watchkeeper.store.database import Store, storage_failure
from watchkeeper.store.models import Camera, Site
from watchkeeper.streaming.processes import worker_settings

log = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 60.0
"""How long a stopping worker may take to decide its open tracks."""
STORE_RETRY_S = 1.0
STORE_RETRY_MAX_S = 30.0
"""An alert that cannot be stored is retried after 1, 2, 4, ... seconds, at most 30."""


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
    last_restart: str | None = None
    """When and why the camera last failed and was restarted; kept while it runs again
    (``error`` is cleared once it runs)."""
    alerts: int = 0
    unstored_alerts: int = 0
    """Matches decided but not stored yet (the database or disk refused them): kept in
    memory and retried, never dropped while the service runs."""
    store_error: str | None = None
    """Why the last attempt to store an alert failed, until one succeeds."""
    decision_delay_s: float | None = None
    """How late the camera's decisions (and so its alerts) come: seconds from the frame
    that ended a track to its decision. None before the first decision."""
    waiting_faces: int = 0
    """Face chips waiting to be embedded in the camera's worker (at most
    ``streaming.decision_backlog``)."""
    decisions_late: bool = False
    """``decision_delay_s`` is ``streaming.late_decision_seconds`` or more: the machine
    cannot keep up with its cameras."""


AlertHandler = Callable[[CameraHealth, StoredAlert], None]


def storage_problem(exc: Exception) -> str:
    """Why storing failed, in one line of words (a full disk is named as such), as the
    web app says it (``store.database.storage_failure``)."""
    failure = storage_failure(exc)
    if failure is not None:
        return str(failure)
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def exit_reason(exit_code: int | None) -> str:
    """Why a camera's worker process ended, in words, when it said nothing itself: a
    signal (killed by the system's out-of-memory killer or by hand: SIGKILL) or an exit
    code."""
    if exit_code is None:
        return "its worker process vanished"
    if exit_code < 0:
        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = f"signal {-exit_code}"
        return f"its worker process was killed ({name})"
    return f"its worker process ended with exit code {exit_code} without saying why"


class Supervisor:
    """Every enabled camera of the store's organisation, each in its own process.

    While recognition runs, :meth:`cameras_changed` makes the running cameras follow
    the database (added, enabled, disabled, removed, new source) and
    :meth:`watchlist_changed` makes every camera reload its watchlist at once; both
    are cheap, never block and may be called from any thread (the web routes call
    them after they commit). A change made while recognition is stopped takes
    effect when it next starts.
    """

    def __init__(self, settings: Settings, store: Store, on_alert: AlertHandler | None = None):
        self.settings = settings
        self.store = store
        self.on_alert = on_alert
        self._context = multiprocessing.get_context("spawn")
        self._runners: dict[uuid.UUID, _CameraRunner] = {}
        """The cameras running now, by camera id."""
        self._running = False
        self._retired: list[_CameraRunner] = []
        """The cameras of the last stop, whose states the cameras page still shows."""
        self._leaving: list[_CameraRunner] = []
        """Cameras disabled or removed while running, maybe still storing their last alerts."""
        self._background_stop: threading.Thread | None = None
        self._lock = threading.Lock()
        self._reconcile_lock = threading.Lock()
        self._reconcile_pending = False

    @property
    def camera_count(self) -> int:
        """Cameras running now (at least 1): each worker gets its share of the cores."""
        return max(1, len(self._runners))  # no lock: read while start() holds it

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
                wanted = self._wanted(session, organisation.id)
                if actor is not None:
                    audit.record(
                        session, self.store.keys, organisation.id, actor, "recognition.start",
                        cameras=len(wanted),
                    )  # fmt: skip
            self._runners = {
                camera_id: _CameraRunner(self, camera_id, name, source)
                for camera_id, (name, source) in wanted.items()
            }
            self._running = True
            for runner in self._runners.values():
                runner.start()
        log.info("recognition started on %d camera(s)", len(wanted))

    def cameras_changed(self) -> None:
        """Follow the database's cameras soon, in the background (see :meth:`reconcile`).
        Calls that come while one is waiting to run are answered by that one."""
        with self._lock:
            if not self._running or self._reconcile_pending:
                return
            self._reconcile_pending = True
        threading.Thread(target=self._reconcile_logged, name="cameras-changed").start()

    def reconcile(self) -> None:
        """Make the running cameras those enabled in the database now: start the new or
        newly enabled ones, stop the disabled or removed ones (they store their last
        alerts first, as :meth:`stop` does), and restart, after it has stored its last
        alerts, a camera whose source changed. The other cameras are not touched.
        Does nothing while recognition is stopped."""
        with self._reconcile_lock:
            with self._lock:
                self._reconcile_pending = False
                if not self._running:
                    return
            with self.store.session() as session:
                wanted = self._wanted(session, access.organisation(session).id)
            with self._lock:
                if not self._running:
                    return
                self._leaving = [runner for runner in self._leaving if runner.is_alive()]
                for camera_id, runner in list(self._runners.items()):
                    if camera_id not in wanted:
                        del self._runners[camera_id]
                        runner.retire()
                        self._leaving.append(runner)
                    elif wanted[camera_id] != (runner.health.name, runner.source):
                        if runner.is_alive():
                            runner.restart(*wanted[camera_id])
                        else:  # a file that played to its end: a fresh runner plays the new one
                            del self._runners[camera_id]
                for camera_id, (name, source) in wanted.items():
                    if camera_id not in self._runners:
                        runner = _CameraRunner(self, camera_id, name, source)
                        self._runners[camera_id] = runner
                        runner.start()
                log.info("cameras reconciled: %d running", len(self._runners))

    def _reconcile_logged(self) -> None:
        try:
            self.reconcile()
        except Exception:  # a background thread: nobody else would see it
            log.exception("could not follow the changed cameras")

    def watchlist_changed(self) -> None:
        """Tell every running camera to reload its watchlist now (each does within a
        quarter of a second; the periodic reload stays as the backstop)."""
        with self._lock:
            for runner in self._runners.values():
                runner.reload_watchlist.set()

    @staticmethod
    def _wanted(session: Session, organisation_id: uuid.UUID) -> dict[uuid.UUID, tuple[str, bytes]]:
        """The enabled cameras this process runs: id -> (site/name, encrypted source).
        A camera is restarted when either changes (its ciphertext changes only with its
        source). Cameras of a site whose edge is enrolled are the edge's to run."""
        cameras = session.scalars(
            select(Camera)
            .join(Site)
            .where(
                Site.organisation_id == organisation_id,
                Camera.enabled.is_(True),
                Camera.site_id.not_in(edge_run_sites(session, organisation_id)),
            )
            .order_by(Site.name, Camera.name)
        ).all()
        return {c.id: (f"{c.site.name}/{c.name}", c.source_encrypted) for c in cameras}

    def stop(self, actor: str | None = None) -> list[CameraHealth]:
        """Stop every camera at once; returns, with each camera's final state, when
        each has stored its last alerts."""
        retired = self._retire()
        self._finish_stop(retired, actor)
        if self._background_stop is not None:  # a stop asked from the web, still draining
            self._background_stop.join()
        runners = retired[0] if retired is not None else self._retired
        return [runner.health for runner in runners]

    def request_start(self, actor: str) -> None:
        """:meth:`start` in the background (a web request must not wait for it)."""
        threading.Thread(target=self.start, args=(actor,), name="recognition-start").start()

    def request_stop(self, actor: str) -> None:
        """Tell every camera to stop now; they store their last alerts, and the stop is
        logged, in the background."""
        retired = self._retire()
        self._background_stop = threading.Thread(
            target=self._finish_stop, args=(retired, actor), name="recognition-stop"
        )
        self._background_stop.start()

    def _retire(self) -> tuple[list[_CameraRunner], list[_CameraRunner]] | None:
        """Signal every worker to stop; the runners to wait for, and those already
        leaving (None: not running)."""
        with self._lock:
            if not self._running:
                return None
            runners, self._runners, self._running = list(self._runners.values()), {}, False
            leaving, self._leaving = self._leaving, []
            self._retired = runners
            for runner in runners:
                runner.retire()
            return runners, leaving

    def _finish_stop(
        self, retired: tuple[list[_CameraRunner], list[_CameraRunner]] | None, actor: str | None
    ) -> None:
        if retired is None:
            return
        runners, leaving = retired
        for runner in runners + leaving:
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
        """Each camera's state now, by name; when stopped, as it was when stopped."""
        with self._lock:
            runners = list(self._runners.values()) if self._running else self._retired
            return sorted((runner.health for runner in runners), key=lambda h: h.name)


class _CameraRunner(threading.Thread):
    """Keeps one camera's worker process running, and stores what it finds."""

    def __init__(
        self, supervisor: Supervisor, camera_id: uuid.UUID, name: str, source: bytes
    ) -> None:
        super().__init__(name=f"camera-{name}", daemon=True)
        self.supervisor = supervisor
        self.camera_id = camera_id
        self.source = source
        """The encrypted source the current worker was started for."""
        self.health = CameraHealth(camera_id, name, CameraState.STARTING)
        self.stopping = threading.Event()
        self._restart = threading.Event()
        self._wake = threading.Event()
        """Set by a stop or restart: cuts a wait before the next attempt short."""
        self.stop_worker = supervisor._context.Event()
        self.reload_watchlist = supervisor._context.Event()
        self.model_id = ""
        self._unstored: collections.deque[tuple[str, MatchEvent]] = collections.deque()
        """(model id, match) decided but not stored yet, oldest first."""
        self._store_failures = 0
        self._next_store_at = 0.0
        self._worker_error: str | None = None
        """What the current worker last reported as wrong (its error, or a stall)."""

    def retire(self) -> None:
        """Stop for good, once the worker has stored its last alerts."""
        self.stopping.set()
        self.stop_worker.set()
        self._wake.set()

    def restart(self, name: str, source: bytes) -> None:
        """Replace the worker by one that reads the camera's new settings, once the
        current one has stored its last alerts (not counted as a failure)."""
        self.source = source
        self._update(name=name)
        self._restart.set()
        self.stop_worker.set()
        self._wake.set()

    def run(self) -> None:
        """Supervise the camera until it stops. An unexpected error in this thread (a
        bug) is logged with its reason, shown in the camera's health, and the
        supervision starts again after a backoff: it never ends silently."""
        delay = 1.0
        while True:
            try:
                self._supervise()
                return
            except Exception as exc:
                reason = f"the camera's supervising thread failed ({type(exc).__name__}: {exc})"
                log.exception("camera %s: %s; restarting it", self.health.name, reason)
                self._failed(reason)
                if self._wake.wait(delay) and self.stopping.is_set():
                    self._update(state=CameraState.STOPPED)
                    return
                delay = min(delay * 2, self.supervisor.settings.streaming.restart_max_seconds)

    def _supervise(self) -> None:
        streaming = self.supervisor.settings.streaming
        delay = 1.0
        while not self.stopping.is_set():
            self._restart.clear()
            self._wake.clear()
            exit_code, ran = self._run_worker()
            if self.stopping.is_set():
                self._update(state=CameraState.STOPPED, fps=0.0)
                return
            if self._restart.is_set():
                delay = 1.0
                continue
            if exit_code == EXIT_MODEL_CHANGED:
                log.info("camera %s restarts with the model now in use", self.health.name)
                continue
            if exit_code == EXIT_STOPPED:
                self._update(state=CameraState.FINISHED, fps=0.0)
                return
            delay = 1.0 if ran else min(delay * 2, streaming.restart_max_seconds)
            self._failed(self._worker_error or exit_reason(exit_code))
            log.warning("camera %s failed: %s", self.health.name, self.health.error)
            if self._wake.wait(delay) and self.stopping.is_set():
                self._update(state=CameraState.STOPPED)
                return

    def _run_worker(self) -> tuple[int | None, bool]:
        """Run one worker to its end; its exit code, and whether it streamed for a while
        (then the next restart comes after a second again)."""
        # Its share of the cores, as `bench` measures it (streaming.processes = 0).
        settings = worker_settings(self.supervisor.settings, self.supervisor.camera_count)
        messages: multiprocessing.Queue[tuple[Any, ...]] = self.supervisor._context.Queue()
        self.stop_worker.clear()
        self.reload_watchlist.clear()  # the new worker loads the watchlist as it is now
        self._worker_error = None
        worker = self.supervisor._context.Process(
            target=run_camera,
            args=(settings, self.camera_id, messages, self.stop_worker, self.reload_watchlist),
            name=f"watchkeeper-camera-{self.health.name}",
            daemon=True,
        )
        self._update(
            state=CameraState.STARTING,
            frames=0,
            fps=0.0,
            decision_delay_s=None,
            waiting_faces=0,
            decisions_late=False,
        )
        worker.start()
        try:
            return self._follow(worker, messages)
        finally:
            if worker.is_alive():  # only after an error here: never two workers a camera
                worker.kill()
                worker.join()

    def _follow(
        self, worker: multiprocessing.process.BaseProcess, messages: multiprocessing.Queue
    ) -> tuple[int | None, bool]:
        """Read ``worker``'s messages until it ends; its exit code, and whether it
        streamed for a while."""
        settings = self.supervisor.settings
        started = last_progress = time.monotonic()
        stopping_since: float | None = None
        while True:
            try:
                message = messages.get(timeout=0.25)
            except queue.Empty:
                message = None
            self.store_alerts()
            if message is not None:
                if self._handle(message):
                    last_progress = time.monotonic()
                continue
            if not worker.is_alive():
                break
            now = time.monotonic()
            if self.stopping.is_set() or self._restart.is_set():
                self.stop_worker.set()  # again: it may have been asked before this worker began
                stopping_since = stopping_since or now
                if now - stopping_since > DRAIN_TIMEOUT_S:
                    worker.kill()
            elif now - last_progress > settings.streaming.stall_seconds:
                self._worker_error = f"stalled: nothing for {settings.streaming.stall_seconds:g} s"
                self._update(error=self._worker_error)
                worker.kill()
        worker.join()
        self.store_alerts(force=True)
        if self._unstored and self.stopping.is_set():
            log.error(
                "camera %s stops with %d decided alert(s) that could not be stored: %s",
                self.health.name,
                len(self._unstored),
                self.health.store_error,
            )
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
            _, frames, fps, dropped, delay, waiting = message
            progressed = frames > self.health.frames
            self._update(
                frames=frames,
                fps=round(fps, 2),
                dropped=dropped,
                decision_delay_s=None if delay is None else round(delay, 2),
                waiting_faces=waiting,
                decisions_late=delay is not None
                and delay >= self.supervisor.settings.streaming.late_decision_seconds,
                last_frame_at=time.time() if progressed else self.health.last_frame_at,
            )
            return progressed
        if kind == "match":
            self._unstored.append((self.model_id, message[1]))
            self.store_alerts()  # at once, unless storing is failing and backing off
            return True
        if kind == "model":
            log.info(
                "camera %s: the watchlist is now searched with %s", self.health.name, message[1]
            )
            return True
        if kind == "error":
            self._worker_error = message[1]
            self._update(error=message[1])
        return False

    def store_alerts(self, force: bool = False) -> None:
        """Store the decided matches not stored yet, oldest first, each as a pending alert
        with its notifications (one transaction each). A failure (a full disk, a database
        that refuses writes) keeps them in memory, says why in the camera's health and
        retries with backoff, while the camera goes on analysing."""
        if not self._unstored or (not force and time.monotonic() < self._next_store_at):
            return
        while self._unstored:
            model_id, event = self._unstored[0]
            try:
                stored = record_match(
                    self.supervisor.store, self.camera_id, model_id, event, self.supervisor.settings
                )
            except Exception as exc:  # whatever the store raises, the match is kept
                self._store_failed(exc)
                return
            self._unstored.popleft()
            if stored is not None:
                self._update(alerts=self.health.alerts + 1)
                self._push(stored)
        if self._store_failures:
            log.warning("camera %s: alerts are stored again", self.health.name)
        self._store_failures = 0
        self._update(unstored_alerts=0, store_error=None)

    def _push(self, stored: StoredAlert) -> None:
        """Hand a stored alert to ``on_alert`` (open pages, notifications). It is stored
        already: a failure here is logged and never stops the camera."""
        if self.supervisor.on_alert is None:
            return
        try:
            self.supervisor.on_alert(self.health, stored)
        except Exception:
            log.exception(
                "camera %s: alert %s stored, but not pushed", self.health.name, stored.alert_id
            )

    def _failed(self, reason: str) -> None:
        """Show the camera as failed, to be restarted, with when and why."""
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        self._update(
            state=CameraState.FAILED,
            fps=0.0,
            error=reason,
            restarts=self.health.restarts + 1,
            last_restart=f"{when}: {reason}",
        )

    def _store_failed(self, exc: Exception) -> None:
        self._store_failures += 1
        wait = min(STORE_RETRY_S * 2 ** (self._store_failures - 1), STORE_RETRY_MAX_S)
        self._next_store_at = time.monotonic() + wait
        reason = f"cannot store alerts: {storage_problem(exc)}"
        if reason != self.health.store_error:
            log.error("camera %s: %s; kept in memory and retried", self.health.name, reason)
        self._update(unstored_alerts=len(self._unstored), store_error=reason)

    def _update(self, **changes: Any) -> None:
        self.health = replace(self.health, **changes)
