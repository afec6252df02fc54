"""Subject access requests: does Watchkeeper hold anything about the person in this
photo, and a copy of all of it.

The search looks only at what an organisation holds (its watchlist entries,
whatever their status, and its alert archive), with the person's own photo; it
is never a way to search cameras or anything else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from watchkeeper.errors import PolicyError, WatchlistError
from watchkeeper.governance import audit
from watchkeeper.governance.access import Permission, ensure_owned, require
from watchkeeper.governance.alerts import alert_view, probe_vector
from watchkeeper.governance.subjects import ALERT_CROP, FACE_IMAGE, subject_view, template_vector
from watchkeeper.matching.watchlist import PhotoRefused, enrolment_face
from watchkeeper.pipeline import FaceModels
from watchkeeper.store.database import Store
from watchkeeper.store.models import (
    Alert,
    AuditEvent,
    FaceImage,
    Organisation,
    Subject,
    Template,
    User,
    utcnow,
)
from watchkeeper.vision.images import decode_image


@dataclass(frozen=True)
class Hit:
    kind: str
    """"watchlist" (an entry's photo) or "alert" (a camera snapshot)."""
    subject_id: str
    score: float
    """Best cosine similarity of the supplied photo to what is held."""
    alert_id: str | None = None


def search(
    session: Session,
    store: Store,
    organisation: Organisation,
    actor: User,
    models: FaceModels,
    photo: bytes,
    photo_name: str,
    threshold: float,
) -> list[Hit]:
    """Entries and alerts whose face scores at least ``threshold`` against the photo,
    best first. Pending, suspended, restricted and expired entries are included:
    they are all held."""
    require(actor, Permission.SUBJECT_ACCESS)
    image = decode_image(photo, photo_name)
    try:
        face = enrolment_face(image, models.detector, models.embedder, models.quality)
    except PhotoRefused as refused:
        raise WatchlistError(f"{photo_name}: {', '.join(refused.reasons)}") from None
    probe = models.embedder.embed([face.chip]).vectors[0]
    model_id = models.embedder.model_id
    best: dict[str, Hit] = {}
    templates = session.execute(
        select(Template, FaceImage.subject_id)
        .join(FaceImage, Template.face_image_id == FaceImage.id)
        .join(Subject, FaceImage.subject_id == Subject.id)
        .where(Subject.organisation_id == organisation.id, Template.model_id == model_id)
    ).all()
    for template, subject_id in templates:
        score = float(template_vector(store.keys, template, subject_id) @ probe)
        key = f"watchlist:{subject_id}"
        if score >= threshold and (key not in best or best[key].score < score):
            best[key] = Hit("watchlist", str(subject_id), score)
    alerts = session.scalars(
        select(Alert).where(Alert.organisation_id == organisation.id, Alert.model_id == model_id)
    ).all()
    for alert in alerts:
        score = float(probe_vector(store, alert) @ probe)
        if score >= threshold:
            best[f"alert:{alert.id}"] = Hit("alert", str(alert.subject_id), score, str(alert.id))
    probe.fill(0)
    hits = sorted(best.values(), key=lambda hit: -hit.score)
    audit.record(
        session,
        store.keys,
        organisation.id,
        actor.name,
        "dsar.search",
        None,
        None,
        threshold=round(threshold, 4),
        model=model_id,
        subjects=sorted({hit.subject_id for hit in hits}),
        alerts=[hit.alert_id for hit in hits if hit.alert_id],
    )
    return hits


def export(
    session: Session,
    store: Store,
    organisation: Organisation,
    actor: User,
    subject: Subject,
    folder: Path,
) -> dict[str, Any]:
    """Write everything held about ``subject`` to ``folder`` (which must not exist):
    ``subject.json`` (the entry, incidents, photos' metadata and templates, alerts
    with their reviews, and the audit events about them) and the photos and alert
    snapshots as JPEG files. Returns the JSON document."""
    require(actor, Permission.SUBJECT_ACCESS)
    ensure_owned(subject, organisation)
    if folder.exists():
        raise PolicyError(f"{folder} already exists; export to a new folder")
    now = utcnow()
    document = subject_view(session, subject, now, full=True)
    alerts = session.scalars(select(Alert).where(Alert.subject_id == subject.id)).all()
    document["alerts"] = [alert_view(alert, full=True) for alert in alerts]
    document["templates"] = [
        {
            "image": str(image.id),
            "model": template.model_id,
            "vector": [
                round(float(v), 6) for v in template_vector(store.keys, template, subject.id)
            ],
        }
        for image in subject.images
        for template in image.templates
    ]
    ids = [str(subject.id)] + [str(a.id) for a in alerts] + [str(i.id) for i in subject.images]
    events = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.organisation_id == organisation.id)
        .where(or_(AuditEvent.object_id.in_(ids), AuditEvent.object_type.is_(None)))
        .order_by(AuditEvent.sequence)
    ).all()
    document["audit"] = [
        {
            "sequence": event.sequence,
            "at": event.at.isoformat(),
            "actor": event.actor,
            "action": event.action,
            "object": event.object_id,
            "details": event.details,
        }
        for event in events
        if event.object_id in ids or _mentions(event.details, str(subject.id))
    ]
    (folder / "photos").mkdir(parents=True)
    (folder / "alerts").mkdir()
    for image in subject.images:
        (folder / "photos" / f"{image.id}.jpg").write_bytes(
            store.files.read(FACE_IMAGE, image.id, subject.id)
        )
    for alert in alerts:
        (folder / "alerts" / f"{alert.id}.jpg").write_bytes(
            store.files.read(ALERT_CROP, alert.id, subject.id)
        )
    (folder / "subject.json").write_text(json.dumps(document, indent=2) + "\n")
    audit.record(
        session,
        store.keys,
        organisation.id,
        actor.name,
        "dsar.export",
        "subject",
        subject.id,
        photos=len(subject.images),
        alerts=len(alerts),
    )
    return document


def _mentions(details: Any, subject_id: str) -> bool:
    if isinstance(details, dict):
        return any(_mentions(value, subject_id) for value in details.values())
    if isinstance(details, list):
        return any(_mentions(value, subject_id) for value in details)
    return details == subject_id
