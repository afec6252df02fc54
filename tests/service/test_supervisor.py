"""Camera workers under the supervisor: alerts stored, failures kept apart, restarts,
and a stop that loses nothing. Real processes, a real RTSP camera, a real database."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest
from sqlalchemy import select

from tests.support.data import DEBATE
from tests.support.net import unused_port
from tests.support.rtsp_server import RtspServer
from tests.support.shop import Shop, enrol_subject
from tests.support.waiting import wait_until
from watchkeeper.config import Settings
from watchkeeper.governance import access
from watchkeeper.governance.organisation import add_camera, update_camera
from watchkeeper.governance.subjects import approve
from watchkeeper.pipeline import FaceModels
from watchkeeper.service.supervisor import CameraHealth, CameraState, Supervisor
from watchkeeper.store.models import Alert, AuditEvent, Subject

pytestmark = pytest.mark.parametrize("database_url", [None], ids=["sqlite"])


def test_cameras_run_apart_matches_become_alerts_and_stopping_loses_none(
    shop: Shop, store_settings: Settings, face_models: FaceModels
) -> None:
    subject = enrol_subject(shop, face_models, "Joseph_Biden", photos=3)
    with RtspServer(DEBATE, loop=True) as server:
        with shop.tx() as tx:
            alice = tx.user("alice")
            keys = shop.store.keys
            add_camera(tx.session, keys, tx.organisation, alice, tx.site, "till", server.url)
            broken = f"rtsp://127.0.0.1:{unused_port()}/nothing"
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
            killed = "its worker process was killed (SIGKILL)"
            assert health()["Leeds/till"].last_restart.endswith(f" UTC: {killed}")
            wait_until(
                lambda: health()["Leeds/till"].state is CameraState.RUNNING, 120, "running again"
            )
            assert health()["Leeds/till"].error is None
            assert health()["Leeds/till"].last_restart.endswith(killed), "the reason stays"
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


def worker_pid(name: str) -> int:
    [worker] = [p for p in multiprocessing.active_children() if p.name.endswith(name)]
    return worker.pid


def test_the_supervisor_follows_camera_and_watchlist_changes_without_touching_the_others(
    shop: Shop, store_settings: Settings, face_models: FaceModels
) -> None:
    """An entry approved after the cameras started is searched at once (the periodic
    reload is an hour away); cameras added, re-pointed and disabled while running are
    started, restarted and stopped, and the camera that did not change runs on."""
    settings = store_settings.model_copy(
        update={"store": store_settings.store.model_copy(update={"watchlist_refresh_s": 3600})}
    )
    subject = enrol_subject(shop, face_models, "Joseph_Biden", photos=3, approve_by=None)
    keys = shop.store.keys
    with RtspServer(DEBATE, loop=True) as server:
        with shop.tx() as tx:
            alice = tx.user("alice")
            add_camera(tx.session, keys, tx.organisation, alice, tx.site, "till", server.url)
            first = f"rtsp://cam:pw@127.0.0.1:{unused_port()}/back"
            add_camera(tx.session, keys, tx.organisation, alice, tx.site, "back", first)
            update_camera(tx.session, keys, tx.organisation, alice, tx.camera, enabled=False)
        pushed: list[str] = []
        supervisor = Supervisor(
            settings, shop.store, lambda camera, alert: pushed.append(alert.label)
        )
        supervisor.start()
        try:
            health = lambda: {h.name: h for h in supervisor.health()}  # noqa: E731
            wait_until(lambda: health()["Leeds/till"].state is CameraState.RUNNING, 60, "till")
            till = worker_pid("Leeds/till")
            time.sleep(2)
            assert pushed == [], "a pending entry is not searched"

            with shop.tx() as tx:
                approve(
                    tx.session,
                    keys,
                    tx.organisation,
                    tx.user("carol"),
                    tx.session.get_one(Subject, subject),
                )
            asked = time.monotonic()
            supervisor.watchlist_changed()
            wait_until(lambda: pushed, 30, "an alert after the approval")
            assert pushed[0] == "Joseph_Biden"
            assert time.monotonic() - asked < 30

            second_port = unused_port()
            with shop.tx() as tx:
                alice = tx.user("alice")
                back = access.camera(tx.session, tx.organisation.id, "Leeds/back")
                update_camera(
                    tx.session, keys, tx.organisation, alice, back,
                    source=f"rtsp://cam:pw@127.0.0.1:{second_port}/back",
                )  # fmt: skip
                add_camera(tx.session, keys, tx.organisation, alice, tx.site, "side", "0")
            supervisor.cameras_changed()
            wait_until(
                lambda: str(second_port) in (health()["Leeds/back"].error or ""),
                60,
                "the new source",
            )
            assert "Leeds/side" in health(), "a camera added while running starts"

            with shop.tx() as tx:
                for name in ("Leeds/back", "Leeds/side"):
                    found = access.camera(tx.session, tx.organisation.id, name)
                    update_camera(tx.session, keys, tx.organisation, tx.user("alice"), found, False)
            supervisor.cameras_changed()
            wait_until(lambda: set(health()) == {"Leeds/till"}, 30, "the disabled cameras to go")
            wait_until(
                lambda: not [p for p in multiprocessing.active_children() if "back" in p.name],
                30,
                "the disabled camera's worker to end",
            )
            assert worker_pid("Leeds/till") == till, "the unchanged camera was not touched"
            assert health()["Leeds/till"].restarts == 0
        finally:
            final = {h.name: h for h in supervisor.stop()}
    with shop.tx() as tx:
        stored = tx.session.scalars(select(Alert)).all()
    assert len(stored) == len(pushed) == final["Leeds/till"].alerts >= 1


def test_changes_while_stopped_wait_for_the_next_start(
    shop: Shop, store_settings: Settings
) -> None:
    """Recognition stopped by the stop control stays stopped when cameras change."""
    keys = shop.store.keys
    supervisor = Supervisor(store_settings, shop.store)
    supervisor.start()
    supervisor.stop()
    with shop.tx() as tx:
        add_camera(
            tx.session, keys, tx.organisation, tx.user("alice"), tx.site, "till",
            f"rtsp://127.0.0.1:{unused_port()}/x",
        )  # fmt: skip
    supervisor.cameras_changed()
    supervisor.reconcile()
    assert not supervisor.running
    assert "Leeds/till" not in {h.name for h in supervisor.health()}
    supervisor.start()
    try:
        assert {h.name for h in supervisor.health()} == {"Leeds/door", "Leeds/till"}
    finally:
        supervisor.stop()
