"""The core's edge routes over real HTTP semantics (TestClient on the app): enrolment,
the long-poll sync woken by a change, alerts stored once, refusals answered with their
status and audited, revocation at once, and the edges on the cameras page."""

from __future__ import annotations

import base64
import threading
import uuid
from typing import Any

import cv2
import pytest
from fastapi.testclient import TestClient

from tests.support.alerts import add_york, audit_trail
from tests.support.edges import issue_code
from tests.support.shop import Shop, Sighting
from tests.support.web import sign_in
from watchkeeper.config import Settings
from watchkeeper.edge.protocol import GENESIS, event_mac, vector_text
from watchkeeper.governance import edges as chain
from watchkeeper.governance.subjects import suspend
from watchkeeper.store.models import Subject


@pytest.fixture
def edge(web: TestClient, shop: Shop, store_settings: Settings) -> dict[str, Any]:
    answer = web.post(
        "/api/edge/enrol",
        json={"code": issue_code(shop, store_settings, name="box"), "version": "t"},
    )
    assert answer.status_code == 201, answer.text
    return answer.json() | {"headers": {"Authorization": f"Bearer {answer.json()['credential']}"}}


def test_a_wrong_code_is_refused_and_audited(web: TestClient, shop: Shop) -> None:
    answer = web.post("/api/edge/enrol", json={"code": "wkc_guessed"})
    assert answer.status_code == 401
    assert [a for _, a, _ in audit_trail(shop, "edge.enrol_refused")] == ["edge.enrol_refused"]


def test_the_long_poll_answers_when_the_watchlist_changes(
    web: TestClient, shop: Shop, edge: dict[str, Any], biden: uuid.UUID
) -> None:
    first = web.post("/api/edge/sync", params={"since": 0}, json={}, headers=edge["headers"]).json()
    assert [entry["id"] for entry in first["upserts"]] == [str(biden)]
    answers: list[dict[str, Any]] = []
    status = {"version": "t", "matching": True, "cameras": [{"name": "Leeds/door"}]}

    def wait_for_a_change() -> None:
        params = {"since": first["revision"], "wait": 60}
        answer = web.post("/api/edge/sync", params=params, json=status, headers=edge["headers"])
        answers.append(answer.json())

    waiting = threading.Thread(target=wait_for_a_change)
    waiting.start()
    with shop.tx() as tx:
        suspend(tx.session, shop.store.keys, tx.organisation, tx.user("carol"),
                tx.session.get_one(Subject, biden), "under review")  # fmt: skip
    waiting.join(60)
    assert not waiting.is_alive(), "the change woke the waiting edge"
    assert answers[0]["removals"] == [str(biden)]
    assert answers[0]["revision"] > first["revision"]


def alert_body(seen: Sighting, camera_id: uuid.UUID, subject: uuid.UUID) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()), "camera_id": str(camera_id), "subject_id": str(subject),
        "score": 0.7, "threshold": 0.5, "model_id": seen.model_id,
        "occurred_at": chain.utcnow().isoformat(), "probe": vector_text(seen.vector),
        "snapshot": base64.b64encode(cv2.imencode(".jpg", seen.chip)[1].tobytes()).decode(),
    }  # fmt: skip


def test_an_alert_is_stored_once_and_a_forged_one_refused_and_audited(
    web: TestClient, shop: Shop, edge: dict[str, Any], biden: uuid.UUID, seen: Sighting
) -> None:
    body = alert_body(seen, shop.camera_id, biden)
    first = web.post("/api/edge/alerts", json=body, headers=edge["headers"])
    again = web.post("/api/edge/alerts", json=body, headers=edge["headers"])
    assert (first.status_code, first.json()["stored"]) == (201, "now")
    assert (again.status_code, again.json()["stored"]) == (200, "before")
    york_camera = add_york(shop)
    forged = web.post(
        "/api/edge/alerts", json=alert_body(seen, york_camera, biden), headers=edge["headers"]
    )
    assert forged.status_code == 403
    big = alert_body(seen, shop.camera_id, biden) | {"snapshot": "A" * (700 * 1024)}
    assert web.post("/api/edge/alerts", json=big, headers=edge["headers"]).status_code == 413
    refusals = audit_trail(shop, "edge.alert_refused")
    assert [actor for actor, _, _ in refusals] == ["edge:box", "edge:box"]


def test_a_tampered_audit_batch_is_refused_and_audited(
    web: TestClient, shop: Shop, edge: dict[str, Any]
) -> None:
    key = bytes.fromhex(edge["audit_key"])
    event = {"sequence": 1, "at": chain.utcnow().isoformat(), "action": "camera.start",
             "object_type": "camera", "object_id": "door", "details": {}}  # fmt: skip
    mac = event_mac(key, event, GENESIS)
    good = event | {"previous_mac": GENESIS.hex(), "mac": mac.hex()}
    changed = good | {"action": "camera.stop"}
    refused = web.post("/api/edge/audit", json={"events": [changed]}, headers=edge["headers"])
    assert refused.status_code == 422
    assert len(audit_trail(shop, "edge.audit_refused")) == 1
    accepted = web.post("/api/edge/audit", json={"events": [good]}, headers=edge["headers"])
    assert accepted.json() == {"recorded": 1}
    assert [a for _, a, _ in audit_trail(shop, "edge.camera.start")] == ["edge.camera.start"]


def test_a_revoked_edge_is_refused_at_once(
    web: TestClient, shop: Shop, edge: dict[str, Any]
) -> None:
    with shop.tx() as tx:
        chain.revoke(tx.session, shop.store.keys, tx.organisation, tx.user("alice"), "box")
    answer = web.post("/api/edge/sync", json={}, headers=edge["headers"])
    assert answer.status_code == 401
    assert "revoked" in answer.json()["detail"]


def test_the_cameras_page_shows_each_edge_with_its_cameras(
    web: TestClient, shop: Shop, edge: dict[str, Any]
) -> None:
    status = {"version": "9.9", "staleness_s": 3.0, "max_staleness_s": 900, "matching": True,
              "outbox": 2, "cameras": [{"name": "Leeds/door", "state": "running", "fps": 4.9,
                                        "restarts": 1, "error": None,
                                        "decision_delay_s": 0.42}]}  # fmt: skip
    assert web.post("/api/edge/sync", json=status, headers=edge["headers"]).status_code == 200
    page = sign_in(web, "alice").client.get("/cameras").text
    row = page[page.index('id="edge-') :].split("</tr>")[0]
    for shown in (
        "box",
        "Leeds",
        "9.9",
        "3 s (limit 900 s)",
        "yes",
        "Leeds/door: running, 4.9 fps, alert delay 0.42 s, 1 restart(s)",
    ):
        assert shown in row, shown
    assert "run by the store&#39;s edge" in page or "run by the store's edge" in page
