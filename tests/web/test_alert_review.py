"""The alert card and human review on the web pages: the crop beside the enrolment
photos, band, warnings, incidents and guidance; two different reviewers confirm, one
rejection rejects; who may view and review; site scoping; CSRF; the audit trail."""

from __future__ import annotations

import re
import uuid

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.support.alerts import SCORE, THRESHOLD, add_york, audit_trail, raise_alert
from tests.support.shop import Shop, Sighting, enrol_in
from tests.support.web import Browser, sign_in
from watchkeeper.pipeline import FaceModels
from watchkeeper.store.models import Alert, AlertStatus, Camera, FaceImage, Review

GUIDANCE_START = "Do not approach or accuse anyone on the strength of this alert."


def reviews_of(shop: Shop, alert_id: str) -> list[tuple[str, str]]:
    with shop.tx() as tx:
        alert = tx.session.get_one(Alert, uuid.UUID(alert_id))
        return [(r.user.name, r.decision.value) for r in alert.reviews]


def status_of(shop: Shop, alert_id: str) -> AlertStatus:
    with shop.tx() as tx:
        return tx.session.get_one(Alert, uuid.UUID(alert_id)).status


def test_the_card_shows_the_crop_beside_the_enrolment_photos_with_band_flags_incidents_and_guidance(
    web: TestClient, shop: Shop, biden: uuid.UUID, seen: Sighting, alert_id: str
) -> None:
    dave = sign_in(web, "dave")
    page = dave.get(f"/alerts/{alert_id}")
    assert page.status_code == 200
    html = page.text
    with shop.tx() as tx:
        photos = [
            str(i) for i in tx.session.scalars(select(FaceImage.id).filter_by(subject_id=biden))
        ]
        expires = tx.session.get_one(Alert, uuid.UUID(alert_id)).subject.expires_at
    assert len(photos) == 2
    assert f'<img src="/alerts/{alert_id}/snapshot"' in html
    for photo in photos:
        assert f'<img src="/watchlist/photos/{photo}"' in html
    assert re.search(rf'title="score {SCORE}, threshold {THRESHOLD}">strong</span>', html)
    assert "Brief sighting: the face was in view for only 0.6 s." in html
    assert "<strong>theft</strong>" in html
    assert "took razor blades from the front shelf" in html
    assert "Leeds/door" in html
    assert GUIDANCE_START in html
    assert f"expires {expires.date().isoformat()}" in html
    assert "only when 2 different reviewers confirm it" in html
    assert "Nobody has confirmed it yet." in html
    assert 'name="decision" value="confirm"' in html

    snapshot = dave.get(f"/alerts/{alert_id}/snapshot")
    assert snapshot.status_code == 200
    assert snapshot.headers["content-type"] == "image/jpeg"
    crop = cv2.imdecode(np.frombuffer(snapshot.content, np.uint8), cv2.IMREAD_COLOR)
    assert crop is not None
    assert crop.shape == seen.chip.shape
    assert np.abs(crop.astype(int) - seen.chip.astype(int)).mean() < 4
    for photo in photos:
        shown = dave.get(f"/watchlist/photos/{photo}")
        assert shown.status_code == 200
        assert shown.headers["content-type"] == "image/jpeg"
        assert cv2.imdecode(np.frombuffer(shown.content, np.uint8), cv2.IMREAD_COLOR) is not None

    trail = audit_trail(shop, "alert.view", "alert.snapshot", "subject.photo")
    assert trail == [
        ("dave", "alert.view", alert_id),
        ("dave", "alert.snapshot", alert_id),
        ("dave", "subject.photo", str(biden)),
        ("dave", "subject.photo", str(biden)),
    ]


@pytest.mark.parametrize(
    ("sighting", "shown"),
    [
        (None, "How the face was seen was not recorded"),
        (
            {
                "seconds": 4.0,
                "frames": 40,
                "shots": 1,
                "best_quality": 0.1,
                "runner_up_margin": 0.002,
            },
            "Few usable shots",
        ),
        (
            {
                "seconds": 4.0,
                "frames": 40,
                "shots": 3,
                "best_quality": 0.7,
                "runner_up_margin": 0.2,
            },
            "None: the face was seen long enough",
        ),
    ],
)
def test_the_card_warns_about_how_the_face_was_seen(
    web: TestClient, shop: Shop, biden: uuid.UUID, seen: Sighting, sighting: dict | None, shown: str
) -> None:
    alert_id = raise_alert(shop, biden, seen, sighting=sighting, score=0.47)
    html = sign_in(web, "erin").get(f"/alerts/{alert_id}").text
    assert shown in html
    assert ">weak</span>" in html


@pytest.mark.parametrize(
    ("decisions", "status", "confirmed_by"),
    [
        ([("dave", "confirm"), ("erin", "confirm")], AlertStatus.CONFIRMED, "dave, erin"),
        ([("dave", "confirm")], AlertStatus.PENDING, "dave"),
        ([("dave", "reject")], AlertStatus.REJECTED, None),
        ([("dave", "confirm"), ("erin", "reject")], AlertStatus.REJECTED, "dave"),
        ([("dave", "unsure"), ("carol", "confirm")], AlertStatus.UNSURE, "carol"),
    ],
)
def test_two_different_reviewers_confirm_and_one_rejection_rejects(
    web: TestClient,
    shop: Shop,
    alert_id: str,
    decisions: list[tuple[str, str]],
    status: AlertStatus,
    confirmed_by: str | None,
) -> None:
    for name, decision in decisions:
        reviewer = sign_in(web, name)
        response = reviewer.post(
            f"/alerts/{alert_id}/review", {"decision": decision, "note": f"{name} looked"}
        )
        assert response.status_code == 303, response.text
        assert response.headers["location"] == f"/alerts/{alert_id}"
    assert status_of(shop, alert_id) == status
    assert reviews_of(shop, alert_id) == decisions
    html = reviewer.get(f"/alerts/{alert_id}").text
    assert f"Alert {alert_id[:8]}: {status.value}" in html
    if confirmed_by:
        assert f"Confirmed so far by {confirmed_by}." in html
    assert "dave looked" in html
    decided = status in (AlertStatus.CONFIRMED, AlertStatus.REJECTED)
    assert ("no further review is taken" in html) == decided
    actions = audit_trail(shop, "alert.review")
    assert [(actor, action) for actor, action, _ in actions] == [
        (name, "alert.review") for name, _ in decisions
    ]


def test_the_same_reviewer_cannot_decide_twice(web: TestClient, shop: Shop, alert_id: str) -> None:
    dave = sign_in(web, "dave")
    assert dave.post(f"/alerts/{alert_id}/review", {"decision": "confirm"}).status_code == 303
    card = dave.get(f"/alerts/{alert_id}").text
    assert "You have reviewed this alert (confirm)" in card
    assert 'name="decision"' not in card
    again = dave.post(f"/alerts/{alert_id}/review", {"decision": "confirm"})
    assert again.status_code == 422
    assert "has already reviewed alert" in again.text
    assert "a second decision must come from someone else" in again.text
    assert reviews_of(shop, alert_id) == [("dave", "confirm")]
    assert status_of(shop, alert_id) == AlertStatus.PENDING
    assert len(audit_trail(shop, "alert.review")) == 1


def test_a_decided_alert_takes_no_further_review(
    web: TestClient, shop: Shop, alert_id: str
) -> None:
    sign_in(web, "dave").post(f"/alerts/{alert_id}/review", {"decision": "reject"})
    late = sign_in(web, "erin").post(f"/alerts/{alert_id}/review", {"decision": "confirm"})
    assert late.status_code == 422
    assert "is already rejected" in late.text
    assert reviews_of(shop, alert_id) == [("dave", "reject")]


@pytest.mark.parametrize(
    ("user", "view", "review"),
    [
        ("alice", 200, 303),  # admin
        ("carol", 200, 303),  # manager
        ("dave", 200, 303),  # reviewer
        ("bob", 200, 403),  # reporter: may view, not review
        ("frank", 200, 403),  # auditor: may view, not review
    ],
)
def test_who_may_view_and_review(
    web: TestClient, shop: Shop, alert_id: str, user: str, view: int, review: int
) -> None:
    browser = sign_in(web, user)
    card = browser.get(f"/alerts/{alert_id}")
    assert card.status_code == view
    assert ('name="decision"' in card.text) == (review == 303)
    if review == 403:
        assert "may view alerts but not review them" in card.text
    assert browser.get(f"/alerts/{alert_id}/snapshot").status_code == view
    assert browser.post(f"/alerts/{alert_id}/review", {"decision": "confirm"}).status_code == review
    assert reviews_of(shop, alert_id) == ([(user, "confirm")] if review == 303 else [])


@pytest.mark.parametrize(
    ("form", "status", "message"),
    [
        ({"decision": "maybe"}, 422, "Choose confirm, reject or unsure."),
        ({}, 422, "Choose confirm, reject or unsure."),
        ({"decision": "confirm", "note": "x" * 2001}, 422, "at most 2000"),
        ({"decision": "confirm", "csrf_token": "forged"}, 403, "did not come from Watchkeeper"),
    ],
)
def test_bad_input_is_refused_and_stores_nothing(
    web: TestClient, shop: Shop, alert_id: str, form: dict, status: int, message: str
) -> None:
    dave = sign_in(web, "dave")
    response = dave.client.post(f"/alerts/{alert_id}/review", data={"csrf_token": dave.csrf} | form)
    assert response.status_code == status
    assert message in response.text
    assert reviews_of(shop, alert_id) == []
    assert status_of(shop, alert_id) == AlertStatus.PENDING
    assert audit_trail(shop, "alert.review") == []


@pytest.mark.parametrize("path", ["/alerts/{}", "/alerts/{}/snapshot"])
def test_an_unknown_alert_is_not_found(web: TestClient, path: str) -> None:
    dave = sign_in(web, "dave")
    assert dave.get(path.format(uuid.uuid4())).status_code == 404
    assert dave.get(path.format("not-an-id")).status_code == 404


def test_the_list_links_each_alert_to_its_card_with_its_band(
    web: TestClient, shop: Shop, biden: uuid.UUID, seen: Sighting
) -> None:
    strong = raise_alert(shop, biden, seen)
    weak = raise_alert(shop, biden, seen, score=0.47)
    dave = sign_in(web, "dave")
    html = dave.get("/alerts").text
    assert html.index(weak) < html.index(strong), "newest first"
    for alert_id, band in ((strong, "strong"), (weak, "weak")):
        assert f'<a href="/alerts/{alert_id}">' in html
        row = html[html.index(f'data-alert="{alert_id}"') :].split("</tr>")[0]
        assert f">{band}</span>" in row
        assert 'title="score ' in row
    dave.post(f"/alerts/{strong}/review", {"decision": "reject"})
    assert strong not in dave.get("/alerts").text, "the default list shows pending alerts"
    assert strong in dave.get("/alerts?status=rejected").text
    assert strong in dave.get("/alerts?status=all").text


def test_each_site_sees_and_reviews_only_its_own_alerts(
    web: TestClient, shop: Shop, face_models: FaceModels, seen: Sighting
) -> None:
    """A reviewer of another site gets "not found" for the card, the crop and a review."""
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
        browser: Browser = sign_in(web, name)
        listed = browser.get("/alerts").text
        assert mine in listed
        assert theirs not in listed
        assert browser.get(f"/alerts/{mine}").status_code == 200
        assert browser.get(f"/alerts/{theirs}").status_code == 404
        assert browser.get(f"/alerts/{theirs}/snapshot").status_code == 404
        assert browser.post(f"/alerts/{theirs}/review", {"decision": "confirm"}).status_code == 404
    with shop.tx() as tx:
        assert tx.session.scalar(select(func.count()).select_from(Review)) == 0
    admin = sign_in(web, "alice").get("/alerts").text
    assert leeds_alert in admin
    assert york_alert in admin
