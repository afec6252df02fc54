"""Cameras in the web app: who may add, turn on and off and test them; refusals that store
nothing; sources never shown with their password; the REST API; and a running supervisor
that follows what the pages change. Real HTTP, real database, real worker processes."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.support.data import DEBATE
from tests.support.net import unused_port
from tests.support.shop import USERS, Shop
from tests.support.web import api_token, set_passwords, sign_in
from watchkeeper.config import Settings
from watchkeeper.governance.organisation import update_camera
from watchkeeper.service.runtime import Runtime
from watchkeeper.service.supervisor import Supervisor
from watchkeeper.store.models import AuditEvent, Camera, Role
from watchkeeper.web.app import create_app

SECRET = "s3cret-pw"
ADMINS = {name for name, role in USERS.items() if role is Role.ADMIN}


def unreachable() -> str:
    """A camera URL with a password, where nothing listens."""
    return f"rtsp://admin:{SECRET}@127.0.0.1:{unused_port()}/stream1"


def cameras(shop: Shop) -> dict[str, Camera]:
    with shop.tx() as tx:
        return {c.name: c for c in tx.session.scalars(select(Camera))}


def audited(shop: Shop, action: str) -> int:
    with shop.tx() as tx:
        return tx.session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)
        )


def site_id(shop: Shop) -> str:
    return str(shop.site_id)


@pytest.mark.parametrize("name", sorted(USERS))
def test_only_admins_add_turn_and_test_cameras_and_everyone_sees_them(
    web: TestClient, shop: Shop, name: str
) -> None:
    browser = sign_in(web, name)
    page = browser.get("/cameras")
    assert page.status_code == 200
    assert "Leeds/door" in page.text
    assert "rtsp://cam:***@10.0.0.9/s" in page.text
    assert "pw@" not in page.text
    allowed = name in ADMINS
    assert ("Add camera" in page.text) is allowed

    form = {"site": site_id(shop), "name": "till", "source": str(DEBATE)}
    tested = browser.post("/cameras/test", form)
    assert tested.status_code == (200 if allowed else 403)
    added = browser.post("/cameras", form)
    assert added.status_code == (303 if allowed else 403)
    door = cameras(shop)["door"]
    turned = browser.post(f"/cameras/{door.id}/enabled", {"enabled": "false"})
    assert turned.status_code == (303 if allowed else 403)

    after = cameras(shop)
    assert ("till" in after) is allowed
    assert after["door"].enabled is not allowed
    assert audited(shop, "camera.create") == (2 if allowed else 1)
    if allowed:
        page = browser.get("/cameras").text
        assert "Leeds/till" in page
        assert "disabled" in page


@pytest.mark.parametrize(
    ("name", "source", "reason"),
    [
        ("", str(DEBATE), "a camera needs a name"),
        ("   ", str(DEBATE), "a camera needs a name"),
        ("door", str(DEBATE), "already has a camera &#39;door&#39;"),
        ("a/b", str(DEBATE), "cannot contain &#39;/&#39;"),
        ("till", f"ftp://admin:{SECRET}@10.0.0.5/video", "not ftp://"),
        ("till", "", "a camera needs a source"),
        ("till", "rtsp://", "names no host"),
        ("till", f"rtsp://admin:{SECRET}@10.0.0.5:99999/s", "malformed"),
        ("till", "/no/such/clip.mp4", "is not a stream URL, a video file"),
    ],
)
def test_bad_cameras_are_refused_with_the_reason_and_nothing_is_stored(
    web: TestClient, shop: Shop, name: str, source: str, reason: str
) -> None:
    browser = sign_in(web, "alice")
    form = {"site": site_id(shop), "name": name, "source": source, "schedule": "Mon-Sat"}
    response = browser.post("/cameras", form)
    assert response.status_code == 422
    assert reason in response.text
    assert SECRET not in response.text, "a password typed in is not sent back"
    assert set(cameras(shop)) == {"door"}
    assert audited(shop, "camera.create") == 1

    api = web.post(
        "/api/cameras",
        json={"site": "Leeds", "name": name, "source": source},
        headers=api_token(shop, "alice"),
    )
    assert api.status_code == 422
    assert SECRET not in api.text
    assert set(cameras(shop)) == {"door"}


def test_testing_a_connection_reports_the_picture_or_the_error_and_stores_nothing(
    web: TestClient, shop: Shop
) -> None:
    browser = sign_in(web, "alice")
    form = {"site": site_id(shop), "name": "till", "source": str(DEBATE)}
    page = browser.post("/cameras/test", form).text
    assert "Connected" in page
    assert "640&times;368" in page
    assert "24.0 frames per second" in page
    assert f'value="{DEBATE}"' in page, "a source without a password is kept in the form"

    started = time.monotonic()
    failed = browser.post("/cameras/test", {**form, "source": unreachable()})
    assert time.monotonic() - started < 10
    assert failed.status_code == 200
    assert "No picture from rtsp://admin:***@127.0.0.1" in failed.text
    assert "Connection refused" in failed.text
    assert SECRET not in failed.text
    assert "type it again" in failed.text

    headers = api_token(shop, "alice")
    ok = web.post("/api/cameras/test", json={"source": str(DEBATE)}, headers=headers).json()
    assert (ok["ok"], ok["width"], ok["height"], ok["fps"]) == (True, 640, 368, 24.0)
    door = cameras(shop)["door"]
    stored = web.post("/api/cameras/test", json={"camera": str(door.id)}, headers=headers)
    assert stored.json()["ok"] is False
    assert stored.json()["source"] == "rtsp://cam:***@10.0.0.9/s"
    assert "pw@" not in stored.text
    neither = web.post("/api/cameras/test", json={}, headers=headers)
    assert neither.status_code == 422
    assert set(cameras(shop)) == {"door"}
    assert audited(shop, "camera.create") == 1


def test_the_cameras_api_creates_changes_and_lists_without_credentials(
    web: TestClient, shop: Shop
) -> None:
    admin = api_token(shop, "alice")
    source = unreachable()
    created = web.post(
        "/api/cameras",
        json={"site": "Leeds", "name": "till", "source": source, "schedule": "Mon-Sat"},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    camera = created.json()
    assert camera["source"] == source.replace(SECRET, "***")
    assert (camera["enabled"], camera["schedule"], camera["health"]) == (True, "Mon-Sat", None)

    changed = web.patch(
        f"/api/cameras/{camera['id']}", json={"enabled": False, "schedule": ""}, headers=admin
    )
    assert changed.status_code == 200
    assert (changed.json()["enabled"], changed.json()["schedule"]) == (False, None)
    assert (
        web.patch(
            f"/api/cameras/{camera['id']}", json={"source": "ftp://x/y"}, headers=admin
        ).status_code
        == 422
    )
    assert (
        web.patch(f"/api/cameras/{camera['id']}", json={"colour": "red"}, headers=admin).status_code
        == 422
    )
    unknown = "00000000-0000-4000-8000-000000000000"
    assert web.patch(f"/api/cameras/{unknown}", json={}, headers=admin).status_code == 404

    listed = web.get("/api/cameras", headers=api_token(shop, "dave"))
    assert listed.status_code == 200
    assert [(c["site"], c["name"]) for c in listed.json()] == [("Leeds", "door"), ("Leeds", "till")]
    assert SECRET not in listed.text
    assert "pw@" not in listed.text

    reviewer = api_token(shop, "erin")
    assert (
        web.post(
            "/api/cameras", json={"site": "Leeds", "name": "x", "source": "0"}, headers=reviewer
        ).status_code
        == 403
    )
    assert (
        web.patch(
            f"/api/cameras/{camera['id']}", json={"enabled": True}, headers=reviewer
        ).status_code
        == 403
    )
    assert web.post("/api/cameras/test", json={"source": "0"}, headers=reviewer).status_code == 403
    assert set(cameras(shop)) == {"door", "till"}
    assert cameras(shop)["till"].enabled is False


@pytest.fixture
def supervised(shop: Shop, store_settings: Settings) -> Iterator[tuple[TestClient, Supervisor]]:
    """The app with recognition on; the shop's own camera (an unreachable address) off."""
    set_passwords(shop)
    with shop.tx() as tx:
        update_camera(
            tx.session, shop.store.keys, tx.organisation, tx.user("alice"), tx.camera, False
        )
    runtime = Runtime(store_settings, shop.store)
    supervisor = runtime.supervisor
    assert supervisor is not None
    app = create_app(store_settings, shop.store, runtime)
    with TestClient(app, follow_redirects=False) as client:
        yield client, supervisor


def eventually(check, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@pytest.mark.parametrize("database_url", [None], ids=["sqlite"])
def test_a_camera_added_on_the_page_runs_at_once_shows_its_failure_and_stops_when_disabled(
    supervised: tuple[TestClient, Supervisor], shop: Shop
) -> None:
    client, supervisor = supervised
    browser = sign_in(client, "alice")
    form = {"site": site_id(shop), "name": "back", "source": unreachable()}
    assert browser.post("/cameras", form).status_code == 303, "an unreachable camera is accepted"
    assert eventually(lambda: [h.name for h in supervisor.health()] == ["Leeds/back"])
    assert eventually(lambda: supervisor.health()[0].restarts >= 1)
    page = browser.get("/cameras").text
    assert 'class="state-failed"' in page or "state-starting" in page
    assert "cannot open stream rtsp://admin:***@127.0.0.1" in page
    assert "Connection refused" in page
    assert SECRET not in page

    back = cameras(shop)["back"]
    assert browser.post(f"/cameras/{back.id}/enabled", {"enabled": "false"}).status_code == 303
    assert eventually(lambda: supervisor.health() == [])
    assert "disabled" in browser.get("/cameras").text

    # Stopped by the control, recognition stays stopped when a camera is turned on.
    assert browser.post("/recognition/stop").status_code == 303
    assert eventually(lambda: audited(shop, "recognition.stop") == 1)
    assert browser.post(f"/cameras/{back.id}/enabled", {"enabled": "true"}).status_code == 303
    time.sleep(1)
    assert not supervisor.running
    assert "Recognition is <strong>stopped</strong>" in browser.get("/cameras").text
    assert [h.name for h in supervisor.health()] == []
