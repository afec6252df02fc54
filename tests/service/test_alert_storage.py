"""A full disk while a camera matches: alerts kept in memory, the camera's health says
why, and every one is stored once space returns. A real tmpfs, real workers, a real
RTSP camera, a real SQLite database on that disk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.support.data import DEBATE, MODELS
from tests.support.disk import fill, small_tmpfs
from tests.support.rtsp_server import RtspServer
from tests.support.shop import enrol_subject, set_up_shop
from tests.support.waiting import wait_until
from watchkeeper.config import load_settings
from watchkeeper.governance.organisation import update_camera
from watchkeeper.pipeline import FaceModels
from watchkeeper.service.supervisor import CameraState, Supervisor
from watchkeeper.store.crypto import encode_key, generate_key
from watchkeeper.store.database import open_store
from watchkeeper.store.models import Alert


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MB tmpfs of the test's own, to fill up."""
    with small_tmpfs(tmp_path / "disk") as disk:
        yield disk


def test_a_full_disk_keeps_alerts_in_memory_says_so_and_stores_them_when_space_returns(
    small_disk: Path, face_models: FaceModels
) -> None:
    settings = load_settings(
        models_dir=MODELS, data_dir=small_disk / "data", key=encode_key(generate_key())
    )
    store = open_store(settings, create=True)
    try:
        shop = set_up_shop(store)
        subject = enrol_subject(shop, face_models, "Joseph_Biden", photos=3)
        with RtspServer(DEBATE, loop=True) as server:
            with shop.tx() as tx:
                update_camera(
                    tx.session, store.keys, tx.organisation, tx.user("alice"), tx.camera,
                    source=server.url,
                )  # fmt: skip
            pushes: list[str] = []

            def broken_push(camera, alert) -> None:
                pushes.append(alert.alert_id)
                raise RuntimeError("the live page push broke")

            # A push that fails after the alert is stored must not stop the camera either.
            supervisor = Supervisor(settings, store, broken_push)
            supervisor.start(actor="alice")
            try:
                health = lambda: supervisor.health()[0]  # noqa: E731
                wait_until(lambda: health().alerts >= 1, 180, "a first alert")
                filler = fill(small_disk)
                wait_until(lambda: health().unstored_alerts >= 1, 120, "an alert on a full disk")
                full = health()
                assert full.store_error.startswith("cannot store alerts: disk full")
                assert full.state is CameraState.RUNNING, "the camera goes on analysing"
                frames = full.frames
                wait_until(lambda: health().frames > frames, 30, "frames analysed meanwhile")
                assert health().restarts == 0
                assert health().error is None
                filler.unlink()
                wait_until(lambda: health().unstored_alerts == 0, 60, "the kept alerts stored")
                assert health().store_error is None
                stored_by_now = health().alerts
                assert stored_by_now > full.alerts
            finally:
                final = supervisor.stop(actor="alice")
        with shop.tx() as tx:
            alerts = tx.session.scalars(select(Alert)).all()
        [camera] = final
        assert camera.unstored_alerts == 0
        assert len(alerts) == camera.alerts, "every decided match was stored, none lost"
        assert sorted(pushes) == sorted(str(alert.id) for alert in alerts)
        assert {alert.subject_id for alert in alerts} == {subject}
    finally:
        store.close()
