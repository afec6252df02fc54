"""``/api/alerts`` by API token: the list by status, one alert with its reviews, band,
warnings and incidents (never the probe vector), its snapshot, and reviews with the
same rules as the pages; site scoping and the audit trail."""

from __future__ import annotations

import uuid

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.support.alerts import BRIEF, SCORE, THRESHOLD, add_york, audit_trail, raise_alert
from tests.support.shop import Shop, Sighting, enrol_in
from tests.support.web import api_token
from watchkeeper.pipeline import FaceModels
from watchkeeper.store.models import Alert, AlertStatus, Camera, FaceImage, Review

CARD_FIELDS = {
    "id", "occurred_at", "camera", "site", "subject", "subject_label", "band", "score",
    "threshold", "status", "model", "sighting", "flags", "expires_at", "photos", "incidents",
    "reviews", "confirmations_needed", "confirmed_by",
}  # fmt: skip


def numbers_in(value: object) -> list[float]:
    """Every number anywhere in a JSON value (a vector would add 128)."""
    if isinstance(value, dict):
        return [n for item in value.values() for n in numbers_in(item)]
    if isinstance(value, list):
        return [n for item in value for n in numbers_in(item)]
    return [value] if isinstance(value, int | float) and not isinstance(value, bool) else []


def review_count(shop: Shop) -> int:
    with shop.tx() as tx:
        return tx.session.scalar(select(func.count()).select_from(Review))


def test_one_alert_has_its_band_warnings_incidents_and_photos_and_never_a_vector(
    web: TestClient, shop: Shop, biden: uuid.UUID, seen: Sighting, alert_id: str
) -> None:
    response = web.get(f"/api/alerts/{alert_id}", headers=api_token(shop, "dave"))
    assert response.status_code == 200
    card = response.json()
    assert set(card) == CARD_FIELDS
    assert card["id"] == alert_id
    assert card["subject"] == str(biden)
    assert (card["score"], card["threshold"], card["band"]) == (SCORE, THRESHOLD, "strong")
    assert (card["camera"], card["site"], card["status"]) == ("Leeds/door", "Leeds", "pending")
    assert card["sighting"] == BRIEF
    assert [flag.split(":")[0] for flag in card["flags"]] == ["Brief sighting"]
    (incident,) = card["incidents"]
    assert incident["category"] == "theft"
    assert incident["site"] == "Leeds"
    assert incident["description"] == "took razor blades from the front shelf"
    with shop.tx() as tx:
        photos = {
            str(i) for i in tx.session.scalars(select(FaceImage.id).filter_by(subject_id=biden))
        }
    assert set(card["photos"]) == photos
    assert card["reviews"] == []
    assert card["confirmations_needed"] == 2
    assert len(numbers_in(card)) < 10, "scores and counts only, never a 128-number vector"
    assert audit_trail(shop, "alert.view") == [("dave", "alert.view", alert_id)]


def test_the_snapshot_is_a_jpeg_of_the_crop(
    web: TestClient, shop: Shop, seen: Sighting, alert_id: str
) -> None:
    response = web.get(f"/api/alerts/{alert_id}/snapshot", headers=api_token(shop, "erin"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    crop = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    assert crop.shape == seen.chip.shape
    assert audit_trail(shop, "alert.snapshot") == [("erin", "alert.snapshot", alert_id)]


def test_the_list_filters_by_status_and_shows_bands(
    web: TestClient, shop: Shop, biden: uuid.UUID, seen: Sighting
) -> None:
    strong = raise_alert(shop, biden, seen)
    weak = raise_alert(shop, biden, seen, score=0.47)
    carol = api_token(shop, "carol")
    rejected = web.post(f"/api/alerts/{strong}/reviews", json={"decision": "reject"}, headers=carol)
    assert rejected.status_code == 201
    for status, expected in (
        (None, [(weak, "weak", "pending"), (strong, "strong", "rejected")]),
        ("pending", [(weak, "weak", "pending")]),
        ("rejected", [(strong, "strong", "rejected")]),
        ("confirmed", []),
    ):
        params = {} if status is None else {"status": status}
        listed = web.get("/api/alerts", params=params, headers=carol)
        assert listed.status_code == 200
        assert [(a["id"], a["band"], a["status"]) for a in listed.json()] == expected
        assert all("sighting" not in a for a in listed.json())
    assert web.get("/api/alerts", params={"status": "maybe"}, headers=carol).status_code == 422


@pytest.mark.parametrize(
    ("decisions", "status"),
    [
        ([("dave", "confirm"), ("erin", "confirm")], AlertStatus.CONFIRMED),
        ([("dave", "confirm")], AlertStatus.PENDING),
        ([("erin", "reject")], AlertStatus.REJECTED),
        ([("dave", "unsure")], AlertStatus.UNSURE),
    ],
)
def test_reviews_by_api(
    web: TestClient,
    shop: Shop,
    alert_id: str,
    decisions: list[tuple[str, str]],
    status: AlertStatus,
) -> None:
    for name, decision in decisions:
        body = {"decision": decision, "note": f"{name} compared them"}
        response = web.post(
            f"/api/alerts/{alert_id}/reviews", json=body, headers=api_token(shop, name)
        )
        assert response.status_code == 201, response.text
    card = response.json()
    assert card["status"] == status.value
    assert [(r["user"], r["decision"]) for r in card["reviews"]] == decisions
    assert card["confirmed_by"] == [name for name, d in decisions if d == "confirm"]
    assert [actor for actor, _, _ in audit_trail(shop, "alert.review")] == [
        name for name, _ in decisions
    ]
    with shop.tx() as tx:
        assert tx.session.get_one(Alert, uuid.UUID(alert_id)).status == status


@pytest.mark.parametrize(
    ("owner", "body", "status", "detail"),
    [
        ("dave", {"decision": "maybe"}, 422, None),
        ("dave", {}, 422, None),
        ("dave", {"decision": "confirm", "note": "x" * 2001}, 422, None),
        ("bob", {"decision": "confirm"}, 403, "may not review alerts"),
        ("frank", {"decision": "confirm"}, 403, "may not review alerts"),
        (None, {"decision": "confirm"}, 401, "a valid API token is needed"),
    ],
)
def test_bad_or_unauthorised_reviews_store_nothing(
    web: TestClient,
    shop: Shop,
    alert_id: str,
    owner: str | None,
    body: dict,
    status: int,
    detail: str | None,
) -> None:
    headers = api_token(shop, owner) if owner else {}
    response = web.post(f"/api/alerts/{alert_id}/reviews", json=body, headers=headers)
    assert response.status_code == status
    if detail:
        assert detail in response.json()["detail"]
    assert review_count(shop) == 0
    assert audit_trail(shop, "alert.review") == []


def test_the_same_reviewer_cannot_decide_twice(web: TestClient, shop: Shop, alert_id: str) -> None:
    dave = api_token(shop, "dave")
    path = f"/api/alerts/{alert_id}/reviews"
    assert web.post(path, json={"decision": "confirm"}, headers=dave).status_code == 201
    again = web.post(path, json={"decision": "confirm"}, headers=dave)
    assert again.status_code == 422
    assert "a second decision must come from someone else" in again.json()["detail"]
    assert review_count(shop) == 1


@pytest.mark.parametrize("owner", ["bob", "frank", "alice"])
def test_every_role_that_may_view_reads_alerts(
    web: TestClient, shop: Shop, alert_id: str, owner: str
) -> None:
    headers = api_token(shop, owner)
    assert [a["id"] for a in web.get("/api/alerts", headers=headers).json()] == [alert_id]
    assert web.get(f"/api/alerts/{alert_id}", headers=headers).status_code == 200


def test_each_token_sees_only_its_users_sites(
    web: TestClient, shop: Shop, face_models: FaceModels, seen: Sighting
) -> None:
    york = add_york(shop)
    with shop.tx() as tx:
        both = [tx.site, tx.session.get_one(Camera, york).site]
        subject = enrol_in(tx, shop, face_models, "Joseph_Biden", sites=both).id
    leeds_alert = raise_alert(shop, subject, seen)
    york_alert = raise_alert(shop, subject, seen, camera_id=york)
    for name, mine, theirs in (
        ("dave", leeds_alert, york_alert),
        ("yvonne", york_alert, leeds_alert),
    ):
        headers = api_token(shop, name)
        assert [a["id"] for a in web.get("/api/alerts", headers=headers).json()] == [mine]
        assert web.get(f"/api/alerts/{mine}", headers=headers).status_code == 200
        for path in (f"/api/alerts/{theirs}", f"/api/alerts/{theirs}/snapshot"):
            assert web.get(path, headers=headers).status_code == 404
        review = web.post(
            f"/api/alerts/{theirs}/reviews", json={"decision": "confirm"}, headers=headers
        )
        assert review.status_code == 404
    assert review_count(shop) == 0
    every = web.get("/api/alerts", headers=api_token(shop, "frank")).json()
    assert {a["id"] for a in every} == {leeds_alert, york_alert}


def test_an_unknown_alert_is_not_found(web: TestClient, shop: Shop) -> None:
    headers = api_token(shop, "dave")
    for path in (f"/api/alerts/{uuid.uuid4()}", "/api/alerts/zzz/snapshot"):
        response = web.get(path, headers=headers)
        assert response.status_code == 404
        assert (
            response.json()["detail"].startswith("no alert")
            or "neither" in response.json()["detail"]
        )
