"""The notification outbox: one row per alert event and configured destination, added
in the transaction that stores (or decides) the alert, delivered later by the notifier."""

from __future__ import annotations

import re
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from watchkeeper.config import Settings
from watchkeeper.governance import audit
from watchkeeper.governance.bands import score_band
from watchkeeper.store.database import Store
from watchkeeper.store.models import Alert, Organisation, OutboxMessage, utcnow

Event = Literal["alert.created", "alert.confirmed", "alert.rejected"]


def destinations(settings: Settings, event: Event) -> list[str]:
    """Where ``event`` goes under ``settings``: the webhooks that asked for it, and the
    MQTT broker (which gets every event). Empty when nothing is configured."""
    return [channel.destination for channel in settings.notify.channels if channel.wants(event)]


def alert_payload(
    session: Session, settings: Settings, alert: Alert, event: Event
) -> dict[str, Any]:
    """What a receiver is told about ``alert``: where and when, which entry, how strong
    the match is (the band of the alert card and the cosine score with its threshold),
    its review status and a link to its card. No face, vector or camera address."""
    organisation = session.get_one(Organisation, alert.organisation_id)
    score, threshold = round(alert.score, 4), round(alert.threshold, 4)
    public_url = settings.web.public_url
    return {
        "event": event,
        "alert_id": str(alert.id),
        "organisation": organisation.name,
        "site": alert.camera.site.name,
        "camera": alert.camera.name,
        "entry": alert.subject.label,
        "status": alert.status.value,
        "band": score_band(score, threshold, settings.review),
        "score": score,
        "threshold": threshold,
        "occurred_at": alert.occurred_at.isoformat(),
        "url": f"{public_url.rstrip('/')}/alerts/{alert.id}" if public_url else None,
    }


def queue_alert_event(
    session: Session, store: Store, settings: Settings, alert: Alert, event: Event, actor: str
) -> list[OutboxMessage]:
    """Queue ``event`` about ``alert`` for every configured destination, in ``session``'s
    transaction, and audit that it will leave the machine (``alert.notify``: the event
    and destinations). Queues and records nothing when no destination wants it."""
    wanted = destinations(settings, event)
    if not wanted:
        return []
    payload = alert_payload(session, settings, alert, event)
    now = utcnow()
    messages = [
        OutboxMessage(
            alert_id=alert.id,
            event=event,
            destination=destination,
            payload=payload,
            attempts=0,
            next_attempt_at=now,
        )
        for destination in wanted
    ]
    session.add_all(messages)
    session.flush()
    audit.record(
        session,
        store.keys,
        alert.organisation_id,
        actor,
        "alert.notify",
        "alert",
        alert.id,
        event=event,
        destinations=wanted,
    )
    return messages


def outbox_counts(session: Session) -> dict[str, int]:
    """How many notifications are pending, delivered and failed (given up)."""
    rows = session.execute(
        select(
            OutboxMessage.delivered_at.is_not(None),
            OutboxMessage.failed_at.is_not(None),
            func.count(),
        ).group_by(OutboxMessage.delivered_at.is_not(None), OutboxMessage.failed_at.is_not(None))
    )
    counts = {"pending": 0, "delivered": 0, "failed": 0}
    for delivered, failed, count in rows:
        counts["delivered" if delivered else "failed" if failed else "pending"] += count
    return counts


def site_slug(name: str) -> str:
    """A site's name as one MQTT topic level: lower case, runs of anything but letters
    and digits as one '-' ("Leeds Kirkgate" -> "leeds-kirkgate")."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "site"
