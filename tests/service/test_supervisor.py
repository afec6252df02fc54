"""Camera workers under the supervisor: alerts stored, failures kept apart, restarts,
and a stop that loses nothing. Real processes, a real RTSP camera, a real database."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable

import pytest
from sqlalchemy import select

from tests.support.data import DEBATE
from tests.support.rtsp_server import RtspServer
from tests.support.shop import Shop, enrol_subject
from watchkeeper.config import Settings
from watchkeeper.governance.organisation import add_camera, update_camera
from watchkeeper.governance.subjects import FaceModels
from watchkeeper.service.supervisor import CameraHealth, CameraState, Supervisor
from watchkeeper.store.models import Alert, AuditEvent

pytestmark = pytest.mark.parametrize("database_url", [None], ids=["sqlite"])


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_cameras_run_apart_matches_become_alerts_and_stopping_loses_none(
    shop: Shop, store_settings: Settings, face_models: FaceModels
) -> None:
    subject = enrol_subject(shop, face_models, "Joseph_Biden", photos=3)
    with RtspServer(DEBATE, loop=True) as server:
        with shop.tx() as tx:
            alice = tx.user("alice")
            keys = shop.store.keys
            add_camera(tx.session, keys, tx.organisation, alice, tx.site, "till", server.url)
            broken = f"rtsp://127.0.0.1:{closed_port()}/nothing"
            add_camera(tx.session, keys, tx.organisation, alice, tx.site, "back", broken)
            update_camera(tx.session, keys, tx.organisation, alice, tx.camera, enabled=False)
        pushed: list[tuple[str, str]] = []

        def on_alert(camera: CameraHealth, alert) -> None:
            pushed.append((camera.name, alert.label))

        supervisor = Supervisor(store_settings, shop.store, on_alert)
        supervisor.start(actor="alice")
        try:
            health = lambda: {h.name: h for h in supervisor.health()}  # noqa: E731
            assert set(health()) == {"Leeds/till", "Leeds/back"}, "a disabled camera is not run"
            wait_until(lambda: pushed, 180, "an alert from the till camera")
            assert pushed[0] == ("Leeds/till", "Joseph_Biden")
            till, back = health()["Leeds/till"], health()["Leeds/back"]
            assert till.state is CameraState.RUNNING
            assert till.fps > 0
            assert till.frames > 0
            wait_until(lambda: health()["Leeds/back"].restarts >= 1, 60, "the broken camera")
            back = health()["Leeds/back"]
            assert back.state in {CameraState.FAILED, CameraState.STARTING}
            assert "cannot open" in (back.error or "")

            # A worker killed outright is restarted, and the camera runs again.
            [worker] = [
                p for p in multiprocessing.active_children() if p.name.endswith("Leeds/till")
            ]
            os.kill(worker.pid, signal.SIGKILL)
            wait_until(lambda: health()["Leeds/till"].restarts == 1, 30, "the restart")
            wait_until(
                lambda: health()["Leeds/till"].state is CameraState.RUNNING, 120, "running again"
            )
        finally:
            final = {h.name: h for h in supervisor.stop(actor="alice")}
    assert all(h.state is CameraState.STOPPED for h in final.values())
    assert not [p for p in multiprocessing.active_children() if "Leeds/" in p.name]
    with shop.tx() as tx:
        alerts = tx.session.scalars(select(Alert)).all()
        actions = tx.session.scalars(select(AuditEvent.action)).all()
    assert len(alerts) == len(pushed) == final["Leeds/till"].alerts, "every match was stored"
    assert {alert.subject_id for alert in alerts} == {subject}
    assert {"recognition.start", "recognition.stop"} <= set(actions)
