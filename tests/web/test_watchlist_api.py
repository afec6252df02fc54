"""The watchlist API: incidents and entries for integrations, by API token."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.support.data import lfw_photos
from tests.support.shop import Shop, enrol_subject
from tests.support.web import api_token
from watchkeeper.pipeline import FaceModels
from watchkeeper.store.models import FaceImage, Subject

BIDEN = [p.read_bytes() for p in lfw_photos("Joseph_Biden") if p.name != "Joseph_Biden_0002.jpg"]
FORBIDDEN_KEYS = {"vector", "vector_encrypted", "template", "templates", "key", "token_hash"}


@pytest.fixture
def app_models(web: TestClient, face_models: FaceModels) -> FaceModels:
    web.app.state.face_models = face_models  # type: ignore[attr-defined]
    return face_models


def keys_of(document: object) -> set[str]:
    if isinstance(document, dict):
        return set(document) | {k for v in document.values() for k in keys_of(v)}
    if isinstance(document, list):
        return {k for v in document for k in keys_of(v)}
    return set()


def propose(web: TestClient, shop: Shop, who: str, photos: list[bytes], **fields: str):
    data = {
        "label": "woman, red coat",
        "reason": "threatened staff",
        "incidents": str(shop.incident_id),
        "attest_not_child_or_vulnerable": "true",
        **fields,
    }
    files = [("photos", (f"p{i}.jpg", p, "image/jpeg")) for i, p in enumerate(photos)]
    return web.post("/api/subjects", data=data, files=files, headers=api_token(shop, who))


def counts(shop: Shop) -> tuple[int, int, int]:
    with shop.tx() as tx:
        subjects = tx.session.scalar(select(func.count()).select_from(Subject))
        images = tx.session.scalar(select(func.count()).select_from(FaceImage))
    return subjects or 0, images or 0, len(list(shop.store.files.all_files()))


def test_the_whole_flow_over_the_api(web: TestClient, shop: Shop, app_models: FaceModels) -> None:
    bob = api_token(shop, "bob")
    made = web.post(
        "/api/incidents",
        json={"site": "Leeds", "category": "threats", "description": "shouted at the till"},
        headers=bob,
    )
    assert made.status_code == 201, made.text
    incident = made.json()
    assert incident["reporter"] == "bob"
    listed = web.get("/api/incidents", headers=bob).json()
    assert {i["id"] for i in listed} >= {incident["id"], str(shop.incident_id)}

    created = propose(web, shop, "bob", BIDEN[:2], incidents=incident["id"])
    assert created.status_code == 201, created.text
    entry = created.json()
    assert entry["status"] == "pending"
    assert [i["id"] for i in entry["incidents"]] == [incident["id"]]
    assert len(entry["images"]) == 2
    assert all(0 < image["quality"] <= 1 for image in entry["images"])
    assert not keys_of(entry) & FORBIDDEN_KEYS
    assert counts(shop) == (1, 2, 2)

    url = f"/api/subjects/{entry['id']}"
    assert web.post(f"{url}/approve", headers=bob).status_code == 403
    carol = api_token(shop, "carol")
    approved = web.post(f"{url}/approve", headers=carol)
    assert approved.status_code == 200
    assert approved.json()["approved_by"] == "carol"
    new_expiry = (dt.date.today() + dt.timedelta(days=100)).isoformat()
    renewed = web.post(
        f"{url}/renew", json={"expires_at": new_expiry, "reason": "seen again"}, headers=carol
    )
    assert renewed.status_code == 200
    assert renewed.json()["expires_at"].startswith(new_expiry)
    photo = web.get(f"{url}/photos/{entry['images'][0]['id']}", headers=api_token(shop, "dave"))
    assert photo.status_code == 200
    assert photo.headers["content-type"] == "image/jpeg"
    assert web.get(f"{url}/photos/{entry['images'][0]['id']}x", headers=carol).status_code == 404
    summary = web.get("/api/subjects", headers=api_token(shop, "dave")).json()
    assert [(s["label"], s["status"]) for s in summary] == [("woman, red coat", "active")]
    assert not keys_of(summary) & FORBIDDEN_KEYS

    frank = api_token(shop, "frank")
    assert web.delete(url, params={"reason": "withdrawn"}, headers=frank).status_code == 403
    assert web.delete(url, headers=carol).status_code == 422  # a reason is needed
    erased = web.delete(url, params={"reason": "withdrawn"}, headers=carol)
    assert erased.status_code == 200
    assert erased.json()["face_images"] == 2
    assert counts(shop) == (0, 0, 0)
    assert web.get(url, headers=carol).status_code == 404


@pytest.mark.parametrize(
    ("action", "body", "who", "status"),
    [
        ("suspend", {"note": "checking"}, "carol", 200),
        ("suspend", {"note": "checking"}, "bob", 403),
        ("suspend", {"note": ""}, "carol", 422),
        ("restrict", {"restricted": True, "note": "asked"}, "carol", 200),
        ("restrict", {"restricted": True}, "dave", 403),
        ("renew", {"expires_at": "2020-01-01", "reason": "x"}, "carol", 422),
        ("approve", None, "carol", 422),  # already active
    ],
)
def test_actions_by_role(
    web: TestClient,
    shop: Shop,
    face_models: FaceModels,
    action: str,
    body: dict | None,
    who: str,
    status: int,
) -> None:
    subject_id = enrol_subject(shop, face_models, "Joseph_Biden")
    response = web.post(
        f"/api/subjects/{subject_id}/{action}", json=body, headers=api_token(shop, who)
    )
    assert response.status_code == status, response.text


@pytest.mark.parametrize(
    ("photo", "label"),
    [
        (b"not an image at all", "not an image"),
        (lfw_photos("Joseph_Biden")[1].read_bytes(), "two or more faces"),
    ],
    ids=["not-an-image", "two-faces"],
)
def test_a_refused_photo_answers_422_with_its_badge(
    web: TestClient, shop: Shop, app_models: FaceModels, photo: bytes, label: str
) -> None:
    response = propose(web, shop, "bob", [BIDEN[0], photo])
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert [(p["name"], p["label"]) for p in detail["photos"]] == [("p1.jpg", label)]
    assert counts(shop) == (0, 0, 0)


def test_limits_and_roles_for_proposals(
    web: TestClient, shop: Shop, app_models: FaceModels
) -> None:
    huge = propose(web, shop, "bob", [BIDEN[0] + bytes(11_000_000)])
    assert huge.status_code == 413
    assert "limit per photo" in huge.json()["detail"]
    assert propose(web, shop, "dave", [BIDEN[0]]).status_code == 403
    assert web.post("/api/subjects", data={"label": "x"}).status_code == 401
    assert counts(shop) == (0, 0, 0)
    assert json.dumps(web.get("/api/openapi.json").json()).count("/api/subjects") >= 1
