"""A web app over the shop's database, its staff with passwords (tests/support/web.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from tests.support.alerts import raise_alert
from tests.support.shop import Shop, Sighting, enrol_subject
from tests.support.web import set_passwords
from watchkeeper.config import Settings
from watchkeeper.pipeline import FaceModels
from watchkeeper.web.app import create_app


@pytest.fixture
def web(shop: Shop, store_settings: Settings) -> Iterator[TestClient]:
    """The app without recognition (no supervisor); every shop user has a password."""
    set_passwords(shop)
    with TestClient(create_app(store_settings, shop.store), follow_redirects=False) as client:
        yield client


@pytest.fixture
def biden(shop: Shop, face_models: FaceModels) -> uuid.UUID:
    """Joseph Biden's approved entry, two enrolment photos; its id."""
    return enrol_subject(shop, face_models, "Joseph_Biden", photos=2)


@pytest.fixture
def seen(sightings: Callable[[str, int], Sighting]) -> Sighting:
    """A photo of Biden not used for enrolment, as a camera would have seen it."""
    return sightings("Joseph_Biden", 4)


@pytest.fixture
def alert_id(shop: Shop, biden: uuid.UUID, seen: Sighting) -> str:
    """A pending alert of Biden's entry at the shop's door; its id."""
    return raise_alert(shop, biden, seen)
