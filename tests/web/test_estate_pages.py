"""The estate register in the web app: the list with its filters, a device's page with
its probe history, the API, site scope, and the transparency page's estate counts."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.support.shop import Shop
from tests.support.web import api_token, sign_in
from watchkeeper.estate.discover import Found
from watchkeeper.estate.probe import ProbeResult
from watchkeeper.governance import estate
from watchkeeper.governance.organisation import add_site
from watchkeeper.store.models import EstateDevice

WHITE_LABEL = {
    "open_ports": {"http": 80, "hikvision-sdk": 8000},
    "onvif": {
        "manufacturer": "Vantage Secure",
        "model": "VS-IPC2042",
        "firmware": "V5.5.53 build 180706",
        "analytics": ["GenderAge x:HumanAttribute"],
    },
    "mac": "44:47:CC:77:88:99",
    "http": {"status": 200, "server": None, "title": "Vantage Secure", "location": None},
}


@pytest.fixture
def register(shop: Shop) -> dict[str, str]:
    """A probed white-label Hikvision at Leeds and an unprobed device at York; ids."""
    with shop.tx() as tx:
        alice = tx.user("alice")
        york = add_site(tx.session, shop.store.keys, tx.organisation, alice, "York")
        for site, address in ((tx.site, "10.0.0.50"), (york, "10.1.0.50")):
            estate.record_discovery(
                tx.session,
                shop.store.keys,
                tx.organisation,
                alice,
                site,
                [Found(address, {"http": 80}, ["tcp-sweep"])],
                ["10.0.0.0/16"],
                1.0,
            )
        device = tx.session.scalars(
            select(EstateDevice).where(EstateDevice.address == "10.0.0.50")
        ).one()
        estate.record_probes(
            tx.session,
            shop.store.keys,
            tx.organisation,
            alice,
            [(device, ProbeResult(True, 0.3, WHITE_LABEL, []))],
            1095,
            False,
        )
        ids = {d.address: str(d.id) for d in tx.session.scalars(select(EstateDevice))}
    return ids


def test_the_register_page_filters_and_scopes(
    web: TestClient, shop: Shop, register: dict[str, str]
) -> None:
    frank = sign_in(web, "frank")  # auditor: every site
    page = frank.get("/estate")
    assert page.status_code == 200
    for address in ("10.0.0.50", "10.1.0.50", "10.0.0.9"):
        assert address in page.text
    filtered = frank.get("/estate", params={"finding": "demographic-analytics-offered"})
    assert "10.0.0.50" in filtered.text
    assert "10.1.0.50" not in filtered.text
    by_maker = frank.get("/estate", params={"maker": "Hikvision"})
    assert "10.0.0.50" in by_maker.text
    assert "10.0.0.9" not in by_maker.text
    carol = sign_in(web, "carol")  # manager at Leeds only
    assert "10.1.0.50" not in carol.get("/estate").text
    assert carol.get(f"/estate/{register['10.1.0.50']}").status_code == 404
    assert sign_in(web, "bob").get("/estate").status_code == 403


def test_a_device_page_shows_why_and_its_history(web: TestClient, register: dict[str, str]) -> None:
    page = sign_in(web, "carol").get(f"/estate/{register['10.0.0.50']}")
    assert page.status_code == 200
    for expected in (
        "Hikvision",
        "44:47:CC:77:88:99 is registered to Hangzhou Hikvision",
        "Offers demographic analytics",
        "FCC 22-84",
        "V5.5.53 build 180706",
    ):
        assert expected in page.text, expected
    unprobed = sign_in(web, "alice").get(f"/estate/{register['10.1.0.50']}")
    assert "Never probed" in unprobed.text


def test_the_api_lists_and_shows(web: TestClient, shop: Shop, register: dict[str, str]) -> None:
    headers = api_token(shop, "frank")
    listed = web.get("/api/estate", params={"site": "Leeds"}, headers=headers).json()
    assert {d["address"] for d in listed} == {"10.0.0.50", "10.0.0.9"}
    detail = web.get(f"/api/estate/{register['10.0.0.50'][:8]}", headers=headers).json()
    assert detail["maker"] == "Hikvision"
    assert len(detail["probes"]) == 1
    assert {f["rule"] for f in detail["findings"]} >= {
        "fcc-covered-list",
        "demographic-analytics-offered",
    }
    assert web.get("/api/estate/ffffffff", headers=headers).status_code == 404


def test_the_transparency_page_counts_the_estate(web: TestClient, register: dict[str, str]) -> None:
    page = sign_in(web, "dave").get("/transparency")  # a reviewer: counts, not the register
    assert page.status_code == 200
    assert "Camera estate" in page.text
    assert "Made by Hikvision</th><td>1" in page.text
    assert "Offers demographic analytics (gender, age, ethnicity)</th><td>1" in page.text
