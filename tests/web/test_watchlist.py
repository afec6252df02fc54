"""The watchlist pages: enrolment photos, incidents, entries and what staff may do to them."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.support.data import lfw_photos
from tests.support.shop import Shop, enrol_in, enrol_subject
from tests.support.web import PASSWORD, Browser, set_passwords, sign_in
from tests.vision.test_images import png_bomb
from watchkeeper.config import Settings
from watchkeeper.governance.accounts import set_password
from watchkeeper.governance.organisation import add_site, add_user
from watchkeeper.pipeline import FaceModels
from watchkeeper.store.models import AuditEvent, FaceImage, Incident, Role, Subject
from watchkeeper.web.app import create_app


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


# Incidents and entries through the pages

BIDEN = [p.read_bytes() for p in lfw_photos("Joseph_Biden") if p.name != "Joseph_Biden_0002.jpg"]


class FakeSupervisor:
    """Records each watchlist_changed call with what a camera would then read."""

    def __init__(self, shop: Shop) -> None:
        self.shop = shop
        self.seen: list[list[tuple[str, str, bool]]] = []

    def watchlist_changed(self) -> None:
        with self.shop.tx() as tx:
            rows = tx.session.scalars(select(Subject)).all()
            self.seen.append([(r.label, r.status.value, r.restricted) for r in rows])


@pytest.fixture
def supervisor(web: TestClient, shop: Shop) -> FakeSupervisor:
    fake = FakeSupervisor(shop)
    web.app.state.supervisor = fake  # type: ignore[attr-defined]
    return fake


def jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image)[1].tobytes()


def propose(browser: Browser, shop: Shop, photos: list[tuple[str, bytes]], **fields: object):
    """POST /watchlist as ``browser`` with the shop's incident and these photos."""
    data = {
        "label": "man, grey suit",
        "reason": "took razor blades twice",
        "incidents": str(shop.incident_id),
        "attest": "yes",
        **fields,
    }
    files = [("photos", (name, content, "image/jpeg")) for name, content in photos]
    return browser.post("/watchlist", data, files=files)


def stored(shop: Shop) -> tuple[int, int, list]:
    """Entries, photo rows and encrypted files held."""
    with shop.tx() as tx:
        subjects = tx.session.scalar(select(func.count()).select_from(Subject))
        images = tx.session.scalar(select(func.count()).select_from(FaceImage))
    return subjects, images, list(shop.store.files.all_files())


def test_the_whole_flow_from_incident_to_approved_entry_and_erasure(
    web: TestClient, shop: Shop, app_models: FaceModels, supervisor: FakeSupervisor
) -> None:
    bob = sign_in(web, "bob")
    form = bob.get("/incidents/new")
    assert form.status_code == 200
    recorded = bob.post(
        "/incidents",
        {
            "site": str(shop.site_id),
            "occurred_at": "2026-01-05T14:30",
            "category": "theft",
            "description": "filled a bag with spirits and left without paying",
            "police_reference": "13/999/26",
            "evidence": "CCTV export door-0105.mp4\n\nreceipt 4471",
        },
    )
    assert recorded.status_code == 303
    listed = bob.get("/incidents")
    assert "filled a bag with spirits" in listed.text
    assert "13/999/26" in listed.text
    with shop.tx() as tx:
        # The reference is encrypted in its column: found among the incidents in Python.
        (incident,) = [
            found
            for found in tx.session.scalars(select(Incident))
            if found.police_reference == "13/999/26"
        ]
        assert incident.evidence == ["CCTV export door-0105.mp4", "receipt 4471"]
        assert incident.reporter.name == "bob"
    assert f'value="{incident.id}"' in bob.get("/watchlist/new").text

    response = propose(
        bob, shop, [("one.jpg", BIDEN[0]), ("two.jpg", BIDEN[1])], incidents=str(incident.id)
    )
    assert response.status_code == 303, response.text
    detail_url = response.headers["location"]
    page = bob.get(detail_url)
    assert page.status_code == 200
    assert "pending" in page.text
    assert len(re.findall(r'src="/watchlist/photos/[0-9a-f-]{36}"', page.text)) == 2
    assert len(re.findall(r"quality 0\.\d\d", page.text)) == 2
    assert "filled a bag with spirits" in page.text
    assert "/approve" not in page.text  # a reporter cannot approve, least of all their own
    assert bob.post(f"{detail_url}/approve").status_code == 403
    assert supervisor.seen == []  # a pending entry is not searched: cameras need not know

    carol = sign_in(web, "carol")
    assert 'action="' + detail_url + '/approve"' in carol.get(detail_url).text
    assert carol.post(f"{detail_url}/approve").status_code == 303
    assert supervisor.seen == [[("man, grey suit", "active", False)]]  # committed first
    page = carol.get(detail_url)
    assert "Approved by</dt><dd>carol" in page.text
    assert "days left" in page.text

    assert (
        sign_in(web, "frank")
        .post(f"{detail_url}/erase", {"reason": "x", "confirm": "true"})
        .status_code
        == 403
    )
    carol = sign_in(web, "carol")
    assert carol.post(f"{detail_url}/erase", {"reason": "withdrawn"}).status_code == 422
    assert stored(shop)[1] == 2  # not confirmed: nothing erased
    erased = carol.post(f"{detail_url}/erase", {"reason": "withdrawn", "confirm": "true"})
    assert erased.status_code == 303
    assert stored(shop) == (0, 0, [])
    assert supervisor.seen[-1] == []
    assert carol.get(detail_url).status_code == 404


@pytest.mark.parametrize(
    ("proposer", "approver", "status"),
    [
        ("bob", "carol", 303),  # manager approves a reporter's entry
        ("bob", "alice", 303),  # admin too
        ("carol", "carol", 422),  # never one's own entry
        ("bob", "bob", 403),  # reporters do not approve
        ("bob", "dave", 403),  # nor reviewers
        ("bob", "frank", 403),  # nor auditors
    ],
)
def test_who_may_approve(
    web: TestClient, shop: Shop, face_models: FaceModels, proposer: str, approver: str, status: int
) -> None:
    with shop.tx() as tx:
        subject = enrol_in(tx, shop, face_models, "Joseph_Biden", approve_by=None)
        subject.created_by_id = tx.user(proposer).id
        subject_id = subject.id
    response = sign_in(web, approver).post(f"/watchlist/{subject_id}/approve")
    assert response.status_code == status
    with shop.tx() as tx:
        assert tx.session.get_one(Subject, subject_id).status.value == (
            "active" if status == 303 else "pending"
        )


@pytest.mark.parametrize(
    ("user", "get_status", "post_status"),
    [
        ("bob", 200, 303),
        ("carol", 200, 303),
        ("alice", 200, 303),
        ("dave", 403, 403),
        ("frank", 403, 403),
    ],
)
def test_who_may_propose(
    web: TestClient,
    shop: Shop,
    app_models: FaceModels,
    user: str,
    get_status: int,
    post_status: int,
) -> None:
    browser = sign_in(web, user)
    assert browser.get("/watchlist/new").status_code == get_status
    assert propose(browser, shop, [("one.jpg", BIDEN[0])]).status_code == post_status
    assert stored(shop)[0] == (1 if post_status == 303 else 0)


BIDEN_IMAGE = cv2.imdecode(np.frombuffer(BIDEN[0], np.uint8), cv2.IMREAD_COLOR)
TWO_FACES = lfw_photos("Joseph_Biden")[1].read_bytes()  # Joseph_Biden_0002.jpg


@pytest.mark.parametrize(
    ("photo", "badge"),
    [
        (b"%PDF-1.4 a document, not a photo", "not an image"),
        (b"", "not an image"),
        (BIDEN[0][: len(BIDEN[0]) // 3], "not an image"),  # truncated JPEG
        (png_bomb(50_000, 50_000), "too many pixels"),  # tiny file, 2.5 gigapixels declared
        (jpeg(np.full((200, 200, 3), 128, np.uint8)), "no face"),
        (TWO_FACES, "two or more faces"),
        (jpeg(cv2.resize(BIDEN_IMAGE, (48, 48))), "too small"),
        (jpeg(cv2.GaussianBlur(BIDEN_IMAGE, (0, 0), 6)), "blurred"),
    ],
    ids=["pdf", "empty", "truncated", "bomb", "no-face", "two-faces", "small", "blurred"],
)
def test_a_refused_photo_shows_the_form_again_with_its_badge_and_stores_nothing(
    web: TestClient, shop: Shop, app_models: FaceModels, photo: bytes, badge: str
) -> None:
    bob = sign_in(web, "bob")
    response = propose(bob, shop, [("good.jpg", BIDEN[0]), ("bad.jpg", photo)])
    assert response.status_code == 422
    assert f"<strong>bad.jpg</strong>: {badge}" in response.text
    assert "<strong>good.jpg</strong>: usable" in response.text
    assert 'value="man, grey suit"' in response.text  # what was typed is kept
    assert "Nothing was stored" in response.text
    assert stored(shop) == (0, 0, [])
    # The form-side check gives the same badge, and keeps nothing either.
    checked = bob.post("/watchlist/check-photo", files=[("photo", ("bad.jpg", photo))])
    assert checked.status_code == 200
    assert checked.json()["label"] == badge
    assert checked.json()["usable"] is False
    assert stored(shop) == (0, 0, [])


def test_the_photo_check_gives_a_usable_photo_its_quality(
    web: TestClient, app_models: FaceModels
) -> None:
    checked = sign_in(web, "bob").post(
        "/watchlist/check-photo", files=[("photo", ("a.jpg", BIDEN[0]))]
    )
    assert checked.status_code == 200
    badge = checked.json()
    assert badge["usable"] is True
    assert badge["label"] == "usable"
    assert 0.3 < badge["quality"] <= 1


@pytest.mark.parametrize(
    ("photos", "limits", "message"),
    [
        ([("huge.jpg", BIDEN[0] + bytes(50_000_000))], {}, "huge.jpg is larger than 10 MB"),
        (
            [(f"p{i}.jpg", BIDEN[0] + bytes(400_000)) for i in range(3)],
            {"max_upload_mb": 1.0},
            "the upload is larger than 1 MB",
        ),
    ],
    ids=["one-50MB-photo", "request-over-limit"],
)
def test_an_upload_over_the_limits_is_refused_with_413(
    web: TestClient,
    shop: Shop,
    app_models: FaceModels,
    store_settings: Settings,
    photos: list[tuple[str, bytes]],
    limits: dict,
    message: str,
) -> None:
    web.app.state.settings = store_settings.model_copy(  # type: ignore[attr-defined]
        update={"web": store_settings.web.model_copy(update=limits)}
    )
    response = propose(sign_in(web, "bob"), shop, photos)
    assert response.status_code == 413
    assert message in response.text
    assert stored(shop) == (0, 0, [])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"attest": ""}, "attest"),
        ({"incidents": ""}, "at least one recorded incident"),
        ({"incidents": "0000aaaa"}, "no incident"),
        ({"reason": "  "}, "a label and a reason"),
        ({"expires": "2020-01-01"}, "not in the future"),
        ({"expires": "2099-01-01"}, "beyond the policy maximum"),
        ({"expires": "next year"}, "not a date"),
    ],
)
def test_a_refused_entry_shows_the_form_again_and_stores_nothing(
    web: TestClient, shop: Shop, app_models: FaceModels, fields: dict, message: str
) -> None:
    response = propose(sign_in(web, "bob"), shop, [("one.jpg", BIDEN[0])], **fields)
    assert response.status_code == 422
    assert message in response.text
    assert stored(shop) == (0, 0, [])


def test_a_form_without_its_csrf_token_is_refused(
    web: TestClient, shop: Shop, app_models: FaceModels
) -> None:
    bob = sign_in(web, "bob")
    response = web.post(
        "/watchlist",
        data={"label": "x", "reason": "y", "incidents": str(shop.incident_id), "attest": "yes"},
        files=[("photos", ("one.jpg", BIDEN[0], "image/jpeg"))],
    )
    assert response.status_code == 403
    assert bob.post("/incidents", {"csrf_token": "forged"}).status_code == 403
    assert stored(shop) == (0, 0, [])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"description": " "}, "needs a description"),
        ({"occurred_at": "2099-01-01T10:00"}, "cannot be in the future"),
        ({"category": "shoplifting-ish"}, "what kind of incident"),
        ({"site": str(uuid.uuid4())}, "no site"),
    ],
)
def test_a_refused_incident_shows_the_form_again(
    web: TestClient, shop: Shop, fields: dict, message: str
) -> None:
    data = {"site": str(shop.site_id), "category": "theft", "description": "took a coat"}
    response = sign_in(web, "bob").post("/incidents", {**data, **fields})
    assert response.status_code == 422
    assert message in response.text
    with shop.tx() as tx:
        assert tx.session.scalar(select(func.count()).select_from(Incident)) == 1


@pytest.mark.parametrize(("user", "status"), [("dave", 403), ("frank", 403), ("bob", 200)])
def test_who_may_record_incidents(web: TestClient, user: str, status: int) -> None:
    assert sign_in(web, user).get("/incidents/new").status_code == status


def test_the_list_filters_by_status_and_shows_days_left(
    web: TestClient, shop: Shop, face_models: FaceModels
) -> None:
    enrol_subject(shop, face_models, "Joseph_Biden", label="active one")
    enrol_subject(shop, face_models, "Joseph_Biden", label="pending one", approve_by=None)
    dave = sign_in(web, "dave")
    everything = dave.get("/watchlist")
    assert "active one" in everything.text
    assert "pending one" in everything.text
    assert re.search(r"\((364|365) days left\)", everything.text)
    pending = dave.get("/watchlist", params={"status": "pending"})
    assert "pending one" in pending.text
    assert "active one" not in pending.text
    assert dave.get("/watchlist", params={"status": "nonsense"}).status_code == 422


def test_staff_see_only_their_sites(web: TestClient, shop: Shop, face_models: FaceModels) -> None:
    subject_id = enrol_subject(shop, face_models, "Joseph_Biden", label="Leeds entry")
    add_york_reporter(shop)
    yvonne = sign_in(web, "yvonne")
    assert "Leeds entry" not in yvonne.get("/watchlist").text
    assert yvonne.get(f"/watchlist/{subject_id}").status_code == 404
    assert "razor blades" not in yvonne.get("/incidents").text
    assert "razor blades" not in yvonne.get("/watchlist/new").text
    refused = yvonne.post(
        "/incidents",
        {"site": str(shop.site_id), "category": "theft", "description": "at Leeds"},
    )
    assert refused.status_code == 422
    assert "Leeds entry" in sign_in(web, "frank").get("/watchlist").text


def test_renew_suspend_restrict_and_reinstate(
    web: TestClient, shop: Shop, face_models: FaceModels, supervisor: FakeSupervisor
) -> None:
    subject_id = enrol_subject(shop, face_models, "Joseph_Biden", label="entry")
    url = f"/watchlist/{subject_id}"
    carol = sign_in(web, "carol")
    new_expiry = (dt.date.today() + dt.timedelta(days=200)).isoformat()
    assert (
        carol.post(f"{url}/renew", {"expires": new_expiry, "reason": "seen again"}).status_code
        == 303
    )
    assert carol.post(f"{url}/renew", {"expires": new_expiry, "reason": ""}).status_code == 422
    assert f"{new_expiry} (199 days left)" in carol.get(url).text
    assert carol.post(f"{url}/suspend", {"note": "checking the photos"}).status_code == 303
    assert "suspended" in carol.get(url).text
    assert carol.post(f"{url}/restrict", {"restricted": "true", "note": "asked"}).status_code == 303
    assert "Lift the restriction" in carol.get(url).text
    assert carol.post(f"{url}/restrict", {"restricted": "false"}).status_code == 303
    assert carol.post(f"{url}/approve").status_code == 303  # reinstated
    assert supervisor.seen == [
        [("entry", "active", False)],
        [("entry", "suspended", False)],
        [("entry", "suspended", True)],
        [("entry", "suspended", False)],
        [("entry", "active", False)],
    ]
    bob = sign_in(web, "bob")
    assert bob.post(f"{url}/suspend", {"note": "x"}).status_code == 403
    actions = {e.action for e in audit_actions(shop, "subject.renew")} | {
        e.action for e in audit_actions(shop, "subject.reinstate")
    }
    assert actions == {"subject.renew", "subject.reinstate"}


def test_a_missing_model_is_the_servers_fault_and_nothing_is_stored(
    shop: Shop, store_settings: Settings, tmp_path: Path
) -> None:
    """YuNet asked for by name (not 'auto', which falls back to dlib's HOG) with its file
    missing: a proposal is answered 503 naming the file."""
    set_passwords(shop)
    empty = tmp_path / "no-models"
    empty.mkdir()
    detection = store_settings.detection.model_copy(update={"backend": "yunet"})
    settings = store_settings.model_copy(update={"models_dir": empty, "detection": detection})
    with TestClient(create_app(settings, shop.store), follow_redirects=False) as client:
        response = propose(sign_in(client, "bob"), shop, [("good.jpg", BIDEN[0])])
    assert response.status_code == 503
    assert "face_detection_yunet" in response.text
    assert stored(shop) == (0, 0, [])
