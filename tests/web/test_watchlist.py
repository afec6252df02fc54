"""The watchlist pages: enrolment photos, incidents, entries and what staff may do to them."""

from __future__ import annotations

import uuid

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.support.shop import Shop, enrol_subject
from tests.support.web import PASSWORD, sign_in
from watchkeeper.governance.accounts import set_password
from watchkeeper.governance.organisation import add_site, add_user
from watchkeeper.governance.subjects import FaceModels
from watchkeeper.store.models import AuditEvent, FaceImage, Role


@pytest.fixture
def app_models(web: TestClient, face_models: FaceModels) -> FaceModels:
    """The session's models in the app (instead of loading them again per test)."""
    web.app.state.face_models = face_models  # type: ignore[attr-defined]
    return face_models


def add_york_reporter(shop: Shop, name: str = "yvonne") -> None:
    """A second site, York, and a reporter bound to it only."""
    with shop.tx() as tx:
        alice = tx.user("alice")
        york = add_site(tx.session, shop.store.keys, tx.organisation, alice, "York")
        user = add_user(
            tx.session, shop.store.keys, tx.organisation, alice, name, Role.REPORTER, [york]
        )
        set_password(tx.session, shop.store.keys, user, user, PASSWORD)


def photo_ids(shop: Shop, subject_id: uuid.UUID) -> list[str]:
    with shop.tx() as tx:
        return [
            str(i)
            for i in tx.session.scalars(
                select(FaceImage.id).where(FaceImage.subject_id == subject_id)
            )
        ]


def audit_actions(shop: Shop, action: str) -> list[AuditEvent]:
    with shop.tx() as tx:
        events = tx.session.scalars(select(AuditEvent).where(AuditEvent.action == action)).all()
        tx.session.expunge_all()
        return list(events)


@pytest.mark.parametrize(
    ("viewer", "status"),
    [
        ("dave", 200),  # reviewer at Leeds
        ("bob", 200),  # reporter at Leeds
        ("frank", 200),  # auditor: every site
        ("alice", 200),  # admin: every site
        ("yvonne", 404),  # reporter at York only: the Leeds entry is not found
    ],
)
def test_the_photo_route_serves_the_jpeg_to_staff_who_may_see_the_entry(
    web: TestClient, shop: Shop, face_models: FaceModels, viewer: str, status: int
) -> None:
    subject_id = enrol_subject(shop, face_models, "Joseph_Biden", photos=2)
    add_york_reporter(shop)
    image_id = photo_ids(shop, subject_id)[0]
    browser = sign_in(web, viewer)
    response = browser.get(f"/watchlist/photos/{image_id}")
    assert response.status_code == status
    events = audit_actions(shop, "subject.photo")
    if status == 200:
        assert response.headers["content-type"] == "image/jpeg"
        assert response.headers["cache-control"] == "no-store"
        image = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None
        assert image.shape[:2] == (250, 250)
        assert [(e.actor, e.object_id, e.details["image"]) for e in events] == [
            (viewer, str(subject_id), image_id)
        ]
    else:
        assert not response.content.startswith(b"\xff\xd8")
        assert events == []


@pytest.mark.parametrize(
    "image_id", [str(uuid.uuid4()), "not-an-id", "1234abcd"], ids=["unknown", "garbage", "short"]
)
def test_an_unknown_photo_is_not_found(web: TestClient, image_id: str) -> None:
    response = sign_in(web, "dave").get(f"/watchlist/photos/{image_id}")
    assert response.status_code == 404


def test_the_photo_route_needs_a_signed_in_user(
    web: TestClient, shop: Shop, face_models: FaceModels
) -> None:
    subject_id = enrol_subject(shop, face_models, "Joseph_Biden")
    image_id = photo_ids(shop, subject_id)[0]
    response = web.get(f"/watchlist/photos/{image_id}")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")
