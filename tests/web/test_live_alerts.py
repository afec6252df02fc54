"""Live alerts end to end over real HTTP: a camera worker matches Biden on a live RTSP
stream, the service stores the alert, and a signed-in reviewer's page gets it pushed."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest
import uvicorn
from sqlalchemy import select

from tests.support.alerts import add_york
from tests.support.data import DEBATE
from tests.support.net import unused_port
from tests.support.rtsp_server import RtspServer
from tests.support.shop import Shop, enrol_subject
from tests.support.web import PASSWORD as STAFF_PASSWORD
from tests.support.web import set_passwords
from watchkeeper.config import Settings
from watchkeeper.governance.accounts import set_password
from watchkeeper.governance.live import StoredAlert
from watchkeeper.governance.organisation import add_camera, update_camera
from watchkeeper.pipeline import FaceModels
from watchkeeper.service.runtime import Runtime, alert_message
from watchkeeper.service.supervisor import CameraHealth, CameraState, Supervisor
from watchkeeper.store.models import Alert, Camera
from watchkeeper.web.app import create_app

pytestmark = pytest.mark.parametrize("database_url", [None], ids=["sqlite"])
PASSWORD = "reviewer's long password"


@pytest.fixture
def service(
    shop: Shop, store_settings: Settings, face_models: FaceModels
) -> Iterator[tuple[str, Supervisor]]:
    """The web app and recognition on one live camera, served on a free port."""
    enrol_subject(shop, face_models, "Joseph_Biden", photos=3)
    with RtspServer(DEBATE, loop=True) as camera:
        with shop.tx() as tx:
            keys, alice = shop.store.keys, tx.user("alice")
            add_camera(tx.session, keys, tx.organisation, alice, tx.site, "till", camera.url)
            update_camera(tx.session, keys, tx.organisation, alice, tx.camera, enabled=False)
            set_password(tx.session, keys, tx.user("dave"), tx.user("dave"), PASSWORD)
        runtime = Runtime(store_settings, shop.store)
        supervisor = runtime.supervisor
        assert supervisor is not None
        app = create_app(store_settings, shop.store, runtime)
        port = unused_port()
        config = uvicorn.Config(app, port=port, log_level="warning", timeout_graceful_shutdown=1)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            assert thread.is_alive()
            time.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{port}", supervisor
        finally:
            server.should_exit = True
            thread.join(60)
    assert not thread.is_alive(), "the service stopped"
    assert not supervisor.running


def test_a_reviewer_gets_the_alert_pushed_while_the_camera_plays(service, shop: Shop) -> None:
    base, supervisor = service
    with httpx.Client(base_url=base, follow_redirects=False, timeout=180) as web:
        form = web.get("/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
        data = {"name": "dave", "password": PASSWORD, "csrf_token": token, "next": "/alerts"}
        assert web.post("/login", data=data).headers["location"] == "/alerts"
        page = web.get("/alerts")
        assert page.status_code == 200
        assert '<script src="/static/alerts.js">' in page.text
        with web.stream("GET", "/alerts/stream") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.iter_lines()
            deadline = time.monotonic() + 150
            for line in lines:
                if line == "event: alert":
                    message = json.loads(next(lines).removeprefix("data: "))
                    break
                assert time.monotonic() < deadline, f"no alert; cameras: {supervisor.health()}"
        assert message["camera"] == "Leeds/till"
        assert message["subject_label"] == "Joseph_Biden"
        assert message["score"] >= message["threshold"]
        assert set(message) == {
            "id", "camera", "subject_label", "score", "threshold", "band", "occurred_at",
            "status",
        }, "no face data (nor the site's id) is pushed"  # fmt: skip
        assert message["band"] in ("strong", "likely", "weak")
        assert message["id"] in web.get("/alerts").text, "the page lists it after a reload"
    with shop.tx() as tx:
        assert str(tx.session.scalars(select(Alert.id)).first()) == message["id"]


def test_the_live_stream_needs_a_signed_in_user(service) -> None:
    base, _ = service
    response = httpx.get(f"{base}/alerts/stream", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/alerts/stream"


def test_each_page_is_told_only_of_its_own_sites_alerts(
    shop: Shop, store_settings: Settings
) -> None:
    """The service broadcasts every alert; a reviewer bound to Leeds is told of Leeds's,
    one bound to York of York's, and the admin of both (the site's id stays inside)."""
    york = add_york(shop)
    set_passwords(shop)
    with shop.tx() as tx:
        leeds, york_site = str(shop.site_id), str(tx.session.get_one(Camera, york).site_id)
    runtime = Runtime(store_settings, shop.store, cameras=False)
    broadcaster = runtime.broadcaster
    config = uvicorn.Config(
        create_app(store_settings, shop.store, runtime), port=unused_port(),
        log_level="warning", timeout_graceful_shutdown=1,
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive()
        time.sleep(0.05)
    expected = {
        "dave": ["alert-0", "alert-2"],
        "yvonne": ["alert-1", "alert-3"],
        "alice": ["alert-0", "alert-1", "alert-2", "alert-3"],
    }
    try:
        with ExitStack() as open_streams:
            lines = {}
            for name in expected:
                web = open_streams.enter_context(
                    httpx.Client(base_url=f"http://127.0.0.1:{config.port}", timeout=30)
                )
                token = re.search(r'name="csrf_token" value="([^"]+)"', web.get("/login").text)
                data = {"name": name, "password": STAFF_PASSWORD, "csrf_token": token.group(1)}
                assert web.post("/login", data=data).status_code == 303
                stream = open_streams.enter_context(web.stream("GET", "/alerts/stream"))
                lines[name] = stream.iter_lines()
                assert next(lines[name]) == "retry: 2000"
            deadline = time.monotonic() + 10
            while broadcaster.subscribers < len(expected):
                assert time.monotonic() < deadline
                time.sleep(0.02)
            for number, site in enumerate((leeds, york_site, leeds, york_site)):
                stored = StoredAlert(f"alert-{number}", "s", "label", 0.51, 0.46, "2026", site)
                camera = CameraHealth(uuid.uuid4(), f"cam-{number}", CameraState.RUNNING)
                broadcaster.publish(alert_message(camera.name, stored))
            for name, ids in expected.items():
                data = (line for line in lines[name] if line.startswith("data: "))
                # One message per id expected, and no more read: a further one would wait.
                told = [json.loads(next(data).removeprefix("data: ")) for _ in ids]
                assert [message["id"] for message in told] == ids, name
                assert all("site_id" not in m and m["band"] == "likely" for m in told)
    finally:
        server.should_exit = True
        thread.join(30)
