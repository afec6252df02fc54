"""The audit log viewer (/audit, its CSV export, /api/audit, /api/audit/verify) and the
transparency page (/transparency, /api/transparency), over real HTTP on SQLite and
PostgreSQL: who may see what, filters, pages, the chain's status before and after an
event is edited in the database, and figures from real enrolments and reviews."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from tests.support.shop import Shop, Sighting, enrol_subject, record_sighting
from tests.support.web import api_token, sign_in
from watchkeeper.governance import audit
from watchkeeper.governance.alerts import review
from watchkeeper.pipeline import FaceModels
from watchkeeper.store.models import Alert, AuditEvent, Decision, utcnow

ROLES = [
    # (user, may read the audit log, may read the transparency figures)
    ("alice", True, True),  # admin
    ("carol", True, True),  # manager
    ("frank", True, True),  # auditor
    ("bob", False, True),  # reporter
    ("dave", False, True),  # reviewer
]


def events(shop: Shop) -> list[AuditEvent]:
    """Every event of the shop's log, oldest first."""
    with shop.store.session() as session:
        rows = list(session.scalars(select(AuditEvent).order_by(AuditEvent.sequence)))
        session.expunge_all()
    return rows


def newest(shop: Shop) -> AuditEvent:
    return events(shop)[-1]


def test_who_may_read_the_log_and_the_figures(web: TestClient, shop: Shop) -> None:
    for name, may_audit, may_view in ROLES:
        browser = sign_in(web, name)
        headers = api_token(shop, name)
        audit_codes = {
            browser.get("/audit").status_code,
            browser.get("/audit/export.csv").status_code,
            web.get("/api/audit", headers=headers).status_code,
            web.get("/api/audit/verify", headers=headers).status_code,
        }
        view_codes = {
            browser.get("/transparency").status_code,
            web.get("/api/transparency", headers=headers).status_code,
        }
        assert audit_codes == {200 if may_audit else 403}, name
        assert view_codes == {200 if may_view else 403}, name


def test_signed_out_visitors_are_sent_to_sign_in(web: TestClient) -> None:
    for path in ("/audit", "/audit/export.csv", "/transparency"):
        response = web.get(path)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?next=")
    for path in ("/api/audit", "/api/audit/verify", "/api/transparency"):
        assert web.get(path).status_code == 401


def expected(shop: Shop, keep: Callable[[AuditEvent], bool]) -> list[int]:
    """Sequence numbers of the events ``keep`` selects, newest first (an independent
    filter over the whole log)."""
    return [event.sequence for event in reversed(events(shop)) if keep(event)]


def mentions(event: AuditEvent, text: str) -> bool:
    return (event.object_id or "").startswith(text) or text in json.dumps(event.details)


FILTERS: list[tuple[dict[str, str], Callable[[AuditEvent, dict[str, str]], bool]]] = [
    ({"actor": "bob"}, lambda e, ids: e.actor == "bob"),
    ({"action": "user."}, lambda e, ids: e.action.startswith("user.")),
    ({"action": "user.sign"}, lambda e, ids: e.action.startswith("user.sign")),
    ({"action": "user_"}, lambda e, ids: False),  # "_" and "%" are not wildcards
    ({"action": "%"}, lambda e, ids: False),
    (
        {"actor": "alice", "action": "user.c"},
        lambda e, ids: (e.actor, e.action) == ("alice", "user.create"),
    ),
    ({"target": "incident8"}, lambda e, ids: mentions(e, ids["incident8"])),
    ({"target": "site"}, lambda e, ids: mentions(e, ids["site"])),
    ({"target": "SITE8"}, lambda e, ids: mentions(e, ids["SITE8"])),
    ({"start": "today"}, lambda e, ids: True),
    ({"start": "today", "end": "today"}, lambda e, ids: True),
    ({"end": "yesterday"}, lambda e, ids: False),
    ({"start": "tomorrow"}, lambda e, ids: False),
]


def filled(params: dict[str, str], shop: Shop) -> tuple[dict[str, str], dict[str, str]]:
    """The query (with the shop's real ids and dates put in) and the ids it refers to."""
    today = utcnow().date()
    days = {"today": today, "yesterday": today.fromordinal(today.toordinal() - 1)}
    days["tomorrow"] = today.fromordinal(today.toordinal() + 1)
    ids = {"incident": str(shop.incident_id), "site": str(shop.site_id)}
    words = {
        "incident8": ids["incident"][:8],
        "site": ids["site"],
        "SITE8": ids["site"][:8].upper(),
    }
    query = {
        name: str(days.get(value) or words.get(value) or value) for name, value in params.items()
    }
    return query, {name: value.lower() for name, value in (ids | words).items()}


def test_filters_select_the_same_events_on_the_api_and_the_page(
    web: TestClient, shop: Shop
) -> None:
    """Each filter of :data:`FILTERS` against an independent filter over the whole log."""
    browser, headers = sign_in(web, "frank"), api_token(shop, "frank")
    for params, keep in FILTERS:
        query, ids = filled(params, shop)
        # Each reading is recorded after it, so the next one may show it.
        want = expected(shop, lambda event: keep(event, ids))  # noqa: B023
        answer = web.get("/api/audit", params=query | {"limit": 1000}, headers=headers)
        assert answer.status_code == 200, answer.text
        assert [event["sequence"] for event in answer.json()["events"]] == want, params
        want = expected(shop, lambda event: keep(event, ids))  # noqa: B023
        page = browser.get("/audit", params=query)
        assert page.status_code == 200
        shown = [int(n) for n in re.findall(r"<tr>\s*<td>(\d+)</td>", page.text)]
        assert shown == want[:100], params
        assert ("No event matches." in page.text) == (not want)


def test_reading_the_log_is_audited_with_its_filters(web: TestClient, shop: Shop) -> None:
    response = sign_in(web, "frank").get("/audit", params={"action": "subject.", "actor": " "})
    assert response.status_code == 200
    event = newest(shop)
    assert (event.actor, event.action) == ("frank", "audit.view")
    assert event.details == {"filters": {"action": "subject."}, "shown": 0, "chain_intact": True}


def test_pages_follow_the_log_newest_first(web: TestClient, shop: Shop) -> None:
    """Over 120 events: the first page shows the newest 100 with a link to older ones,
    which shows the rest; the API pages the same way in both directions."""
    with shop.tx() as tx:
        for number in range(110):
            audit.record(tx.session, shop.store.keys, tx.organisation.id, "carol", "test.fill",
                         None, None, number=number)  # fmt: skip
    browser = sign_in(web, "frank")
    everything = expected(shop, lambda event: True)
    assert 120 < len(everything) < 200
    first = browser.get("/audit")
    rows = [int(n) for n in re.findall(r"<tr>\s*<td>(\d+)</td>", first.text)]
    assert rows == everything[:100]
    older = re.search(r'<a href="([^"]+)" rel="next">Older</a>', first.text)
    assert older is not None
    assert 'rel="prev"' not in first.text
    second = browser.get(older.group(1).replace("&amp;", "&"))
    rows = [int(n) for n in re.findall(r"<tr>\s*<td>(\d+)</td>", second.text)]
    assert rows == everything[100:200]
    assert 'rel="prev">Newer</a>' in second.text

    headers = api_token(shop, "frank")
    everything = expected(shop, lambda event: True)
    walked, cursor = [], {"limit": 40}
    while True:
        body = web.get("/api/audit", params=cursor, headers=headers).json()
        walked += [event["sequence"] for event in body["events"]]
        if body["older"] is None:
            break
        cursor = {"limit": 40, "before": body["older"]}
    assert walked == everything
    back = web.get("/api/audit", params={"limit": 40, "after": everything[-1] - 1}, headers=headers)
    assert [e["sequence"] for e in back.json()["events"]] == everything[-40:]
    assert back.json()["newer"] == everything[-40]


def test_the_export_is_csv_of_the_filtered_events_and_is_audited(
    web: TestClient, shop: Shop
) -> None:
    with shop.tx() as tx:
        audit.record(tx.session, shop.store.keys, tx.organisation.id, "=SUM(1+1)",
                     "subject.suspend", "subject", "0c1d2e3f", note="check")  # fmt: skip
    browser = sign_in(web, "frank")
    want = expected(shop, lambda event: event.action.startswith("user."))
    response = browser.get("/audit/export.csv", params={"action": "user."})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"].startswith('attachment; filename="audit-')
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [int(row["sequence"]) for row in rows] == want[::-1]  # oldest first
    assert {row["action"] for row in rows} >= {"user.create", "user.password", "user.sign-in"}
    assert json.loads(rows[0]["details"]) == events(shop)[want[-1] - 1].details
    assert (newest(shop).action, newest(shop).details) == (
        "audit.export", {"filters": {"action": "user."}, "rows": len(want)})  # fmt: skip

    subjects = browser.get("/audit/export.csv", params={"action": "subject."})
    [suspension] = list(csv.DictReader(io.StringIO(subjects.text)))
    assert suspension["actor"] == "'=SUM(1+1)"  # a spreadsheet shows it as text, not a formula


def tamper(shop: Shop, sequence: int) -> None:
    """Edit one event's details directly in the database, as someone with database access
    (and not the key) could."""
    with shop.store.session() as session:
        session.execute(
            update(AuditEvent)
            .where(AuditEvent.organisation_id == shop.organisation_id)
            .where(AuditEvent.sequence == sequence)
            .values(details={"edited": True})
        )


def test_the_chain_shows_intact_and_then_broken_after_an_edit(web: TestClient, shop: Shop) -> None:
    browser, headers = sign_in(web, "frank"), api_token(shop, "frank")
    page = browser.get("/audit")
    count = len(events(shop)) - 1  # the page's own audit.view came after verification
    assert "Chain intact" in page.text
    assert f"All {count} events were verified" in page.text
    verified = web.get("/api/audit/verify", headers=headers).json()
    assert verified == {
        "organisation": "Corner Shops",
        "events": count + 1,
        "intact": True,
        "problems": [],
    }
    assert (newest(shop).action, newest(shop).details["intact"]) == ("audit.verify", True)

    tamper(shop, 3)
    page = browser.get("/audit")
    assert page.status_code == 200
    assert "Chain broken" in page.text
    assert "event 3 (row" in page.text
    assert "its contents were changed after it was written" in page.text
    assert "Chain intact" not in page.text
    assert newest(shop).details["chain_intact"] is False
    verified = web.get("/api/audit/verify", headers=headers).json()
    assert verified["intact"] is False
    assert any(p.startswith("event 3 ") for p in verified["problems"])


BAD_FILTERS = [
    ({"start": "last week"}, "not a date"),
    ({"end": "2026-02-30"}, "not a date"),
    ({"start": "2026-03-02", "end": "2026-03-01"}, "must end after it starts"),
    ({"actor": "x" * 150}, "more than 100 characters"),
]


def test_bad_filters_are_refused_and_nothing_is_recorded(web: TestClient, shop: Shop) -> None:
    browser, headers = sign_in(web, "frank"), api_token(shop, "frank")
    count = len(events(shop))
    for params, message in BAD_FILTERS:
        page = browser.get("/audit", params=params)
        assert page.status_code == 422, params
        assert message in page.text
        answer = web.get("/api/audit", params=params, headers=headers)
        assert answer.status_code == 422, params
        assert message in answer.json()["detail"]
        assert browser.get("/audit/export.csv", params=params).status_code == 422
    for query in ({"before": "soon"}, {"actor": "x" * 201}, {"before": 3, "after": 1}):
        assert web.get("/api/audit", params=query, headers=headers).status_code == 422, query
    assert len(events(shop)) == count


@pytest.fixture
def reviewed(
    shop: Shop, face_models: FaceModels, sightings: Callable[[str, int], Sighting]
) -> None:
    """One approved entry with three alerts: one confirmed by two reviewers, one rejected,
    one pending."""
    subject_id = enrol_subject(shop, face_models, "Joseph_Biden")
    seen = sightings("Joseph_Biden", 4)
    with shop.tx() as tx:
        alerts: list[Alert] = []
        for _ in range(3):
            alert = record_sighting(tx.session, shop, tx.camera, subject_id, seen)
            assert alert is not None
            alerts.append(alert)
        for name, alert, decision in [
            ("dave", alerts[0], Decision.CONFIRM),
            ("erin", alerts[0], Decision.CONFIRM),
            ("dave", alerts[1], Decision.REJECT),
        ]:
            review(tx.session, shop.store, tx.organisation, tx.user(name), alert, decision)


def cells(html: str) -> dict[str, str]:
    """The transparency page's figures by row heading (the first table that names each)."""
    found: dict[str, str] = {}
    for heading, value in re.findall(r'<th scope="row">([^<]+)</th>\s*<td>([^<]+)</td>', html):
        found.setdefault(heading, value.strip())
    return found


def test_transparency_figures_for_the_last_30_days(
    web: TestClient, shop: Shop, reviewed: None
) -> None:
    page = sign_in(web, "dave").get("/transparency")
    assert page.status_code == 200
    figures = cells(page.text)
    assert figures["Alerts raised"] == "3"
    assert figures["Confirmed by two reviewers"] == "1"
    assert figures["Rejected (not the person)"] == "1"
    assert figures["Still pending"] == "1"
    assert figures["False-match rate among decided alerts"].startswith("50.0% (1 rejected of 2")
    assert figures["Entries proposed"] == "1"
    assert figures["Approved by a second person"] == "1"
    assert "Declared accuracy" in page.text
    assert "Source: the audit log" in page.text
    assert newest(shop).action == "transparency.view"

    body = web.get("/api/transparency", headers=api_token(shop, "bob")).json()
    assert body["alerts"] == {
        "raised": 3,
        "confirmed": 1,
        "rejected": 1,
        "unsure": 0,
        "pending": 1,
        "deleted_undecided": 0,
    }
    assert body["false_match_rate"] == 0.5
    assert body["watchlist_now"]["searched"] == 1
    assert body["watchlist_at_start"]["searched"] == 0
    assert body["declared"]["fpir"] == 0.001
    assert body["declared"]["watchlist_size"] == 1
    assert no_secrets(body)


def no_secrets(value: Any) -> bool:
    """No field that could hold a vector, a key, a hash or a token, and no list of numbers."""
    if isinstance(value, dict):
        return all(
            not re.search(r"vector|key|hash|token|mac", name) and no_secrets(item)
            for name, item in value.items()
        )
    if isinstance(value, list):
        return not any(isinstance(item, float) for item in value)
    return True


def test_transparency_for_an_earlier_period(web: TestClient, shop: Shop, reviewed: None) -> None:
    """Before anything happened every figure is zero; the form keeps the dates asked for."""
    page = sign_in(web, "erin").get(
        "/transparency", params={"start": "2020-01-01", "end": "2020-01-31"}
    )
    figures = cells(page.text)
    assert figures["Alerts raised"] == "0"
    assert figures["False-match rate among decided alerts"] == "none decided"
    assert 'value="2020-01-31"' in page.text
    body = web.get(
        "/api/transparency",
        params={"start": "2020-01-01", "end": "2020-01-31"},
        headers=api_token(shop, "erin"),
    ).json()
    assert (body["start"], body["end"]) == ("2020-01-01T00:00:00Z", "2020-02-01T00:00:00Z")
    assert body["false_match_rate"] is None
    assert body["watchlist_now"]["searched"] == 1
    assert sum(body["watchlist_at_start"].values()) == 0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": "2026-03-02", "end": "2026-03-01"}, "must end after it starts"),
        ({"start": "March"}, "not a date"),
    ],
)
def test_a_bad_period_is_refused(
    web: TestClient, shop: Shop, params: dict[str, str], message: str
) -> None:
    count = len(events(shop))
    page = sign_in(web, "dave").get("/transparency", params=params)
    assert page.status_code == 422
    assert message in page.text
    answer = web.get("/api/transparency", params=params, headers=api_token(shop, "dave"))
    assert answer.status_code == 422
    assert message in answer.json()["detail"]
    assert len(events(shop)) == count + 2  # the sign-in and the token, nothing else
