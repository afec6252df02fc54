"""Live alerts end to end over real HTTP: a camera worker matches Biden on a live RTSP
stream, the service stores the alert, and a signed-in reviewer's page gets it pushed."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from sqlalchemy import select

from tests.support.data import DEBATE
from tests.support.rtsp_server import RtspServer
from tests.support.shop import Shop, enrol_subject
from watchkeeper.config import Settings
from watchkeeper.governance.accounts import set_password
from watchkeeper.governance.organisation import add_camera, update_camera
from watchkeeper.governance.subjects import FaceModels
from watchkeeper.service.broadcast import AlertBroadcaster
from watchkeeper.service.supervisor import Supervisor
from watchkeeper.store.models import Alert
from watchkeeper.web.app import create_app
from watchkeeper.web.routes.alerts import alert_message

pytestmark = pytest.mark.parametrize("database_url", [None], ids=["sqlite"])
PASSWORD = "reviewer's long password"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
        broadcaster = AlertBroadcaster()
        supervisor = Supervisor(
            store_settings,
            shop.store,
            lambda cam, alert: broadcaster.publish(alert_message(cam, alert)),
        )
        app = create_app(store_settings, shop.store, supervisor, broadcaster)
        port = free_port()
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
            "id", "camera", "subject_label", "score", "threshold", "occurred_at", "status",
        }, "no face data is pushed"  # fmt: skip
        assert message["id"] in web.get("/alerts").text, "the page lists it after a reload"
    with shop.tx() as tx:
        assert str(tx.session.scalars(select(Alert.id)).first()) == message["id"]


def test_the_live_stream_needs_a_signed_in_user(service) -> None:
    base, _ = service
    response = httpx.get(f"{base}/alerts/stream", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/alerts/stream"
