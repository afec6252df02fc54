"""Alerts for review tests: a match recorded as live matching records it, and a second
site ("York") with its own camera and reviewer to prove site scoping."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from tests.support.shop import Shop, Sighting
from tests.support.web import PASSWORD
from watchkeeper.governance.accounts import set_password
from watchkeeper.governance.alerts import record_alert
from watchkeeper.governance.organisation import add_camera, add_site, add_user
from watchkeeper.store.models import AuditEvent, Camera, Role

SCORE, THRESHOLD = 0.655, 0.4592
"""A score 0.196 above SFace's 100-entry threshold: a "strong" band."""

BRIEF = {"seconds": 0.6, "frames": 5, "shots": 3, "best_quality": 0.55, "runner_up_margin": None}
"""How a face seen only briefly, but well, is recorded (``MatchEvent.sighting``)."""


def raise_alert(
    shop: Shop,
    subject_id: uuid.UUID,
    seen: Sighting,
    *,
    camera_id: uuid.UUID | None = None,
    sighting: dict[str, Any] | None = BRIEF,
    score: float = SCORE,
    threshold: float = THRESHOLD,
) -> str:
    """Record a match of ``subject_id`` at a camera (the shop's door by default) in a
    transaction of its own, as the service does; the alert's id."""
    with shop.store.session() as session:
        alert = record_alert(
            session,
            shop.store,
            session.get_one(Camera, camera_id or shop.camera_id),
            subject_id,
            score=score,
            threshold=threshold,
            model_id=seen.model_id,
            probe=seen.vector,
            crop=seen.chip,
            sighting=sighting,
        )
        assert alert is not None
        return str(alert.id)


def add_york(shop: Shop) -> uuid.UUID:
    """A second site, "York", with a camera "gate" and a reviewer "yvonne" bound to it
    (with the web tests' password); the camera's id."""
    with shop.tx() as tx:
        keys, alice = shop.store.keys, tx.user("alice")
        site = add_site(tx.session, keys, tx.organisation, alice, "York")
        yvonne = add_user(tx.session, keys, tx.organisation, alice, "yvonne", Role.REVIEWER, [site])
        set_password(tx.session, keys, yvonne, yvonne, PASSWORD)
        return add_camera(tx.session, keys, tx.organisation, alice, site, "gate", "rtsp://h/s").id


def audit_trail(shop: Shop, *actions: str) -> list[tuple[str, str, str | None]]:
    """(actor, action, object id) of the audit events with these actions, in order."""
    with shop.tx() as tx:
        events = tx.session.scalars(
            select(AuditEvent).where(AuditEvent.action.in_(actions)).order_by(AuditEvent.sequence)
        )
        return [(e.actor, e.action, e.object_id) for e in events]
