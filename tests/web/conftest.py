"""A web app over the shop's database, its staff with passwords (tests/support/web.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.support.shop import Shop
from tests.support.web import set_passwords
from watchkeeper.config import Settings
from watchkeeper.web.app import create_app


@pytest.fixture
def web(shop: Shop, store_settings: Settings) -> Iterator[TestClient]:
    """The app without recognition (no supervisor); every shop user has a password."""
    set_passwords(shop)
    with TestClient(create_app(store_settings, shop.store), follow_redirects=False) as client:
        yield client
