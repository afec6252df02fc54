"""The estate register's governance on SQLite and PostgreSQL: who may see and change
it, site scope, all-or-nothing imports, probe history and the audit log."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tests.support.shop import USERS, Shop
from watchkeeper.errors import NotFoundError, PolicyError
from watchkeeper.estate.discover import Found
from watchkeeper.estate.importer import read_assets
from watchkeeper.estate.probe import ProbeResult
from watchkeeper.governance import audit, estate
from watchkeeper.governance.organisation import add_site
from watchkeeper.store.models import AuditEvent, EstateDevice

HIKVISION_FACTS = {
    "open_ports": {"http": 80, "rtsp": 554},
    "onvif": {
        "manufacturer": "HIKVISION",
        "model": "DS-2CD2143G0-I",
        "firmware": "V5.5.82 build 190909",
    },
    "mac": "BC:AD:28:11:22:33",
    "http": {
        "status": 302,
        "server": "App-webs/",
        "title": None,
        "location": "/doc/page/login.asp",
    },
}


def actions(shop: Shop) -> list[str]:
    with shop.tx() as tx:
        return list(
            tx.session.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.organisation_id == shop.organisation_id)
                .order_by(AuditEvent.sequence)
            )
        )


def discover_at(shop: Shop, site_name: str, *addresses: str, by: str = "alice") -> None:
    with shop.tx() as tx:
        site = (
            tx.site
            if site_name == "Leeds"
            else next(s for s in tx.session.scalars(select(type(tx.site))) if s.name == site_name)
        )
        estate.record_discovery(
            tx.session,
            shop.store.keys,
            tx.organisation,
            tx.user(by),
            site,
            [Found(a, {"http": 80}, ["tcp-sweep"]) for a in addresses],
            ["10.0.0.0/24"],
            0.5,
        )


def test_recognition_cameras_join_the_register(shop: Shop) -> None:
    with shop.tx() as tx:
        views = estate.register_view(tx.session, shop.store.keys, tx.organisation, tx.user("frank"))
    assert [(v["address"], v["origin"], v["ports"], v["site"]) for v in views] == [
        ("10.0.0.9", "camera", {"rtsp": 554}, "Leeds")
    ]
    assert views[0]["location"] == "door"
    with shop.tx() as tx:  # once only
        assert (
            estate.join_cameras(tx.session, shop.store.keys, tx.organisation, tx.user("alice")) == 0
        )
    assert actions(shop).count("estate.cameras.join") == 1


@pytest.mark.parametrize("name", sorted(USERS))
def test_who_may_see_and_survey(shop: Shop, name: str) -> None:
    may_see = name in {"alice", "carol", "frank"}
    may_survey = name in {"alice", "carol"}
    with shop.tx() as tx:
        if may_see:
            estate.register_view(tx.session, shop.store.keys, tx.organisation, tx.user(name))
        else:
            with pytest.raises(PolicyError, match="may not see the camera estate"):
                estate.register_view(tx.session, shop.store.keys, tx.organisation, tx.user(name))
    if may_survey:
        discover_at(shop, "Leeds", "10.0.0.20", by=name)
    else:
        with pytest.raises(PolicyError, match="may not discover"):
            discover_at(shop, "Leeds", "10.0.0.20", by=name)
    with shop.tx() as tx:
        stored = tx.session.scalar(
            select(func.count())
            .select_from(EstateDevice)
            .where(EstateDevice.address == "10.0.0.20")
        )
    assert stored == (1 if may_survey else 0)


def test_site_scope(shop: Shop) -> None:
    with shop.tx() as tx:
        add_site(tx.session, shop.store.keys, tx.organisation, tx.user("alice"), "York")
    discover_at(shop, "York", "10.1.0.5")
    discover_at(shop, "Leeds", "10.0.0.5")
    with shop.tx() as tx:
        york = tx.session.scalars(
            select(EstateDevice).where(EstateDevice.address == "10.1.0.5")
        ).one()
        seen = {
            name: {
                v["address"]
                for v in estate.register_view(
                    tx.session, shop.store.keys, tx.organisation, tx.user(name)
                )
            }
            for name in ("alice", "carol", "frank")
        }
        with pytest.raises(NotFoundError):
            estate.device_detail(tx.session, tx.organisation, tx.user("carol"), str(york.id)[:8])
        assert (
            estate.device_detail(tx.session, tx.organisation, tx.user("frank"), str(york.id))[
                "site"
            ]
            == "York"
        )
    assert seen["alice"] == seen["frank"] == {"10.0.0.9", "10.0.0.5", "10.1.0.5"}
    assert seen["carol"] == {"10.0.0.9", "10.0.0.5"}
    with pytest.raises(NotFoundError):  # carol cannot survey York either
        discover_at(shop, "York", "10.1.0.6", by="carol")


def test_imports_are_all_or_nothing(shop: Shop) -> None:
    rows = read_assets("site,ip,brand\nLeeds,10.0.0.30,HiLook\nYork,10.1.0.30,Axis\n")
    with shop.tx() as tx, pytest.raises(NotFoundError, match="nothing imported: no site"):
        estate.import_assets(
            tx.session, shop.store.keys, tx.organisation, tx.user("alice"), rows, "a.csv"
        )
    with shop.tx() as tx:
        assert (
            tx.session.scalar(
                select(func.count())
                .select_from(EstateDevice)
                .where(EstateDevice.origin == "imported")
            )
            == 0
        )
    good = read_assets(
        "site,ip,brand,location\nLeeds,10.0.0.30,HiLook,till\nLeeds,10.0.0.9,,door\n"
    )
    with shop.tx() as tx:
        new, updated = estate.import_assets(
            tx.session, shop.store.keys, tx.organisation, tx.user("carol"), good, "a.csv"
        )
        views = {
            v["address"]: v
            for v in estate.register_view(
                tx.session, shop.store.keys, tx.organisation, tx.user("carol")
            )
        }
    assert (new, updated) == (1, 1)
    assert views["10.0.0.30"]["maker"] == "Hikvision"
    assert views["10.0.0.30"]["maker_confidence"] == "medium"
    assert "estate.import" in actions(shop)


def test_probe_history_and_current_findings(shop: Shop) -> None:
    discover_at(shop, "Leeds", "10.0.0.40")
    with shop.tx() as tx:
        alice = tx.user("alice")
        estate.mark_sensitive(
            tx.session, shop.store.keys, tx.organisation, alice, tx.site, True, "depot"
        )
        device = tx.session.scalars(
            select(EstateDevice).where(EstateDevice.address == "10.0.0.40")
        ).one()
        estate.record_probes(
            tx.session,
            shop.store.keys,
            tx.organisation,
            alice,
            [(device, ProbeResult(True, 0.2, HIKVISION_FACTS, []))],
            1095,
            False,
        )
    with shop.tx() as tx:
        device = tx.session.scalars(
            select(EstateDevice).where(EstateDevice.address == "10.0.0.40")
        ).one()
        estate.record_probes(
            tx.session,
            shop.store.keys,
            tx.organisation,
            tx.user("carol"),
            [
                (
                    device,
                    ProbeResult(
                        False,
                        5.0,
                        {"open_ports": {}},
                        ["HTTP GET /: no complete answer within 5 s"],
                    ),
                )
            ],
            1095,
            False,
        )
        detail = estate.device_detail(tx.session, tx.organisation, tx.user("frank"), str(device.id))
        flagged = estate.register_view(
            tx.session, shop.store.keys, tx.organisation, tx.user("frank"), finding="not-answering"
        )
    assert [p["answered"] for p in detail["probes"]] == [False, True]  # newest first
    assert {f["rule"] for f in detail["probes"][1]["findings"]} == {
        "fcc-covered-list",
        "uk-sensitive-sites",
        "plain-http",
        "firmware-old",
    }
    uk = next(f for f in detail["probes"][1]["findings"] if f["rule"] == "uk-sensitive-sites")
    assert uk["severity"] == "high"
    assert "marked sensitive" in uk["why"]
    assert [f["rule"] for f in detail["findings"]] == ["not-answering"]
    assert "last answered" in detail["findings"][0]["why"]
    assert detail["maker"] == "Hikvision"
    assert detail["sensitive_site"] is True
    assert [v["address"] for v in flagged] == ["10.0.0.40"]
    assert actions(shop).count("estate.probe") == 2
    with shop.tx() as tx:
        assert audit.verify(tx.session, shop.store.keys, tx.organisation).intact
