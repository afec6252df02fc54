"""Alerts: candidate matches stored for human review, and the reviews that decide them.

An alert is only a candidate. It becomes "confirmed" when two different
reviewers confirm it and nobody rejects it; one rejection makes it
"rejected" (acting on a face match is the risky direction), counts a false
match against the entry, and enough of those suspend the entry for review.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import cv2
import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from watchkeeper.errors import ImageError, PolicyError
from watchkeeper.governance import audit
from watchkeeper.governance.access import Permission, ensure_owned, require, short_id
from watchkeeper.governance.subjects import ALERT_CROP, is_searchable, suspend
from watchkeeper.store.database import Store
from watchkeeper.store.models import (
    Alert,
    AlertStatus,
    Camera,
    Decision,
    Organisation,
    Review,
    Subject,
    SubjectStatus,
    User,
    utcnow,
)

CONFIRMATIONS_NEEDED = 2
"""Different reviewers who must confirm before anyone acts on an alert."""


def record_alert(
    session: Session,
    store: Store,
    camera: Camera,
    subject_id: uuid.UUID,
    *,
    score: float,
    threshold: float,
    model_id: str,
    probe: np.ndarray,
    crop: np.ndarray,
    sighting: dict[str, Any] | None = None,
    occurred_at: dt.datetime | None = None,
) -> Alert | None:
    """Store a match as a pending alert, with its snapshot and probe vector encrypted.

    Returns None, storing nothing, if the entry may no longer be searched at the
    camera's site (suspended, restricted, expired or erased since the gallery was
    loaded, or of another organisation).
    """
    occurred_at = occurred_at or utcnow()
    subject = session.get(Subject, subject_id)
    organisation_id = camera.site.organisation_id
    if (
        subject is None
        or subject.organisation_id != organisation_id
        or not is_searchable(subject, camera.site_id, occurred_at)
    ):
        return None
    ok, encoded = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        raise ImageError("cannot encode the alert snapshot")
    alert_id = uuid.uuid4()
    alert = Alert(
        id=alert_id,
        organisation_id=organisation_id,
        camera_id=camera.id,
        subject_id=subject.id,
        occurred_at=occurred_at,
        score=score,
        threshold=threshold,
        model_id=model_id,
        probe_vector_encrypted=store.keys.encrypt(
            np.ascontiguousarray(probe, np.float32).tobytes(), _probe_context(alert_id, subject.id)
        ),
        sighting=sighting,
        status=AlertStatus.PENDING,
    )
    session.add(alert)
    store.write_file(session, ALERT_CROP, alert_id, encoded.tobytes(), subject.id)
    session.flush()
    audit.record(
        session,
        store.keys,
        organisation_id,
        f"camera:{camera.name}",
        "alert.create",
        "alert",
        alert_id,
        subject=str(subject.id),
        camera=str(camera.id),
        score=round(score, 4),
        threshold=round(threshold, 4),
        model=model_id,
    )
    return alert


def _probe_context(alert_id: uuid.UUID, subject_id: uuid.UUID) -> str:
    return f"alert-probe:{alert_id}:subject={subject_id}"


def probe_vector(store: Store, alert: Alert) -> np.ndarray:
    blob = store.keys.decrypt(
        alert.probe_vector_encrypted, _probe_context(alert.id, alert.subject_id)
    )
    return np.frombuffer(blob, np.float32)


def status_from(reviews: list[Review]) -> AlertStatus:
    """The alert's status from its reviews (one per reviewer)."""
    decisions = [review.decision for review in reviews]
    if Decision.REJECT in decisions:
        return AlertStatus.REJECTED
    if decisions.count(Decision.CONFIRM) >= CONFIRMATIONS_NEEDED:
        return AlertStatus.CONFIRMED
    if Decision.UNSURE in decisions:
        return AlertStatus.UNSURE
    return AlertStatus.PENDING


def review(
    session: Session,
    store: Store,
    organisation: Organisation,
    actor: User,
    alert: Alert,
    decision: Decision,
    note: str | None = None,
) -> Alert:
    """Record ``actor``'s decision on ``alert`` and update its status."""
    require(actor, Permission.REVIEW)
    ensure_owned(alert, organisation)
    # Another reviewer may have decided since ``alert`` was read: lock it and decide on
    # its current status and reviews.
    session.refresh(alert, with_for_update=True)
    if alert.status in (AlertStatus.CONFIRMED, AlertStatus.REJECTED):
        raise PolicyError(f"alert {short_id(alert)} is already {alert.status.value}")
    if any(existing.user_id == actor.id for existing in alert.reviews):
        raise PolicyError(
            f"{actor.name!r} has already reviewed alert {short_id(alert)}; a second "
            "decision must come from someone else"
        )
    alert.reviews.append(Review(user=actor, decision=decision, note=note or None))
    before = alert.status
    alert.status = status_from(alert.reviews)
    session.flush()
    audit.record(
        session,
        store.keys,
        organisation.id,
        actor.name,
        "alert.review",
        "alert",
        alert.id,
        decision=decision.value,
        status=alert.status.value,
    )
    if alert.status == AlertStatus.REJECTED and before != AlertStatus.REJECTED:
        subject = alert.subject
        session.refresh(subject, with_for_update=True)  # other alerts may have counted since
        subject.false_matches += 1
        limit = organisation.false_matches_before_suspension
        if subject.false_matches >= limit and subject.status == SubjectStatus.ACTIVE:
            suspend(
                session,
                store.keys,
                organisation,
                None,
                subject,
                f"{subject.false_matches} rejected alerts (limit {limit}); review the entry",
            )
    return alert


def list_alerts(
    session: Session, organisation: Organisation, status: AlertStatus | None = None
) -> list[Alert]:
    query = select(Alert).where(Alert.organisation_id == organisation.id)
    if status is not None:
        query = query.where(Alert.status == status)
    return list(session.scalars(query.order_by(Alert.occurred_at.desc())))


def browse_alerts(
    session: Session,
    store: Store,
    organisation: Organisation,
    actor: User,
    status: AlertStatus | None = None,
) -> list[dict[str, Any]]:
    """Alerts as staff see them, newest first; audited."""
    require(actor, Permission.VIEW)
    views = [alert_view(alert) for alert in list_alerts(session, organisation, status)]
    audit.record(
        session,
        store.keys,
        organisation.id,
        actor.name,
        "alert.list",
        None,
        None,
        status=status.value if status else None,
        shown=len(views),
    )
    return views


def alert_view(alert: Alert, full: bool = False) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": str(alert.id),
        "occurred_at": alert.occurred_at.isoformat(),
        "camera": f"{alert.camera.site.name}/{alert.camera.name}",
        "subject": str(alert.subject_id),
        "subject_label": alert.subject.label,
        "score": round(alert.score, 4),
        "threshold": round(alert.threshold, 4),
        "status": alert.status.value,
    }
    if full:
        view["model"] = alert.model_id
        view["reviews"] = [
            {
                "user": r.user.name,
                "decision": r.decision.value,
                "note": r.note,
                "at": r.created_at.isoformat(),
            }
            for r in alert.reviews
        ]
    return view


def show_alert(
    session: Session,
    store: Store,
    organisation: Organisation,
    actor: User,
    alert: Alert,
    with_snapshot: bool = False,
) -> tuple[dict[str, Any], bytes | None]:
    """An alert with its reviews and, if asked, its decrypted snapshot (JPEG); audited."""
    require(actor, Permission.VIEW)
    ensure_owned(alert, organisation)
    snapshot = store.files.read(ALERT_CROP, alert.id, alert.subject_id) if with_snapshot else None
    audit.record(
        session,
        store.keys,
        organisation.id,
        actor.name,
        "alert.snapshot" if with_snapshot else "alert.view",
        "alert",
        alert.id,
    )
    return alert_view(alert, full=True), snapshot
