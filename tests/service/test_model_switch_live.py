"""A model switch while `serve` runs: the camera goes on with the old model until the
switch is stored, then, at its next watchlist reload and without the service
restarting, its worker is replaced by one that runs the new model. Real processes, a
real RTSP camera (the debate clip, looped), a real database."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.service.test_supervisor import wait_until, worker_pid
from tests.support.data import DEBATE
from tests.support.rtsp_server import RtspServer
from tests.support.shop import Shop, enrol_subject
from watchkeeper.config import QualityConfig, Settings
from watchkeeper.governance.model_switch import switch_model
from watchkeeper.governance.organisation import add_camera, update_camera
from watchkeeper.models.registry import ModelRegistry
from watchkeeper.pipeline import FaceModels
from watchkeeper.service.supervisor import CameraState, Supervisor
from watchkeeper.store.models import Alert
from watchkeeper.vision.detection import FaceDetector
from watchkeeper.vision.embedding import create_embedder

pytestmark = pytest.mark.parametrize("database_url", [None], ids=["sqlite"])

DLIB_ID = "dlib-resnet-v1@1"
SFACE_ID = "sface-2021dec@2021dec"


def alert_models(shop: Shop) -> list[str]:
    with shop.tx() as tx:
        return list(tx.session.scalars(select(Alert.model_id).order_by(Alert.created_at)))


def test_a_running_camera_follows_a_model_switch_without_a_service_restart(
    shop: Shop,
    store_settings: Settings,
    face_models: FaceModels,
    registry: ModelRegistry,
    yunet: FaceDetector,
    quality: QualityConfig,
) -> None:
    # The switch is made as on the command line, by another process: nobody tells the
    # cameras, and they notice at their periodic reload.
    settings = store_settings.model_copy(
        update={"store": store_settings.store.model_copy(update={"watchlist_refresh_s": 2.0})}
    )
    enrol_subject(shop, face_models, "Joseph_Biden", photos=3)
    sface = FaceModels(
        yunet, create_embedder("sface-2021dec", registry), quality, registry, settings.matching
    )
    with RtspServer(DEBATE, loop=True) as server:
        with shop.tx() as tx:
            alice, keys = tx.user("alice"), shop.store.keys
            add_camera(tx.session, keys, tx.organisation, alice, tx.site, "till", server.url)
            update_camera(tx.session, keys, tx.organisation, alice, tx.camera, enabled=False)
        supervisor = Supervisor(settings, shop.store)
        supervisor.start()
        try:
            health = lambda: {h.name: h for h in supervisor.health()}["Leeds/till"]  # noqa: E731
            wait_until(lambda: alert_models(shop), 180, "an alert with the old model")
            assert set(alert_models(shop)) == {DLIB_ID}
            old_worker = worker_pid("Leeds/till")

            report = switch_model(shop.store, settings, shop.organisation_id, "carol", sface)
            assert report.switched
            switched_at = len(alert_models(shop))

            wait_until(
                lambda: (
                    worker_pid_or_none("Leeds/till") not in (None, old_worker)
                    and health().state is CameraState.RUNNING
                ),
                90,
                "the camera to run the new model",
            )
            wait_until(
                lambda: SFACE_ID in alert_models(shop)[switched_at:], 120, "an alert with SFace"
            )
            assert health().restarts == 0, "a model change is not a failure"
            assert health().error is None
        finally:
            supervisor.stop()
    models = alert_models(shop)
    first_sface = models.index(SFACE_ID)
    assert set(models[:first_sface]) == {DLIB_ID}
    assert set(models[first_sface:]) == {SFACE_ID}, "once switched, never the old model again"


def worker_pid_or_none(name: str) -> int | None:
    try:
        return worker_pid(name)
    except ValueError:  # between the old worker's end and the new one's start
        return None
