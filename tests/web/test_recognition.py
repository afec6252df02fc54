"""The cameras page and the one control that stops recognition: who may, who may not."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.support.shop import USERS, Shop
from watchkeeper.config import Settings
from watchkeeper.governance import access
from watchkeeper.governance.accounts import issue_token, set_password
from watchkeeper.governance.organisation import update_camera
from watchkeeper.service.runtime import Runtime
from watchkeeper.service.supervisor import Supervisor
from watchkeeper.store.models import AuditEvent, Role
from watchkeeper.web.app import create_app

PASSWORD = "the same long test password"
CONTROLLERS = {name for name, role in USERS.items() if role in {Role.ADMIN, Role.MANAGER}}


@pytest.fixture
def app(shop: Shop, store_settings: Settings) -> Iterator[tuple[TestClient, Supervisor]]:
    """The app with a supervisor of no running camera (the shop's one is disabled)."""
    with shop.tx() as tx:
        keys = shop.store.keys
        update_camera(tx.session, keys, tx.organisation, tx.user("alice"), tx.camera, False)
        for name in USERS:
            user = tx.user(name)
            set_password(tx.session, keys, user, user, PASSWORD)
    runtime = Runtime(store_settings, shop.store)
    supervisor = runtime.supervisor
    assert supervisor is not None
    app = create_app(store_settings, shop.store, runtime)
    with TestClient(app, follow_redirects=False) as client:
        yield client, supervisor


def signed_in(client: TestClient, name: str) -> str:
    """Sign ``name`` in; the session's CSRF token."""
    form = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    data = {"name": name, "password": PASSWORD, "csrf_token": token, "next": "/"}
    assert client.post("/login", data=data).status_code == 303
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").text).group(1)


def logged(shop: Shop, action: str) -> list[str]:
    """Who did ``action``, by the audit log."""
    with shop.tx() as tx:
        events = tx.session.scalars(select(AuditEvent).where(AuditEvent.action == action))
        return [event.actor for event in events]


def eventually(check, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.parametrize("name", sorted(USERS))
def test_only_admins_and_managers_may_stop_recognition(app, shop: Shop, name: str) -> None:
    client, supervisor = app
    csrf = signed_in(client, name)
    page = client.get("/cameras")
    assert page.status_code == 200
    allowed = name in CONTROLLERS
    assert ("Stop recognition on every camera" in page.text) is allowed
    response = client.post("/recognition/stop", data={"csrf_token": csrf})
    assert response.status_code == (303 if allowed else 403)
    assert supervisor.running is not allowed, "the stop takes effect at once"
    if allowed:
        assert eventually(lambda: logged(shop, "recognition.stop") == [name])
        assert "Recognition is <strong>stopped</strong>" in client.get("/cameras").text
        assert client.post("/recognition/start", data={"csrf_token": csrf}).status_code == 303
        assert eventually(lambda: supervisor.running)
        assert eventually(lambda: logged(shop, "recognition.start") == [name])
    else:
        assert logged(shop, "recognition.stop") == []


def test_stopping_needs_the_sessions_csrf_token(app, shop: Shop) -> None:
    client, supervisor = app
    signed_in(client, "alice")
    assert client.post("/recognition/stop", data={"csrf_token": "forged"}).status_code == 403
    assert supervisor.running
    assert logged(shop, "recognition.stop") == []


def test_camera_health_over_the_api(app, shop: Shop) -> None:
    client, _ = app
    assert client.get("/api/cameras").status_code == 401
    with shop.tx() as tx:
        dave = access.user(tx.session, tx.organisation.id, "dave")
        issued = issue_token(tx.session, shop.store.keys, tx.user("alice"), dave, "NVR", 30)
    response = client.get("/api/cameras", headers={"Authorization": f"Bearer {issued.token}"})
    assert response.status_code == 200
    [door] = response.json()
    assert (door["name"], door["source"], door["enabled"]) == (
        "door",
        "rtsp://cam:***@10.0.0.9/s",
        False,
    )
    assert door["health"] is None, "the only camera is disabled, so none runs"
