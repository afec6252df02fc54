"""The runtime of the service (`watchkeeper/service/runtime.py`): what runs while the web
app runs. Its cameras, alerts and notifications are tested end to end in
test_serve_config.py, test_supervisor.py and test_notify.py; here, what it adds."""

from __future__ import annotations

import datetime as dt
import time

from fastapi.testclient import TestClient

from tests.support.shop import Shop, enrol_in
from watchkeeper.config import Settings
from watchkeeper.governance.organisation import update_camera
from watchkeeper.pipeline import FaceModels
from watchkeeper.service.runtime import Runtime
from watchkeeper.store.models import Subject, utcnow
from watchkeeper.web.app import create_app


def files(shop: Shop) -> set[str]:
    return {str(p.relative_to(shop.store.files.root)) for p in shop.store.files.all_files()}


def test_the_service_sweeps_while_it_runs(
    shop: Shop, store_settings: Settings, face_models: FaceModels
) -> None:
    """`serve`'s runtime runs the sweep from its start (it did not: an entry that expired
    stayed stored, with its photos and templates, until someone ran `purge`)."""
    past = utcnow() - dt.timedelta(days=2)
    with shop.tx() as tx:
        expired = enrol_in(
            tx, shop, face_models, "Joseph_Biden", now=past, expires_at=past + dt.timedelta(days=1)
        )
        update_camera(tx.session, shop.store.keys, tx.organisation, tx.user("alice"), tx.camera,
                      False)  # fmt: skip
        expired_id = expired.id
    runtime = Runtime(store_settings, shop.store)
    with TestClient(create_app(store_settings, shop.store, runtime)):
        deadline = time.monotonic() + 30
        while True:
            with shop.store.session() as session:
                if session.get(Subject, expired_id) is None:
                    break
            assert time.monotonic() < deadline, "the running service did not sweep"
            time.sleep(0.05)
        assert runtime.sweeper is not None
    assert runtime.sweeper is None, "stopped with the service"
    assert files(shop) == set()
