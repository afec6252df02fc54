"""Live matching against the stored watchlist for one camera: which gallery it may
search, and how its matches become pending alerts."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from watchkeeper.config import Settings
from watchkeeper.errors import PolicyError
from watchkeeper.governance import access
from watchkeeper.governance.alerts import record_alert
from watchkeeper.governance.outbox import queue_alert_event
from watchkeeper.governance.subjects import searchable_gallery
from watchkeeper.matching.gallery import Gallery
from watchkeeper.pipeline import MatchEvent, model_name
from watchkeeper.store.database import Store
from watchkeeper.store.models import Camera, Organisation, Subject


@dataclass(frozen=True)
class StoredAlert:
    alert_id: str
    subject_id: str
    label: str
    score: float = 0.0
    threshold: float = 0.0
    occurred_at: str = ""
    """ISO 8601, UTC."""
    site_id: str = ""
    """The camera's site: who may be told about the alert (see ``access.site_scope``)."""


class CameraWatchlist:
    """The searchable gallery of one camera's site, reloaded every ``refresh_s`` seconds.
    With ``settings``, each stored alert is also queued for the notifications they
    configure (see :func:`record_match`).

    ``model_id`` is the embedder the camera runs: the gallery only ever holds that
    model's templates. Each load also reads the organisation's model in use; once a
    model switch has changed it, :attr:`model_changed` is true and the camera must be
    restarted with the new model (until then it goes on with the old one)."""

    def __init__(
        self,
        store: Store,
        camera_name: str | None,
        model_id: str,
        refresh_s: float,
        organisation_name: str | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.model_id = model_id
        self.refresh_s = refresh_s
        with store.session() as session:
            organisation = access.organisation(session, organisation_name)
            camera = access.camera(session, organisation.id, camera_name)
            if not camera.enabled:
                raise PolicyError(
                    f"camera {camera.site.name}/{camera.name} is disabled "
                    "(`watchkeeper cameras set --enable`)"
                )
            self.camera_id = camera.id
            self.camera_name = f"{camera.site.name}/{camera.name}"
            self.site_id = camera.site_id
            self.organisation_id = organisation.id
        self._loaded_at = -float("inf")
        self.organisation_model: str | None = None
        """The organisation's model in use at the last load (None: the configured one)."""
        self.gallery = self.load()

    def load(self) -> Gallery:
        with self.store.session() as session:
            organisation = session.get_one(Organisation, self.organisation_id)
            self.organisation_model = organisation.embedder
            self.gallery = searchable_gallery(
                session, self.store.keys, self.organisation_id, self.site_id, self.model_id
            )
        self._loaded_at = time.monotonic()
        return self.gallery

    @property
    def model_changed(self) -> bool:
        """Whether the organisation searches with another model than this camera's now."""
        return self.organisation_model not in (None, model_name(self.model_id))

    def refresh_due(self) -> bool:
        return time.monotonic() - self._loaded_at >= self.refresh_s

    def record(self, event: MatchEvent) -> StoredAlert | None:
        """Store ``event`` as a pending alert; None if the entry is no longer searchable."""
        return record_match(self.store, self.camera_id, self.model_id, event, self.settings)


def record_match(
    store: Store,
    camera_id: uuid.UUID,
    model_id: str,
    event: MatchEvent,
    settings: Settings | None = None,
) -> StoredAlert | None:
    """Store a camera's match as a pending alert; None if the entry is no longer
    searchable (suspended, restricted or expired since the camera's gallery was loaded).

    With ``settings``, the alert is queued in the same transaction for every webhook and
    MQTT broker of ``settings.notify`` (``watchkeeper.notify``): it is notified if and
    only if it is stored. Without, or with none configured, nothing is queued."""
    with store.session() as session:
        camera = session.get_one(Camera, camera_id)
        alert = record_alert(
            session,
            store,
            camera,
            uuid.UUID(event.subject),
            score=event.score,
            threshold=event.threshold,
            model_id=model_id,
            probe=event.probe,
            crop=event.shots[0],
            sighting=event.sighting(),
        )
        if alert is None:
            return None
        if settings is not None:
            queue_alert_event(
                session, store, settings, alert, "alert.created", f"camera:{camera.name}"
            )
        label = session.get_one(Subject, alert.subject_id).label
        return StoredAlert(
            str(alert.id),
            event.subject,
            label,
            round(alert.score, 4),
            round(alert.threshold, 4),
            alert.occurred_at.isoformat(),
            str(camera.site_id),
        )
