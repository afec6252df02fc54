"""The core's side of a chain (governance.edges): enrolment, what an edge is sent, and
what it may send back. Real databases (SQLite and PostgreSQL), real LFW faces."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import pytest
from sqlalchemy import select

from tests.support.alerts import add_york, audit_trail
from tests.support.edges import issue_code
from tests.support.shop import Shop, Sighting, Tx, enrol_in, enrol_subject
from watchkeeper.config import Settings
from watchkeeper.edge.protocol import GENESIS, event_mac, vector_of, vector_text
from watchkeeper.errors import EdgeRefused, PolicyError
from watchkeeper.governance import audit
from watchkeeper.governance import edges as chain
from watchkeeper.governance.subjects import erase, restrict, suspend
from watchkeeper.pipeline import FaceModels
from watchkeeper.store.models import Alert, Camera, Edge, Subject


def add_and_enrol(shop: Shop, settings: Settings, site: str = "Leeds") -> chain.Enrolment:
    code = issue_code(shop, settings, site)
    with shop.store.session() as session:
        return chain.enrol(session, shop.store.keys, code, "test")


def enrol_in_sites(tx: Tx, shop: Shop, models: FaceModels, person: str, sites: list) -> uuid.UUID:
    return enrol_in(tx, shop, models, person, sites=sites).id


def changes(
    shop: Shop, settings: Settings, credential: str, since: int, digest: bool = False
) -> dict[str, Any]:
    with shop.store.session() as session:
        edge = chain.authenticated(session, credential)
        return chain.changes_for(session, shop.store.keys, settings, edge, since, digest)


def test_an_enrolment_code_works_once_and_only_for_an_admin(
    shop: Shop, store_settings: Settings
) -> None:
    with shop.tx() as tx, pytest.raises(PolicyError, match="manage the organisation"):
        chain.add_edge(tx.session, shop.store.keys, tx.organisation, tx.user("carol"),
                       "Leeds", None, store_settings.edge)  # fmt: skip
    with shop.tx() as tx:
        added = chain.add_edge(tx.session, shop.store.keys, tx.organisation, tx.user("alice"),
                               "Leeds", "leeds-box", store_settings.edge)  # fmt: skip
    with shop.store.session() as session:
        done = chain.enrol(session, shop.store.keys, added.code, "1.0")
        credential = done.credential
    with shop.store.session() as session, pytest.raises(EdgeRefused, match="not valid") as refused:
        chain.enrol(session, shop.store.keys, added.code, "1.0")
    assert refused.value.status == 401
    with shop.store.session() as session:
        assert chain.authenticated(session, credential).name == "leeds-box"
        assert chain.edge_run_sites(session, shop.organisation_id) == {shop.site_id}
    assert [a for _, a, _ in audit_trail(shop, "edge.add", "edge.enrol")] == [
        "edge.add",
        "edge.enrol",
    ]


def test_an_expired_code_is_refused(shop: Shop, store_settings: Settings) -> None:
    with shop.tx() as tx:
        added = chain.add_edge(tx.session, shop.store.keys, tx.organisation, tx.user("alice"),
                               "Leeds", None, store_settings.edge)  # fmt: skip
        tx.session.get_one(Edge, added.edge.id).code_expires_at = chain.utcnow() - dt.timedelta(
            seconds=1
        )
    with shop.store.session() as session, pytest.raises(EdgeRefused, match="expired"):
        chain.enrol(session, shop.store.keys, added.code, "1.0")


def test_a_revoked_edge_is_refused_at_once(shop: Shop, store_settings: Settings) -> None:
    done = add_and_enrol(shop, store_settings)
    with shop.tx() as tx:
        chain.revoke(tx.session, shop.store.keys, tx.organisation, tx.user("alice"), done.edge.name)
    with shop.store.session() as session, pytest.raises(EdgeRefused, match="revoked") as refused:
        chain.authenticated(session, done.credential)
    assert refused.value.status == 401
    with shop.store.session() as session:
        assert chain.edge_run_sites(session, shop.organisation_id) == set()


def test_an_edge_gets_its_sites_entries_only_and_then_only_what_changed(
    shop: Shop, store_settings: Settings, face_models: FaceModels
) -> None:
    add_york(shop)
    leeds = enrol_subject(shop, face_models, "Joseph_Biden", photos=2)
    with shop.tx() as tx:
        york_site = tx.session.scalars(select(Camera).where(Camera.name == "gate")).one().site
        york = enrol_in_sites(tx, shop, face_models, "George_W_Bush", [york_site])
    pending = enrol_subject(shop, face_models, "Colin_Powell", approve_by=None)
    done = add_and_enrol(shop, store_settings)

    first = changes(shop, store_settings, done.credential, 0)
    assert first["full"] is True
    assert [entry["id"] for entry in first["upserts"]] == [str(leeds)], "only Leeds's active entry"
    entry = first["upserts"][0]
    assert set(entry) == {"id", "expires_at", "templates"}, "no label, reason or photo"
    assert len(entry["templates"]) == 2
    with shop.store.session() as session:
        subject = session.get_one(Subject, leeds)
        assert subject.label not in repr(first)
    assert [c["name"] for c in first["cameras"]] == ["door"]
    assert first["cameras"][0]["source"] == "rtsp://cam:pw@10.0.0.9/s"
    revision = first["revision"]
    assert changes(shop, store_settings, done.credential, revision)["upserts"] == []

    with shop.tx() as tx:  # a change at York only: Leeds's edge is told to drop an id it never had
        suspend(tx.session, shop.store.keys, tx.organisation, tx.user("carol"),
                tx.session.get_one(Subject, york), "test")  # fmt: skip
    delta = changes(shop, store_settings, done.credential, revision)
    assert (delta["full"], delta["upserts"], delta["removals"]) == (False, [], [str(york)])

    with shop.tx() as tx:
        restrict(tx.session, shop.store.keys, tx.organisation, tx.user("carol"),
                 tx.session.get_one(Subject, leeds), True, "asked")  # fmt: skip
    delta = changes(shop, store_settings, done.credential, delta["revision"])
    assert delta["removals"] == [str(leeds)]
    with shop.tx() as tx:
        restrict(tx.session, shop.store.keys, tx.organisation, tx.user("carol"),
                 tx.session.get_one(Subject, leeds), False, "lifted")  # fmt: skip
    delta = changes(shop, store_settings, done.credential, delta["revision"], digest=True)
    assert [e["id"] for e in delta["upserts"]] == [str(leeds)]
    assert delta["digest"] == [str(leeds)]
    with shop.tx() as tx:
        erase(tx.session, shop.store, tx.organisation, tx.user("alice"),
              tx.session.get_one(Subject, leeds), "erasure request")  # fmt: skip
    delta = changes(shop, store_settings, done.credential, delta["revision"])
    assert (delta["removals"], delta["upserts"]) == ([str(leeds)], [])
    assert pending  # a proposal is never sent
    behind = changes(shop, store_settings, done.credential, delta["revision"] + 100)
    assert behind["full"] is True, "a core behind the edge (restored) sends everything"


def snapshot(chip: np.ndarray) -> str:
    return base64.b64encode(cv2.imencode(".jpg", chip)[1].tobytes()).decode()


def alert_from(
    seen: Sighting, camera_id: uuid.UUID, subject_id: uuid.UUID, **changes: Any
) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()), "camera_id": str(camera_id), "subject_id": str(subject_id),
        "score": 0.7, "threshold": 0.5, "model_id": seen.model_id,
        "occurred_at": chain.utcnow().isoformat(), "probe": vector_text(seen.vector),
        "snapshot": snapshot(seen.chip), "sighting": {"frames": 4, "seconds": 1.2},
    } | changes  # fmt: skip


@pytest.fixture
def leeds_edge(
    shop: Shop, store_settings: Settings, face_models: FaceModels
) -> tuple[chain.Enrolment, uuid.UUID]:
    subject = enrol_subject(shop, face_models, "Joseph_Biden")
    return add_and_enrol(shop, store_settings), subject


def ingest(
    shop: Shop, settings: Settings, credential: str, alert: dict[str, Any]
) -> chain.Ingested:
    with shop.store.session() as session:
        edge = chain.authenticated(session, credential)
        return chain.ingest_alert(session, shop.store, settings, edge, alert)


def test_an_alert_from_an_edge_is_stored_once(
    shop: Shop, store_settings: Settings, leeds_edge: tuple[chain.Enrolment, uuid.UUID],
    sightings: Callable[[str, int], Sighting],
) -> None:  # fmt: skip
    done, subject = leeds_edge
    alert = alert_from(sightings("Joseph_Biden", 3), shop.camera_id, subject)
    first = ingest(shop, store_settings, done.credential, alert)
    assert first.stored is not None
    assert first.stored.alert_id == alert["id"]
    again = ingest(shop, store_settings, done.credential, alert)
    assert again.stored is None, "the same id again is already stored"
    with shop.store.session() as session:
        alerts = session.scalars(select(Alert)).all()
        assert [str(a.id) for a in alerts] == [alert["id"]]
        assert alerts[0].occurred_at.isoformat() == alert["occurred_at"]


def other_camera(shop: Shop) -> uuid.UUID:
    return add_york(shop)


Change = Callable[[Shop, dict[str, Any]], dict[str, Any]]
NAN_PROBE = base64.b64encode(np.full(128, np.nan, "<f4").tobytes()).decode()
NOT_AN_IMAGE = base64.b64encode(b"GIF89a" * 40).decode()
AT_THIS_SITE = "not at this edge's site"


def tomorrow() -> str:
    return (chain.utcnow() + dt.timedelta(days=1)).isoformat()


BAD_ALERTS: list[tuple[str, Change, int, str]] = [
    (
        "camera of another site",
        lambda s, a: a | {"camera_id": str(other_camera(s))},
        403,
        AT_THIS_SITE,
    ),
    ("unknown camera", lambda s, a: a | {"camera_id": str(uuid.uuid4())}, 403, AT_THIS_SITE),
    ("oversized snapshot", lambda s, a: a | {"snapshot": "A" * (700 * 1024)}, 413, "larger than"),
    ("not an image", lambda s, a: a | {"snapshot": NOT_AN_IMAGE}, 422, "not an image"),
    ("not base64", lambda s, a: a | {"snapshot": "%%%"}, 422, "not base64"),
    ("probe of no numbers", lambda s, a: a | {"probe": NAN_PROBE}, 422, "non-numbers"),
    ("no id", lambda s, a: {k: v for k, v in a.items() if k != "id"}, 422, "needs id"),
    ("in the future", lambda s, a: a | {"occurred_at": tomorrow()}, 422, "future"),
    ("unknown entry", lambda s, a: a | {"subject_id": str(uuid.uuid4())}, 410, "no longer be"),
]


@pytest.mark.parametrize(
    ("case", "change", "status", "message"), BAD_ALERTS, ids=[c[0] for c in BAD_ALERTS]
)
def test_a_bad_alert_from_an_edge_is_refused_and_nothing_is_stored(
    shop: Shop, store_settings: Settings, leeds_edge: tuple[chain.Enrolment, uuid.UUID],
    sightings: Callable[[str, int], Sighting], case: str,
    change: Callable[[Shop, dict[str, Any]], dict[str, Any]], status: int, message: str,
) -> None:  # fmt: skip
    done, subject = leeds_edge
    alert = change(shop, alert_from(sightings("Joseph_Biden", 3), shop.camera_id, subject))
    with pytest.raises(EdgeRefused, match=message) as refused:
        ingest(shop, store_settings, done.credential, alert)
    assert refused.value.status == status
    with shop.store.session() as session:
        assert session.scalars(select(Alert)).all() == []


def test_an_alert_raised_before_an_erasure_is_not_stored_after_it(
    shop: Shop, store_settings: Settings, leeds_edge: tuple[chain.Enrolment, uuid.UUID],
    sightings: Callable[[str, int], Sighting],
) -> None:  # fmt: skip
    done, subject = leeds_edge
    alert = alert_from(sightings("Joseph_Biden", 3), shop.camera_id, subject)
    with shop.tx() as tx:
        erase(tx.session, shop.store, tx.organisation, tx.user("alice"),
              tx.session.get_one(Subject, subject), "request")  # fmt: skip
    with pytest.raises(EdgeRefused) as refused:
        ingest(shop, store_settings, done.credential, alert)
    assert refused.value.status == 410


def edge_events(
    key: bytes, count: int, start: int = 1, head: bytes = GENESIS
) -> list[dict[str, Any]]:
    events = []
    for sequence in range(start, start + count):
        event = {
            "sequence": sequence,
            "at": chain.utcnow().isoformat(),
            "action": "camera.start",
            "object_type": "camera",
            "object_id": "door",
            "details": {"n": sequence},
        }
        mac = event_mac(key, event, head)
        events.append(event | {"previous_mac": head.hex(), "mac": mac.hex()})
        head = mac
    return events


def receive(shop: Shop, credential: str, events: list[dict[str, Any]]) -> int:
    with shop.store.session() as session:
        edge = chain.authenticated(session, credential)
        return chain.ingest_audit(session, shop.store.keys, edge, events)


def test_an_edges_audit_chain_is_verified_and_recorded(
    shop: Shop, store_settings: Settings
) -> None:
    done = add_and_enrol(shop, store_settings)
    events = edge_events(done.audit_key, 3)
    assert receive(shop, done.credential, events) == 3
    assert receive(shop, done.credential, events) == 3, "a batch sent again is skipped"
    recorded = audit_trail(shop, "edge.camera.start")
    assert [actor for actor, _, _ in recorded] == [f"edge:{done.edge.name}"] * 3
    with shop.tx() as tx:
        assert audit.verify(tx.session, shop.store.keys, tx.organisation).intact


TAMPERING: list[tuple[str, Callable[[list[dict[str, Any]]], list[dict[str, Any]]]]] = [
    ("an event changed", lambda e: [e[0], e[1] | {"details": {"n": 99}}, e[2]]),
    ("an event missing", lambda e: [e[0], e[2]]),
    ("events swapped", lambda e: [e[0], e[2], e[1]]),
    ("another key", lambda e: edge_events(b"k" * 32, 3)),
]


@pytest.mark.parametrize(("case", "tamper"), TAMPERING, ids=[c[0] for c in TAMPERING])
def test_a_tampered_edge_audit_chain_is_refused(
    shop: Shop, store_settings: Settings, case: str,
    tamper: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
) -> None:  # fmt: skip
    done = add_and_enrol(shop, store_settings)
    events = edge_events(done.audit_key, 3)
    with pytest.raises(EdgeRefused, match="audit") as refused:
        receive(shop, done.credential, tamper(events))
    assert refused.value.status == 422
    assert audit_trail(shop, "edge.camera.start") == [], "nothing of the batch is kept"


def test_vectors_travel_unchanged() -> None:
    vector = np.random.default_rng(7).standard_normal(128).astype(np.float32)
    assert np.array_equal(vector_of(vector_text(vector)), vector)
