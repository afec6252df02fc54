"""The live runtime: from a camera's frames to alerts that are stored, shown and sent.

Every command that recognises shares these pieces, so that what is measured and
tested is what a shop runs:

    FaceModels.load(settings)         pipeline.py: the models, loaded once per process
    LiveCamera(store, models, ...)    live_camera.py: a camera's pipeline and the stored
                                      watchlist it searches, reloaded when due or asked
                                      (a model switch is noticed at a reload)
    run_source(...)                   live_camera.py: one source through the streaming
                                      engine to its end; each decision (a MatchEvent that
                                      carries its threshold) goes to a handler
    Runtime(settings, store)          here: the service. Every camera runs in a worker
                                      process under the Supervisor, which stores each
                                      decision as a pending alert (retried from memory
                                      while storing fails); the alert is then pushed to
                                      open alert pages, and the notifier is woken for the
                                      channels its transaction queued (webhooks, MQTT)

`scan` runs one source with ``run_source`` (against a folder, or a ``LiveCamera``
that stores its matches), `eval` of a video manifest runs each clip the same way,
and the camera workers of `serve` run a ``LiveCamera`` each. The web app gets the
``Runtime`` it controls (start, stop, cameras changed, watchlist changed).
"""

from __future__ import annotations

import threading
from typing import Any

from watchkeeper.config import Settings
from watchkeeper.governance.live import StoredAlert
from watchkeeper.governance.retention import RetentionSweeper
from watchkeeper.notify.notifier import Notifier
from watchkeeper.service.broadcast import AlertBroadcaster
from watchkeeper.service.supervisor import CameraHealth, Supervisor
from watchkeeper.store.database import Store
from watchkeeper.store.models import AlertStatus

CAMERAS_FOLLOW_S = 15.0
"""How often the service follows the cameras in the database on its own (a camera
changed, or an edge added or revoked, from the command line or another process);
changes on the web app are followed at once."""

SITE_KEY = "site_id"
"""The broadcast message's field naming the alert's site: used to choose which pages
are told, never sent on."""


def alert_message(camera: str, alert: StoredAlert) -> dict[str, Any]:
    """What the service pushes to open alert pages about a new alert (no face data: the
    page asks for the crop, with its own authorisation, when it shows the alert).
    ``site_id`` only chooses the pages that are told; the page never receives it."""
    return {
        "id": alert.alert_id,
        "camera": camera,
        "subject_label": alert.label,
        "score": alert.score,
        "threshold": alert.threshold,
        "occurred_at": alert.occurred_at,
        "status": AlertStatus.PENDING.value,
        SITE_KEY: alert.site_id,
    }


class Runtime:
    """The live service over one store: the cameras (one worker process each, under the
    :class:`Supervisor`), the push of each stored alert to open alert pages, the
    notifier that delivers the outbox to the configured channels, and the retention
    sweep (expired entries and old alerts deleted with their files, every
    ``store.sweep_interval_s``).

    :meth:`start` and :meth:`stop` bring it all up and down (the web app's lifespan
    calls them); stopping waits until every camera has stored its last alerts, then
    stops the notifier (what is not delivered stays queued for the next start).
    Every ``CAMERAS_FOLLOW_S`` the supervisor follows the cameras in the database
    (changes made elsewhere: a camera from the command line, a chain's edge added or
    revoked). ``cameras=False`` leaves recognition and the sweep out (a web app that only shows
    and reviews, as the tests of its pages use it)."""

    def __init__(self, settings: Settings, store: Store, cameras: bool = True) -> None:
        self.settings = settings
        self.store = store
        self.broadcaster = AlertBroadcaster()
        self.notifier = Notifier(settings, store)
        self.supervisor = Supervisor(settings, store, self.alert_stored) if cameras else None
        self.sweeper: RetentionSweeper | None = None
        self._stopping = threading.Event()
        self._follower: threading.Thread | None = None

    def alert_stored(self, camera: CameraHealth, alert: StoredAlert) -> None:
        """A camera's alert is stored: tell the open pages, and wake the notifier for
        the webhooks and MQTT messages queued with it."""
        self.broadcaster.publish(alert_message(camera.name, alert))
        self.notifier.wake()

    def start(self) -> None:
        self.notifier.start()
        if self.supervisor is not None:
            interval = self.settings.store.sweep_interval_s
            self.sweeper = RetentionSweeper(self.store, interval).start()
            self.supervisor.start()
            self._stopping.clear()
            self._follower = threading.Thread(
                target=self._follow_cameras, name="cameras-follow", daemon=True
            )
            self._follower.start()

    def _follow_cameras(self) -> None:
        supervisor = self.supervisor
        assert supervisor is not None
        while not self._stopping.wait(CAMERAS_FOLLOW_S):
            supervisor.cameras_changed()

    def stop(self) -> None:
        self._stopping.set()
        if self._follower is not None:
            self._follower.join()
            self._follower = None
        try:
            if self.supervisor is not None:
                self.supervisor.stop()
        finally:
            self.notifier.stop()
            if self.sweeper is not None:
                self.sweeper.stop()
                self.sweeper = None
