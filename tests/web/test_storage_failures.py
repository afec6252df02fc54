"""A write the database cannot store is never answered 2xx: a real SQLite database on a
small tmpfs the test fills, the real app over it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.support.data import MODELS
from tests.support.disk import fill, small_tmpfs
from tests.support.shop import Shop, set_up_shop
from tests.support.web import api_token, set_passwords, sign_in
from watchkeeper.config import load_settings
from watchkeeper.store.crypto import encode_key, generate_key
from watchkeeper.store.database import open_store
from watchkeeper.store.models import Incident
from watchkeeper.web.app import create_app

ATTEMPTS = 40
"""Writes tried on the full disk: SQLite may still fit a few into pages it holds."""


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "disk", "16m") as folder:
        yield folder


@pytest.fixture
def shop_on_disk(disk: Path) -> Iterator[tuple[Shop, TestClient]]:
    settings = load_settings(
        models_dir=MODELS, data_dir=disk / "data", key=encode_key(generate_key())
    )
    store = open_store(settings, create=True)
    try:
        shop = set_up_shop(store)
        set_passwords(shop)
        with TestClient(
            create_app(settings, store), follow_redirects=False, raise_server_exceptions=False
        ) as client:
            yield shop, client
    finally:
        store.close()


def stored_descriptions(shop: Shop) -> dict[str, str]:
    with shop.tx() as tx:
        return {
            str(incident.id): incident.description
            for incident in tx.session.scalars(select(Incident))
        }


def test_a_full_disk_answers_507_with_the_reason_and_every_2xx_is_stored(
    disk: Path, shop_on_disk: tuple[Shop, TestClient]
) -> None:
    shop, client = shop_on_disk
    bob = api_token(shop, "bob")
    filler = fill(disk)
    answers = []
    for attempt in range(ATTEMPTS):
        answer = client.post(
            "/api/incidents",
            json={
                "site": "Leeds",
                "category": "threats",
                "description": f"attempt {attempt}: " + "shouted at the till. " * 150,
            },
            headers=bob,
        )
        answers.append(answer)
    refused = [a for a in answers if a.status_code >= 300]
    assert refused, "the disk never filled up"
    assert {a.status_code for a in refused} == {507}, [a.text for a in refused]
    assert all("disk" in a.json()["detail"] and "full" in a.json()["detail"] for a in refused)

    filler.unlink()
    stored = stored_descriptions(shop)
    for answer in answers:
        if answer.status_code == 201:
            incident = answer.json()
            assert stored.get(incident["id"]) == incident["description"], "a 201 not stored"
    assert len(stored) == 1 + sum(a.status_code == 201 for a in answers)
    after = client.post(
        "/api/incidents",
        json={"site": "Leeds", "category": "threats", "description": "space is back"},
        headers=bob,
    )
    assert after.status_code == 201, after.text
    assert stored_descriptions(shop)[after.json()["id"]] == "space is back"


def test_a_page_whose_audit_event_cannot_be_written_is_not_served(
    disk: Path, shop_on_disk: tuple[Shop, TestClient]
) -> None:
    _, client = shop_on_disk
    alice = sign_in(client, "alice")
    assert alice.get("/audit").status_code == 200
    filler = fill(disk)
    pages = [alice.get("/audit") for _ in range(ATTEMPTS)]
    refused = [page for page in pages if page.status_code != 200]
    assert refused, "the disk never filled up"
    assert {page.status_code for page in refused} == {507}
    assert all("Audit log" not in page.text for page in refused)
    filler.unlink()
    assert alice.get("/audit").status_code == 200
