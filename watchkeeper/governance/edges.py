"""A chain's edges, as the core sees them: enrolment with a one-time code, the
credential each edge then uses, revocation, the watchlist changes each edge is sent,
and what an edge sends back (its alerts, its audit events, its status).

An edge holds only what matching at its site needs: the templates of the entries
that may be searched there now, with the model in use, and the site's cameras. It
never receives photos, labels, reasons, incidents or another site's entries. What
it sends is checked here as the core's own data would be: an alert must name a
camera of the edge's site and an entry still searchable there (else it is not
stored: the entry was erased, suspended or restricted since), its snapshot must be
an image within the size limit, and its audit events must continue the edge's own
HMAC chain from where the core last verified it. Every refusal is audited.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from watchkeeper.config import EdgeConfig, Settings
from watchkeeper.dates import parse_utc
from watchkeeper.edge.protocol import (
    CODE_PREFIX,
    CREDENTIAL_PREFIX,
    MAX_AUDIT_BATCH,
    event_mac,
    secret_hash,
    vector_text,
)
from watchkeeper.errors import EdgeRefused, NotFoundError, PolicyError
from watchkeeper.governance import access, audit
from watchkeeper.governance.access import Permission, require
from watchkeeper.governance.alerts import record_alert
from watchkeeper.governance.live import StoredAlert
from watchkeeper.governance.organisation import camera_source
from watchkeeper.governance.outbox import queue_alert_event
from watchkeeper.governance.subjects import model_in_use, searchable_at, template_vector
from watchkeeper.models.registry import ModelRegistry
from watchkeeper.store.crypto import KeyRing
from watchkeeper.store.database import Store
from watchkeeper.store.models import (
    Alert,
    Camera,
    Edge,
    FaceImage,
    Organisation,
    Site,
    Subject,
    SubjectSite,
    Template,
    User,
    WatchlistChange,
    utcnow,
)

AUDIT_KEY_BYTES = 32


def _audit_key_context(edge_id: uuid.UUID) -> str:
    return f"edge-audit-key:{edge_id}"


@dataclass(frozen=True)
class NewEdge:
    edge: Edge
    code: str
    """The one-time enrolment code (shown once; the core keeps its hash)."""


def add_edge(
    session: Session,
    keys: KeyRing,
    organisation: Organisation,
    actor: User,
    site_name: str,
    name: str | None,
    config: EdgeConfig,
) -> NewEdge:
    """Register an edge for ``site_name`` and issue its one-time enrolment code."""
    require(actor, Permission.MANAGE_ORGANISATION)
    site = access.site(session, organisation.id, site_name)
    name = name or f"{site.name}-edge-{secrets.token_hex(2)}"
    if session.scalar(
        select(Edge.id).where(Edge.organisation_id == organisation.id, Edge.name == name)
    ):
        raise PolicyError(f"an edge called {name!r} exists already")
    code = CODE_PREFIX + secrets.token_urlsafe(18)
    edge = Edge(
        organisation_id=organisation.id,
        site_id=site.id,
        name=name,
        code_hash=secret_hash(code),
        code_expires_at=utcnow() + dt.timedelta(hours=config.enrolment_code_hours),
        created_by=actor.name,
        revision=0,
        audit_count=0,
        audit_head=bytes(32),
    )
    session.add(edge)
    session.flush()
    audit.record(
        session, keys, organisation.id, actor.name, "edge.add", "edge", edge.id,
        site=site.name, name=name, code_expires_at=edge.code_expires_at.isoformat(),
    )  # fmt: skip
    return NewEdge(edge, code)


@dataclass(frozen=True)
class Enrolment:
    edge: Edge
    credential: str
    audit_key: bytes


def enrol(session: Session, keys: KeyRing, code: str, version: str) -> Enrolment:
    """Exchange a one-time code for the edge's credential and audit-chain key."""
    edge = session.scalar(select(Edge).where(Edge.code_hash == secret_hash(code.strip())))
    now = utcnow()
    if edge is None or edge.revoked_at is not None:
        raise EdgeRefused("this enrolment code is not valid (used, revoked or mistyped)", 401)
    if edge.code_expires_at is not None and edge.code_expires_at <= now:
        raise EdgeRefused(
            f"this enrolment code expired at {edge.code_expires_at:%Y-%m-%d %H:%M} UTC; "
            f"issue a new one with `watchkeeper edges add {edge.site.name}` on the core",
            401,
        )
    credential = CREDENTIAL_PREFIX + secrets.token_urlsafe(32)
    audit_key = secrets.token_bytes(AUDIT_KEY_BYTES)
    edge.code_hash = None
    edge.code_expires_at = None
    edge.credential_hash = secret_hash(credential)
    edge.audit_key_encrypted = keys.encrypt(audit_key, _audit_key_context(edge.id))
    edge.enrolled_at = now
    edge.last_contact_at = now
    edge.status = {"version": version[:100]}
    audit.record(
        session, keys, edge.organisation_id, f"edge:{edge.name}", "edge.enrol", "edge", edge.id,
        site=edge.site.name, version=version[:100],
    )  # fmt: skip
    return Enrolment(edge, credential, audit_key)


def authenticated(session: Session, credential: str) -> Edge:
    """The edge whose credential this is; refused (401) if none is, or it was revoked."""
    edge = None
    if credential.startswith(CREDENTIAL_PREFIX):
        edge = session.scalar(select(Edge).where(Edge.credential_hash == secret_hash(credential)))
    if edge is None:
        raise EdgeRefused("not a valid edge credential", 401)
    if edge.revoked_at is not None:
        raise EdgeRefused(
            f"edge {edge.name!r} was revoked at {edge.revoked_at:%Y-%m-%d %H:%M} UTC", 401
        )
    edge.last_contact_at = utcnow()
    return edge


def find_edge(session: Session, organisation: Organisation, name: str) -> Edge:
    edge = session.scalar(
        select(Edge).where(Edge.organisation_id == organisation.id, Edge.name == name)
    )
    if edge is None:
        raise NotFoundError(f"no edge called {name!r} (`watchkeeper edges list`)")
    return edge


def revoke(
    session: Session, keys: KeyRing, organisation: Organisation, actor: User, name: str
) -> Edge:
    """End an edge's credential (and any unused code) at once; its site's cameras go
    back to the core's own recognition unless the site has another edge."""
    require(actor, Permission.MANAGE_ORGANISATION)
    edge = find_edge(session, organisation, name)
    if edge.revoked_at is not None:
        raise PolicyError(f"edge {name!r} is already revoked")
    edge.revoked_at = utcnow()
    edge.code_hash = None
    audit.record(session, keys, organisation.id, actor.name, "edge.revoke", "edge", edge.id)
    return edge


def edge_run_sites(session: Session, organisation_id: uuid.UUID) -> set[uuid.UUID]:
    """Sites whose cameras are an edge's to run, so the core leaves them: every site
    with an edge that is not revoked (enrolled, or issued its code and about to)."""
    return set(
        session.scalars(
            select(Edge.site_id).where(
                Edge.organisation_id == organisation_id, Edge.revoked_at.is_(None)
            )
        )
    )


def list_edges(session: Session, organisation: Organisation) -> list[Edge]:
    return list(
        session.scalars(
            select(Edge)
            .join(Site)
            .where(Edge.organisation_id == organisation.id)
            .order_by(Site.name, Edge.name)
        )
    )


def edge_view(edge: Edge, now: dt.datetime | None = None) -> dict[str, Any]:
    """What the core's pages, the API and `edges list --json` show of an edge."""
    now = now or utcnow()
    status = edge.status or {}
    if edge.revoked_at is not None:
        state = "revoked"
    elif edge.enrolled_at is None:
        state = "waiting for enrolment"
    else:
        state = "enrolled"
    contact = edge.last_contact_at
    return {
        "id": str(edge.id),
        "name": edge.name,
        "site": edge.site.name,
        "state": state,
        "version": status.get("version"),
        "last_contact": contact.isoformat() if contact else None,
        "seconds_since_contact": round((now - contact).total_seconds(), 1) if contact else None,
        "revision": edge.revision,
        "staleness_s": status.get("staleness_s"),
        "max_staleness_s": status.get("max_staleness_s"),
        "matching": status.get("matching"),
        "outbox": status.get("outbox"),
        "cameras": status.get("cameras", []),
        "audit_events": edge.audit_count,
    }


# What the core sends an edge


def current_revision(session: Session, organisation_id: uuid.UUID) -> int:
    return (
        session.scalar(
            select(func.max(WatchlistChange.revision)).where(
                WatchlistChange.organisation_id == organisation_id
            )
        )
        or 0
    )


def _searchable_ids(session: Session, edge: Edge, now: dt.datetime) -> list[uuid.UUID]:
    return list(
        session.scalars(
            select(Subject.id)
            .join(SubjectSite, SubjectSite.subject_id == Subject.id)
            .where(*searchable_at(edge.organisation_id, edge.site_id, now))
            .order_by(Subject.id)
        )
    )


def _entry(
    session: Session, keys: KeyRing, subject: Subject, model_id: str
) -> dict[str, Any] | None:
    """An entry as an edge holds it: its id, expiry and this model's templates (no
    label, reason or photo). None if it has no template of the model."""
    templates = session.scalars(
        select(Template)
        .join(FaceImage, Template.face_image_id == FaceImage.id)
        .where(FaceImage.subject_id == subject.id, Template.model_id == model_id)
        .order_by(Template.id)
    ).all()
    if not templates:
        return None
    vectors = []
    for template in templates:
        vector = template_vector(keys, template, subject.id)
        vectors.append({"id": str(template.id), "vector": vector_text(vector)})
    return {
        "id": str(subject.id),
        "expires_at": subject.expires_at.isoformat(),
        "templates": vectors,
    }


def changes_for(
    session: Session,
    keys: KeyRing,
    settings: Settings,
    edge: Edge,
    since: int,
    digest: bool = False,
) -> dict[str, Any]:
    """The watchlist changes an edge holding revision ``since`` must apply: the entries
    to add or replace (``upserts``) and those to drop (``removals``); ``full`` means
    the edge must replace its whole copy with ``upserts`` (its first sync, a model
    switch, or a core whose journal is behind the edge's revision, as after a
    restore). With ``digest``, also every entry id searchable at the site now, which
    the edge checks its copy against. The cameras it runs (:func:`site_cameras`) and
    the model to run come with every answer."""
    now = utcnow()
    organisation = session.get_one(Organisation, edge.organisation_id)
    model = model_in_use(organisation, settings)
    model_id = ModelRegistry(settings.models_dir).spec(model).model_id
    revision = current_revision(session, organisation.id)
    changed = (
        session.execute(
            select(WatchlistChange.subject_id).where(
                WatchlistChange.organisation_id == organisation.id,
                WatchlistChange.revision > since,
                WatchlistChange.revision <= revision,
            )
        )
        .scalars()
        .all()
    )
    full = since <= 0 or since > revision or any(subject is None for subject in changed)
    # Which entries may be searched at the site, in one query: asking each entry
    # (is_searchable) loads all the sites in its scope, so a full copy cost entries x
    # sites (a chain-wide watchlist: 100 entries at 200 sites read 20,000 rows).
    searchable = _searchable_ids(session, edge, now)
    in_scope = set(searchable)
    wanted = searchable if full else sorted(set(changed), key=str)
    upserts: list[dict[str, Any]] = []
    removals: list[str] = []
    for subject_id in wanted:
        entry = None
        if subject_id in in_scope:
            entry = _entry(session, keys, session.get_one(Subject, subject_id), model_id)
        if entry is not None:
            upserts.append(entry)
        elif not full:
            removals.append(str(subject_id))
    answer: dict[str, Any] = {
        "revision": revision,
        "full": full,
        "upserts": upserts,
        "removals": removals,
        "model": model,
        "model_id": model_id,
        "site": edge.site.name,
        "cameras": site_cameras(session, keys, edge),
        "core_time": now.isoformat(),
    }
    if digest:
        answer["digest"] = [str(subject_id) for subject_id in searchable]
    return answer


def site_cameras(session: Session, keys: KeyRing, edge: Edge) -> list[dict[str, Any]]:
    """The enabled cameras of the edge's site that this edge runs: all of them, or,
    where the site has several enrolled edges, every n-th (by name) for the n-th edge
    by enrolment, so that each camera runs on one edge."""
    cameras = session.scalars(
        select(Camera)
        .where(Camera.site_id == edge.site_id, Camera.enabled.is_(True))
        .order_by(Camera.name)
    ).all()
    peers = list(
        session.scalars(
            select(Edge.id)
            .where(
                Edge.site_id == edge.site_id,
                Edge.enrolled_at.is_not(None),
                Edge.revoked_at.is_(None),
            )
            .order_by(Edge.enrolled_at, Edge.id)
        )
    )
    place = peers.index(edge.id) if edge.id in peers else 0
    return [
        {"id": str(camera.id), "name": camera.name, "source": camera_source(keys, camera)}
        for index, camera in enumerate(cameras)
        if index % max(1, len(peers)) == place
    ]


def record_status(edge: Edge, revision: int, status: dict[str, Any]) -> None:
    """Keep what the edge says of itself (shown on the core's cameras page)."""
    edge.revision = max(0, revision)
    edge.status = {
        "version": str(status.get("version", ""))[:100],
        "staleness_s": _number(status.get("staleness_s")),
        "max_staleness_s": _number(status.get("max_staleness_s")),
        "matching": bool(status.get("matching")),
        "outbox": int(_number(status.get("outbox")) or 0),
        "cameras": [_camera_status(c) for c in list(status.get("cameras") or [])[:64]],
    }


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _camera_status(value: Any) -> dict[str, Any]:
    value = value if isinstance(value, dict) else {}
    return {
        "name": str(value.get("name", ""))[:200],
        "state": str(value.get("state", ""))[:50],
        "fps": _number(value.get("fps")),
        "frames": int(_number(value.get("frames")) or 0),
        "error": (str(value["error"])[:300] if value.get("error") else None),
        "restarts": int(_number(value.get("restarts")) or 0),
        "decision_delay_s": _number(value.get("decision_delay_s")),
    }


# What an edge sends the core


def refusal(
    store: Store, edge_id: uuid.UUID | None, action: str, reason: str, **details: Any
) -> None:
    """Audit a refused request from an edge, in a transaction of its own (the request's
    was rolled back)."""
    with store.session() as session:
        edge = session.get(Edge, edge_id) if edge_id else None
        organisation_id = edge.organisation_id if edge else access.organisation(session).id
        actor = f"edge:{edge.name}" if edge else "edge:unknown"
        audit.record(
            session, store.keys, organisation_id, actor, action, "edge",
            edge.id if edge else None, reason=reason[:300], **details,
        )  # fmt: skip


def _snapshot(text: Any, config: EdgeConfig) -> np.ndarray:
    if not isinstance(text, str):
        raise EdgeRefused("an alert needs its snapshot (base64 JPEG)", 422)
    if len(text) > (config.max_snapshot_kib * 1024 * 4) // 3 + 4:
        raise EdgeRefused(f"the snapshot is larger than {config.max_snapshot_kib} KiB", 413)
    try:
        data = base64.b64decode(text, validate=True)
    except ValueError:
        raise EdgeRefused("the snapshot is not base64", 422) from None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None or image.shape[0] < 8 or image.shape[1] < 8:
        raise EdgeRefused("the snapshot is not an image", 422)
    return image


def _probe(text: Any, dimension: int | None) -> np.ndarray:
    try:
        vector = np.frombuffer(base64.b64decode(str(text), validate=True), "<f4")
    except ValueError:
        raise EdgeRefused("the probe vector is not base64", 422) from None
    if vector.size == 0 or vector.size > 4096 or (dimension and vector.size != dimension):
        raise EdgeRefused("the probe vector has the wrong size", 422)
    if not np.all(np.isfinite(vector)):
        raise EdgeRefused("the probe vector holds non-numbers", 422)
    return vector.astype(np.float32)


@dataclass(frozen=True)
class Ingested:
    stored: StoredAlert | None
    """The alert stored now; None when it was already stored (the same id again)."""
    camera: str


def ingest_alert(
    session: Session, store: Store, settings: Settings, edge: Edge, alert: dict[str, Any]
) -> Ingested:
    """Store an alert raised at ``edge`` as a pending alert, exactly once (its id is the
    edge's; the same id again is answered as stored). Refused (EdgeRefused) if it names
    a camera of another site, a time in the future, or a bad snapshot or vector; 410 if
    its entry may no longer be searched at the site (erased, suspended, restricted or
    expired since: it is not stored). Queued for the notifications as the core's own
    alerts are."""
    try:
        alert_id = uuid.UUID(str(alert.get("id")))
        camera_id = uuid.UUID(str(alert.get("camera_id")))
        subject_id = uuid.UUID(str(alert.get("subject_id")))
        score = float(alert["score"])
        threshold = float(alert["threshold"])
        model_id = str(alert["model_id"])[:100]
        occurred_at = parse_utc(str(alert["occurred_at"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise EdgeRefused(f"an alert needs id, camera_id, subject_id, score, threshold, "
                          f"model_id and occurred_at ({exc})", 422) from None  # fmt: skip
    if not (np.isfinite(score) and np.isfinite(threshold)):
        raise EdgeRefused("score and threshold must be numbers", 422)
    camera = session.get(Camera, camera_id)
    if camera is None or camera.site_id != edge.site_id:
        raise EdgeRefused("the alert names a camera that is not at this edge's site", 403)
    existing = session.get(Alert, alert_id)
    name = f"{camera.site.name}/{camera.name}"
    if existing is not None:
        if existing.camera_id != camera.id or existing.subject_id != subject_id:
            raise EdgeRefused("an alert with this id exists for another camera or entry", 409)
        return Ingested(None, name)
    if occurred_at > utcnow() + dt.timedelta(minutes=5):
        raise EdgeRefused("the alert's time is in the future", 422)
    crop = _snapshot(alert.get("snapshot"), settings.edge)
    probe = _probe(alert.get("probe"), None)
    subject = session.get(Subject, subject_id)
    if subject is not None and subject.organisation_id != edge.organisation_id:
        raise EdgeRefused("the alert names an entry of another organisation", 403)
    if subject is not None and not any(site.id == edge.site_id for site in subject.sites):
        raise EdgeRefused("the alert names an entry not searched at this edge's site", 403)
    stored = record_alert(
        session, store, camera, subject_id, score=score, threshold=threshold,
        model_id=model_id, probe=probe, crop=crop, sighting=_sighting(alert.get("sighting")),
        occurred_at=occurred_at, alert_id=alert_id,
    )  # fmt: skip
    if stored is None:
        raise EdgeRefused(
            "its entry may no longer be searched at this site (erased, suspended, "
            "restricted or expired since): not stored",
            410,
        )
    queue_alert_event(session, store, settings, stored, "alert.created", f"edge:{edge.name}")
    label = session.get_one(Subject, stored.subject_id).label
    return Ingested(
        StoredAlert(
            str(stored.id),
            str(subject_id),
            label,
            round(stored.score, 4),
            round(stored.threshold, 4),
            stored.occurred_at.isoformat(),
            str(camera.site_id),
        ),
        name,
    )


def _sighting(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    return {
        str(key)[:50]: item
        for key, item in list(value.items())[:20]
        if item is None or (isinstance(item, (int, float)) and not isinstance(item, bool))
    }


def ingest_audit(session: Session, keys: KeyRing, edge: Edge, events: list[dict[str, Any]]) -> int:
    """Verify a batch of the edge's audit events against its chain and record them in
    the organisation's audit log; returns the edge's chain length now. Events the core
    already holds (a batch sent again after a lost answer) are checked and skipped.
    A broken chain is refused (EdgeRefused, 422) and nothing of the batch is kept."""
    if not isinstance(events, list) or len(events) > MAX_AUDIT_BATCH:
        raise EdgeRefused(f"send at most {MAX_AUDIT_BATCH} audit events at once", 422)
    if edge.audit_key_encrypted is None:
        raise EdgeRefused("this edge has no audit key", 409)
    key = keys.decrypt(edge.audit_key_encrypted, _audit_key_context(edge.id))
    head, count = edge.audit_head, edge.audit_count
    for event in events:
        if not isinstance(event, dict):
            raise EdgeRefused("an audit event must be an object", 422)
        try:
            sequence = int(event["sequence"])
            previous = bytes.fromhex(str(event["previous_mac"]))
            mac = bytes.fromhex(str(event["mac"]))
        except (KeyError, TypeError, ValueError):
            raise EdgeRefused("an audit event needs sequence, previous_mac and mac", 422) from None
        if sequence <= count:
            continue  # already recorded; the chain from the head on is what is checked
        if sequence != count + 1 or not hmac.compare_digest(previous, head):
            raise EdgeRefused(
                f"the edge's audit chain breaks at event {sequence} "
                f"(the core holds {count} events): events are missing or were changed",
                422,
            )
        if not hmac.compare_digest(event_mac(key, event, head), mac):
            raise EdgeRefused(
                f"the edge's audit event {sequence} does not match its MAC: it was changed",
                422,
            )
        details = event.get("details") if isinstance(event.get("details"), dict) else {}
        audit.record(
            session, keys, edge.organisation_id, f"edge:{edge.name}",
            f"edge.{str(event.get('action'))[:80]}",
            str(event.get("object_type"))[:50] if event.get("object_type") else None,
            str(event.get("object_id"))[:100] if event.get("object_id") else None,
            edge_sequence=sequence, edge_at=str(event.get("at"))[:40], **_flat(details),
        )  # fmt: skip
        head, count = mac, sequence
    edge.audit_head, edge.audit_count = head, count
    return count


def _flat(details: dict[str, Any]) -> dict[str, Any]:
    """An edge event's details as the core's audit log takes them (scalars only)."""
    return {
        f"edge_{str(key)[:40]}": value if isinstance(value, (str, int, float, bool)) else str(value)
        for key, value in list(details.items())[:20]
    }
