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

from watchkeeper.config import ReviewConfig, Settings
from watchkeeper.errors import ImageError, NotFoundError, PolicyError
from watchkeeper.governance import audit, outbox
from watchkeeper.governance.access import (
    Permission,
    ensure_owned,
    require,
    short_id,
    site_scope,
)
from watchkeeper.governance.bands import score_band
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

NOTE_MAX_CHARS = 2000
"""Longest review note accepted: a few sentences of why, not a report."""


def sighting_flags(sighting: dict[str, Any] | None, config: ReviewConfig) -> list[str]:
    """Plain-language warnings about how the face was seen (``Alert.sighting``, see
    ``MatchEvent.sighting``), for the reviewer comparing the faces; empty when nothing
    is out of the ordinary. An alert stored before sightings were kept has ``None``."""
    if sighting is None:
        return [
            "How the face was seen was not recorded for this alert: judge from the faces alone."
        ]
    flags = []
    seconds = sighting.get("seconds")
    if seconds is not None and seconds < config.brief_sighting_s:
        flags.append(f"Brief sighting: the face was in view for only {seconds:.1f} s.")
    shots = sighting.get("shots")
    if shots is not None and shots < config.min_shots:
        flags.append(
            f"Few usable shots: the match rests on {shots} usable "
            f"{'image' if shots == 1 else 'images'} of the face (usually {config.min_shots})."
        )
    quality = sighting.get("best_quality")
    if quality is not None and quality < config.low_quality:
        flags.append(
            f"Low quality: even the best shot scored {quality:.2f} of 1 (small, blurred or "
            "turned away)."
        )
    margin = sighting.get("runner_up_margin")
    if margin is not None and margin < config.close_runner_up:
        flags.append(
            f"Close second: another watchlist entry scored within {margin:.3f} of this one; "
            "the score cannot tell them apart."
        )
    return flags


def visible_to(alert: Alert, user: User) -> bool:
    """Whether ``user`` may see ``alert``: its camera is at one of their sites (admins and
    auditors see every site; see :func:`~watchkeeper.governance.access.site_scope`)."""
    scope = site_scope(user)
    return scope is None or alert.camera.site_id in scope


def ensure_visible(alert: Alert, user: User) -> None:
    """An alert of a site ``user`` may not see is "not found", never shown."""
    if not visible_to(alert, user):
        raise NotFoundError(f"no alert {short_id(alert)}")


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
    alert_id: uuid.UUID | None = None,
) -> Alert | None:
    """Store a match as a pending alert, with its snapshot and probe vector encrypted.

    Returns None, storing nothing, if the entry may no longer be searched at the
    camera's site (suspended, restricted, expired or erased since the gallery was
    loaded, or of another organisation). ``alert_id``: the id an edge gave the alert
    (its delivery is idempotent on it); else a new one.
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
    alert_id = alert_id or uuid.uuid4()
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
    settings: Settings | None = None,
) -> Alert:
    """Record ``actor``'s decision on ``alert`` and update its status. With ``settings``,
    the decision that confirms or rejects it is queued, in this transaction, for the
    notifications configured there (``alert.confirmed``, ``alert.rejected``)."""
    require(actor, Permission.REVIEW)
    ensure_owned(alert, organisation)
    ensure_visible(alert, actor)
    if note is not None and len(note) > NOTE_MAX_CHARS:
        raise PolicyError(f"the note has {len(note)} characters; at most {NOTE_MAX_CHARS}")
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
    if settings is not None and alert.status in (AlertStatus.CONFIRMED, AlertStatus.REJECTED):
        event: outbox.Event = (
            "alert.confirmed" if alert.status == AlertStatus.CONFIRMED else "alert.rejected"
        )
        outbox.queue_alert_event(session, store, settings, alert, event, actor.name)
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
    session: Session,
    organisation: Organisation,
    status: AlertStatus | None = None,
    sites: frozenset[uuid.UUID] | None = None,
) -> list[Alert]:
    """The organisation's alerts, newest first; only those of ``sites`` unless None."""
    query = select(Alert).where(Alert.organisation_id == organisation.id)
    if status is not None:
        query = query.where(Alert.status == status)
    if sites is not None:
        query = query.join(Camera).where(Camera.site_id.in_(sites))
    return list(session.scalars(query.order_by(Alert.occurred_at.desc())))


def browse_alerts(
    session: Session,
    store: Store,
    organisation: Organisation,
    actor: User,
    status: AlertStatus | None = None,
) -> list[dict[str, Any]]:
    """The alerts of the sites ``actor`` may see, as staff see them, newest first;
    audited."""
    require(actor, Permission.VIEW)
    alerts = list_alerts(session, organisation, status, site_scope(actor))
    views = [alert_view(alert) for alert in alerts]
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


def card_details(alert: Alert, config: ReviewConfig) -> dict[str, Any]:
    """What the review card adds to :func:`alert_view`: the score band, the sighting and
    its warnings, where it was, the entry's incidents and expiry, the ids of its
    enrolment photos, and who has confirmed so far. Ids and text only, never a face or
    a vector; call it after :func:`show_alert`, which checks and audits the viewing."""
    subject = alert.subject
    return {
        "site": alert.camera.site.name,
        "band": score_band(round(alert.score, 4), round(alert.threshold, 4), config),
        "sighting": alert.sighting,
        "flags": sighting_flags(alert.sighting, config),
        "expires_at": subject.expires_at.isoformat(),
        "photos": [str(image.id) for image in subject.images],
        "incidents": [
            {
                "id": str(incident.id),
                "category": incident.category.value,
                "occurred_at": incident.occurred_at.isoformat(),
                "site": incident.site.name,
                "description": incident.description,
            }
            for incident in sorted(subject.incidents, key=lambda i: i.occurred_at)
        ],
        "confirmations_needed": CONFIRMATIONS_NEEDED,
        "confirmed_by": [r.user.name for r in alert.reviews if r.decision == Decision.CONFIRM],
    }


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
    ensure_visible(alert, actor)
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
