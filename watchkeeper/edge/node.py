"""A store's edge box at work (`watchkeeper edge`): its site's cameras, matched against
its copy of the site's watchlist, with alerts kept until the core has them.

Three threads share the edge's local store (:mod:`watchkeeper.edge.state`):

    sync      asks the core for the watchlist changes since the revision it holds
              (a long poll: changes arrive as soon as they are made) and reports
              the edge's status; applies each answer in one transaction
    cameras   (the main thread) the streaming engine on the site's cameras, each
              pipeline searching the copy; a decision becomes an alert in the
              outbox, with its snapshot and its audit event, in one transaction
    delivery  sends the outbox to the core in order, each alert with the id it
              was given here (the core stores it once however often it arrives),
              then the audit events since the core's head

While the core cannot be reached the cameras go on matching with the copy, for
at most ``edge.max_staleness_s`` after the last successful sync; then matching
stops (fail closed: an entry erased or suspended meanwhile must not go on being
searched) and says so, until a sync brings the copy up to date. The copy is
brought up to date before matching resumes. A revoked edge stops at once.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import cv2
import numpy as np

from watchkeeper.config import Settings
from watchkeeper.edge.link import CoreLink, CoreUnreachable
from watchkeeper.edge.protocol import MAX_AUDIT_BATCH, vector_text
from watchkeeper.edge.state import EdgeState, Enrolment, new_alert_id, utcnow
from watchkeeper.errors import EdgeRefused, WatchkeeperError
from watchkeeper.matching.gallery import Gallery
from watchkeeper.pipeline import CameraPipeline, FaceModels, MatchEvent
from watchkeeper.streaming.engine import RecognitionEngine
from watchkeeper.video.sources import open_source

log = logging.getLogger(__name__)

HEALTH_INTERVAL_S = 1.0
RESTART_MAX_S = 30.0


@dataclass
class CameraStatus:
    name: str
    state: str = "starting"
    fps: float = 0.0
    frames: int = 0
    alerts: int = 0
    error: str | None = None
    restarts: int = 0
    decision_delay_s: float | None = None
    """How late its alerts come (``RecognitionEngine.decision_delay``)."""

    def public(self) -> dict[str, Any]:
        return dict(self.__dict__)


class EdgeNode:
    def __init__(self, settings: Settings, state: EdgeState, enrolment: Enrolment) -> None:
        self.settings = settings
        self.config = settings.edge
        self.state = state
        self.enrolment = enrolment
        self.stopping = threading.Event()
        self.link = CoreLink(
            enrolment.core_url, enrolment.credential, self.config.request_timeout_s,
            self.config.retry_max_s, self.stopping,
        )  # fmt: skip
        self.copy_changed = threading.Event()
        self.outbox_ready = threading.Event()
        self.synced = threading.Event()
        self._digest_due = True
        """Ask for every entry id the site searches (at the start, after an outage)."""
        self.matching = False
        self._matched_before = state.last_sync is not None
        """Whether this edge has had a copy before (matching "resumes" rather than starts)."""
        self.stopped_because: str | None = None
        """Why the edge stopped on its own (its credential was revoked)."""
        self.cameras: dict[str, CameraStatus] = {}
        self._threads: list[threading.Thread] = []

    # status

    def status(self) -> dict[str, Any]:
        staleness = self.state.staleness_s()
        return {
            "version": version("watchkeeper"),
            "staleness_s": None if staleness is None else round(staleness, 1),
            "max_staleness_s": self.config.max_staleness_s,
            "matching": self.matching,
            "outbox": self.state.outbox_size(),
            "cameras": [camera.public() for camera in self.cameras.values()],
        }

    def _refused(self, exc: EdgeRefused, what: str) -> bool:
        """The core refused ``what``: a revoked credential stops the edge (True: the
        loop ends); anything else is said and tried again after ``retry_max_s``."""
        if exc.status == 401:
            self.stopped_because = f"the core refused this edge: {exc}"
            log.error("%s; stopping", self.stopped_because)
            self.stopping.set()
            return True
        log.error("the core refused %s: %s", what, exc)
        self.stopping.wait(self.config.retry_max_s)
        return False

    # sync

    def sync_once(self, wait_s: float, digest: bool) -> bool:
        """One exchange with the core; whether the copy or the cameras changed."""
        before = (self.state.cameras(), self.state.model())
        answer = self.link.request(
            "POST", "/api/edge/sync",
            params={"since": self.state.revision, "wait": wait_s, "digest": digest},
            json=self.status(), timeout_s=wait_s + self.config.request_timeout_s,
        ).json()  # fmt: skip
        changed = self.state.apply(answer)
        if changed:  # a sync that changed nothing in the copy is not worth an event
            self.state.audit(
                "watchlist.sync", revision=answer["revision"], full=answer["full"],
                entries_changed=changed, entries_held=self.state.entries(),
            )  # fmt: skip
        moved = changed > 0 or before != (self.state.cameras(), self.state.model())
        if moved:
            self.copy_changed.set()
        self.synced.set()
        return moved

    def _lost(self, exc: CoreUnreachable) -> None:
        log.warning("lost the core: %s", exc)
        self.state.audit("link.lost", error=str(exc)[:200])
        self._digest_due = True  # after an outage the copy is checked whole

    def _sync_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                _, failures = self.link.persist(
                    lambda: self.sync_once(self.config.poll_wait_s, self._digest_due), self._lost
                )
            except CoreUnreachable:
                return  # the edge is stopping
            except EdgeRefused as exc:
                if self._refused(exc, "a sync"):
                    return
                continue
            self._digest_due = False
            if failures:
                log.warning("the core is back after %d failed attempts", failures)
                self.state.audit("link.restored", failed_attempts=failures)
                self.outbox_ready.set()

    # delivery

    def deliver(self, last: bool = False) -> None:
        """Send the outbox, oldest first, then the audit chain; CoreUnreachable if the
        core cannot take them now. ``last``: once more while stopping."""
        while last or not self.stopping.is_set():
            item = self.state.next_alert()
            if item is None:
                break
            sequence, alert = item
            try:
                response = self.link.request("POST", "/api/edge/alerts", json=alert)
            except EdgeRefused as exc:
                if exc.status == 401:
                    raise
                log.error("the core refused alert %s for good: %s", alert["id"], exc)
                self.state.alert_done(sequence, f"refused ({exc.status}): {exc}"[:200])
                continue
            if response.status_code == 410:
                self.state.alert_done(sequence, "not stored: its entry may no longer be searched")
            else:
                self.state.alert_done(sequence, "stored")
        while last or not self.stopping.is_set():
            events = self.state.undelivered_audit(MAX_AUDIT_BATCH)
            if not events:
                break
            self.link.request("POST", "/api/edge/audit", json={"events": events})
            self.state.audit_delivered(events[-1]["sequence"])

    def _delivery_loop(self) -> None:
        while not self.stopping.is_set():
            self.outbox_ready.wait(1.0)
            self.outbox_ready.clear()
            try:
                self.link.persist(self.deliver, lambda _exc: None)  # the sync loop tells
            except CoreUnreachable:
                return  # the edge is stopping
            except EdgeRefused as exc:
                if self._refused(exc, "this edge's audit events"):
                    return

    # matching

    def may_match(self) -> tuple[bool, str]:
        staleness = self.state.staleness_s()
        if staleness is None:
            return False, "no copy of the watchlist yet"
        if staleness > self.config.max_staleness_s:
            return False, (
                f"no contact with the core for {staleness:.0f} s (more than "
                f"edge.max_staleness_s = {self.config.max_staleness_s:.0f})"
            )
        return True, ""

    def _gallery(self, model_id: str) -> Gallery:
        allowed, _ = self.may_match()
        if not allowed:
            return Gallery(model_id, np.zeros((0, 0), np.float32), [])
        return self.state.gallery(model_id)

    def _check_matching(self, models: FaceModels, pipelines: list[CameraPipeline]) -> None:
        """Stop or resume matching as the copy's age says, and give every pipeline the
        copy anew when it changed."""
        allowed, reason = self.may_match()
        changed = self.copy_changed.is_set()
        if allowed != self.matching:
            self.matching = allowed
            if allowed:
                log.warning("matching %s: the copy of the watchlist is up to date",
                            "resumed" if self._matched_before else "started")  # fmt: skip
                self.state.audit("matching.resume" if self._matched_before else "matching.start")
                self._matched_before = True
            else:
                log.error("MATCHING STOPPED: %s", reason)
                self.state.audit("matching.stop", reason=reason)
            changed = True
        if changed:
            self.copy_changed.clear()
            matcher = models.matcher(self._gallery(models.embedder.model_id))
            for pipeline in pipelines:
                pipeline.matcher = matcher

    def _decided(self, camera_id: str, event: MatchEvent, model_id: str) -> None:
        """A decision at a camera: an alert in the outbox, if matching may go on and the
        entry is still in the copy (a decision made just before either changed is
        dropped: fail closed)."""
        if not self.matching or not self.state.holds(event.subject):
            log.info("a decision on an entry no longer searched here was dropped")
            return
        ok, jpeg = cv2.imencode(".jpg", event.shots[0], [cv2.IMWRITE_JPEG_QUALITY, 92])
        if not ok:
            raise WatchkeeperError("cannot encode an alert snapshot")
        self.state.raise_alert(
            {
                "id": new_alert_id(),
                "camera_id": camera_id,
                "subject_id": event.subject,
                "score": float(event.score),
                "threshold": float(event.threshold),
                "model_id": model_id,
                "occurred_at": utcnow().isoformat(),
                "probe": vector_text(event.probe),
                "snapshot": base64.b64encode(jpeg.tobytes()).decode("ascii"),
                "sighting": event.sighting(),
            }
        )
        self.outbox_ready.set()

    def _run_cameras(self, models: FaceModels) -> str:
        """The site's cameras until they must be restarted; why they stopped."""
        cameras = self.state.cameras()
        model_id = models.embedder.model_id
        engine = RecognitionEngine.with_models(self.settings, models)
        pipelines: list[CameraPipeline] = []
        feeds = {}
        ids = {}
        for camera in cameras:
            name = f"{self.enrolment.site}/{camera['name']}"
            status = self.cameras.setdefault(name, CameraStatus(name))
            pipeline = models.pipeline(self._gallery(model_id), self.settings.tracking)
            try:
                feeds[name] = engine.add_camera(
                    name, open_source(camera["source"], self.settings.video), pipeline
                )
            except WatchkeeperError as exc:
                status.state, status.error = "failed", str(exc)
                continue
            pipelines.append(pipeline)
            ids[name] = camera["id"]
        self.cameras = {
            n: s
            for n, s in self.cameras.items()
            if n in {f"{self.enrolment.site}/{c['name']}" for c in cameras}
        }
        if not feeds:
            return "no camera could be started" if cameras else "no camera"
        self.copy_changed.set()
        self._check_matching(models, pipelines)
        engine.start()
        for name in feeds:
            self.cameras[name].state, self.cameras[name].error = "running", None
            self.state.audit("camera.start", "camera", ids[name])
        reason = "stopped"
        reported = 0.0
        for item in engine.events(poll_s=0.25):
            if item is not None:
                self._decided(ids[item.camera], item.event, model_id)
                self.cameras[item.camera].alerts += 1
            self._check_matching(models, pipelines)
            if time.monotonic() - reported >= HEALTH_INTERVAL_S:
                reported = time.monotonic()
                for name, feed in feeds.items():
                    status = self.cameras[name]
                    status.fps, status.frames = (
                        round(feed.analysed_fps, 2),
                        feed.pipeline.stats.frames,
                    )
                    delay = engine.decision_delay(feed)
                    status.decision_delay_s = None if delay is None else round(delay, 2)
                    if feed.error is not None:
                        status.state, status.error = "failed", str(feed.error)
            if self.stopping.is_set():
                engine.stop()
            elif cameras != self.state.cameras() or self.state.model() != (
                models.embedder.model_id.rpartition("@")[0],
                model_id,
            ):
                reason = "the site's cameras or model changed on the core"
                engine.stop()
            elif any(feed.error is not None for feed in feeds.values()):
                reason = "; ".join(str(f.error) for f in feeds.values() if f.error is not None)
                engine.stop()
        for name in feeds:
            status = self.cameras[name]
            if status.state == "running":
                status.state = "stopped"
            self.state.audit("camera.stop", "camera", ids[name], reason=reason[:200])
        self.outbox_ready.set()
        return reason

    # the whole

    def start_background(self) -> None:
        for target, name in (
            (self._sync_loop, "edge-sync"),
            (self._delivery_loop, "edge-delivery"),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def run(self) -> None:
        """Until :attr:`stopping` is set (Ctrl-C, SIGTERM, or revocation)."""
        self.start_background()
        models: FaceModels | None = None
        failures = 0
        try:
            while not self.stopping.is_set():
                model = self.state.model()
                if model is None or not self.state.cameras():
                    self.synced.clear()
                    self.synced.wait(1.0)
                    continue
                name, model_id = model
                if models is None or models.embedder.model_id != model_id:
                    models = FaceModels.load(self.settings.model_copy(update={"embedder": name}))
                    if models.embedder.model_id != model_id:
                        raise WatchkeeperError(
                            f"the core searches with {model_id}, this edge has "
                            f"{models.embedder.model_id}"
                        )
                reason = self._run_cameras(models)
                if self.stopping.is_set():
                    break
                failed = any(c.state == "failed" for c in self.cameras.values())
                if failed:
                    failures += 1
                    delay = min(RESTART_MAX_S, 2.0 ** (failures - 1))
                    for camera in self.cameras.values():
                        camera.restarts += 1 if camera.state == "failed" else 0
                    log.warning("cameras stopped (%s); restarting in %.0f s", reason, delay)
                    self.stopping.wait(delay)
                else:
                    failures = 0
        finally:
            self.stopping.set()
            for thread in self._threads:
                thread.join(self.config.request_timeout_s + self.config.poll_wait_s + 5)
            with contextlib.suppress(CoreUnreachable, EdgeRefused):
                self.deliver(last=True)  # what the cameras decided last, if the core is there
            self.link.close()
