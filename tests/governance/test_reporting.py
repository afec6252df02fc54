"""Transparency figures counted from the audit log, over periods cut between real actions
(enrolment, approval, alerts and their reviews, automatic suspension, restriction,
erasure, the retention sweep, a subject access search), on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from sqlalchemy import select

from tests.support.data import lfw_photos
from tests.support.shop import Shop, Sighting, Tx, enrol_in, record_sighting
from watchkeeper.config import MatchingConfig, Settings
from watchkeeper.errors import PolicyError
from watchkeeper.governance import subject_access
from watchkeeper.governance.alerts import review
from watchkeeper.governance.organisation import Policy, set_policy
from watchkeeper.governance.reporting import (
    AlertOutcomes,
    Deletions,
    EntryChanges,
    Period,
    SubjectAccess,
    WatchlistSize,
    alert_outcomes,
    deletions,
    entry_changes,
    operating_point,
    parse_bound,
    transparency_report,
    watchlist_at,
    watchlist_now,
)
from watchkeeper.governance.reporting import (
    subject_access as subject_access_counts,
)
from watchkeeper.governance.retention import purge
from watchkeeper.governance.subjects import approve, erase, restrict
from watchkeeper.pipeline import FaceModels
from watchkeeper.store.models import Alert, AuditEvent, Decision, Subject, utcnow


def alert(tx: Tx, shop: Shop, subject: Subject, seen: Sighting, *reviews: tuple[str, Decision],
          occurred_at: dt.datetime | None = None) -> Alert:  # fmt: skip
    """A stored alert on ``subject``, reviewed by each (reviewer, decision) in turn."""
    stored = record_sighting(tx.session, shop, tx.camera, subject.id, seen, occurred_at)
    assert stored is not None
    for name, decision in reviews:
        review(tx.session, shop.store, tx.organisation, tx.user(name), stored, decision)
    return stored


CONFIRM = Decision.CONFIRM


@pytest.fixture
def timeline(
    shop: Shop, face_models: FaceModels, sightings: Callable[[str, int], Sighting]
) -> dict[str, dt.datetime]:
    """Three phases of a shop's life, with the instants between them.

    Phase 1 (``t0`` to ``t1``): Biden (A) and Powell (B, expiring in a day) are enrolled and
    approved, Trump (C) is proposed; six alerts: a1 confirmed by two reviewers, a2
    rejected (which suspends A: the policy allows one false match), a3 unsure, a4 with
    one confirmation, a5 (45 days old) and b1 untouched.
    Phase 2 (``t1`` to ``t2``): a4 gets its second confirmation, A is reinstated and
    restricted, C is erased, a sweep two days ahead deletes B with b1 and the old a5, and
    a subject access search is made.
    """
    store = shop.store
    with shop.tx() as tx:
        set_policy(
            tx.session, store.keys, tx.organisation, tx.user("alice"),
            Policy(false_matches_before_suspension=1),
        )  # fmt: skip
    marks = {"t0": utcnow()}
    with shop.tx() as tx:
        a = enrol_in(tx, shop, face_models, "Joseph_Biden")
        b = enrol_in(
            tx, shop, face_models, "Colin_Powell", expires_at=utcnow() + dt.timedelta(days=1)
        )
        enrol_in(tx, shop, face_models, "Donald_Trump", approve_by=None)
        biden, powell = sightings("Joseph_Biden", 4), sightings("Colin_Powell", 6)
        alert(tx, shop, a, biden, ("dave", CONFIRM), ("erin", CONFIRM))
        a2 = alert(tx, shop, a, biden)
        alert(tx, shop, a, biden, ("dave", Decision.UNSURE))
        a4 = alert(tx, shop, a, biden, ("dave", CONFIRM))
        alert(tx, shop, a, biden, occurred_at=utcnow() - dt.timedelta(days=45))
        alert(tx, shop, b, powell)
        # Last: the rejection suspends A, whose later sightings would be stored no more.
        review(tx.session, store, tx.organisation, tx.user("dave"), a2, Decision.REJECT)
        a4_id, a_id = a4.id, a.id
    marks["t1"] = utcnow()
    with shop.tx() as tx:
        a4 = tx.session.get_one(Alert, a4_id)
        review(tx.session, store, tx.organisation, tx.user("erin"), a4, CONFIRM)
        a = tx.session.get_one(Subject, a_id)
        approve(tx.session, store.keys, tx.organisation, tx.user("carol"), a)
        restrict(tx.session, store.keys, tx.organisation, tx.user("carol"), a, True, "asked")
        # Labels are encrypted in the database: the entry is found after reading.
        (c,) = [s for s in tx.session.scalars(select(Subject)) if s.label == "Donald_Trump"]
        erase(tx.session, store, tx.organisation, tx.user("carol"), c, "withdrawn")
    purge(store, "carol", now=utcnow() + dt.timedelta(days=2))
    with shop.tx() as tx:
        photo = lfw_photos("Joseph_Biden")[3]
        subject_access.search(
            tx.session, store, tx.organisation, tx.user("carol"), face_models,
            photo.read_bytes(), photo.name, 0.9,
        )  # fmt: skip
    marks["t2"] = utcnow()
    return marks


FIGURES = [
    # (period, alerts, entry changes, deletions, subject access)
    (
        ("t0", "t1"),
        AlertOutcomes(raised=6, confirmed=1, rejected=1, unsure=1, pending=3),
        EntryChanges(proposed=3, approved=2, suspended=1, suspended_automatically=1),
        Deletions(),
        SubjectAccess(),
    ),
    (
        ("t1", "t2"),
        AlertOutcomes(),
        EntryChanges(reinstated=1, restricted=1, erased=1),
        Deletions(
            sweeps=1, expired_entries=1, alerts_of_expired_entries=1, alerts_past_retention=1
        ),
        SubjectAccess(searches=1),
    ),
    (
        ("t0", "t2"),
        AlertOutcomes(raised=6, confirmed=2, rejected=1, unsure=1, deleted_undecided=2),
        EntryChanges(
            proposed=3,
            approved=2,
            reinstated=1,
            suspended=1,
            suspended_automatically=1,
            restricted=1,
            erased=1,
        ),
        Deletions(
            sweeps=1, expired_entries=1, alerts_of_expired_entries=1, alerts_past_retention=1
        ),
        SubjectAccess(searches=1),
    ),
]


def test_counts_over_periods_come_from_the_audit_log(
    shop: Shop, timeline: dict[str, dt.datetime]
) -> None:
    """Each period counts what happened in it, after the alerts and entries themselves
    were deleted; alerts by their status at the period's end."""
    with shop.tx() as tx:
        assert tx.session.query(Alert).count() == 4  # b1 and a5 are gone
        for (start, end), alerts, entries, deleted, requests in FIGURES:
            period = Period(timeline[start], timeline[end])
            where = f"{start} to {end}"
            assert alert_outcomes(tx.session, shop.organisation_id, period) == alerts, where
            assert entry_changes(tx.session, shop.organisation_id, period) == entries, where
            assert deletions(tx.session, shop.organisation_id, period) == deleted, where
            assert subject_access_counts(tx.session, shop.organisation_id, period) == requests


def test_false_match_rate_is_rejected_among_decided_alerts(
    shop: Shop, timeline: dict[str, dt.datetime]
) -> None:
    with shop.tx() as tx:
        rates = [
            alert_outcomes(tx.session, shop.organisation_id, Period(timeline[a], timeline[b]))
            for a, b in (("t0", "t1"), ("t0", "t2"), ("t1", "t2"))
        ]
    assert [r.false_match_rate for r in rates] == [0.5, 1 / 3, None]
    assert [r.reviewed for r in rates] == [2, 3, 0]


@pytest.mark.parametrize(
    ("mark", "expected"),
    [
        ("t0", WatchlistSize()),
        ("t1", WatchlistSize(searched=1, pending=1, suspended=1)),
        ("t2", WatchlistSize(restricted=1)),
    ],
)
def test_the_watchlist_at_any_instant_is_replayed_from_the_log(
    shop: Shop, timeline: dict[str, dt.datetime], mark: str, expected: WatchlistSize
) -> None:
    with shop.tx() as tx:
        assert watchlist_at(tx.session, shop.organisation_id, timeline[mark]) == expected


@pytest.mark.parametrize("days_ahead", [0, 400])
def test_replaying_the_log_to_any_moment_agrees_with_the_entries_held(
    shop: Shop, timeline: dict[str, dt.datetime], days_ahead: int
) -> None:
    """The replay and the entries agree now and a year on, when A has expired (awaiting
    the sweep, never searched)."""
    when = utcnow() + dt.timedelta(days=days_ahead)
    with shop.tx() as tx:
        now = watchlist_now(tx.session, shop.organisation_id, when)
        assert watchlist_at(tx.session, shop.organisation_id, when) == now
    assert now == (WatchlistSize(expired=1) if days_ahead else WatchlistSize(restricted=1))


def test_the_report_is_audited_and_changes_nothing_else(
    shop: Shop, timeline: dict[str, dt.datetime], store_settings: Settings
) -> None:
    period = Period(timeline["t0"], timeline["t2"])
    with shop.tx() as tx:
        before = tx.session.query(AuditEvent).count()
        report = transparency_report(
            tx.session, shop.store.keys, tx.organisation, tx.user("dave"), period, store_settings
        )
        events = tx.session.query(AuditEvent).order_by(AuditEvent.sequence.desc()).all()
    assert len(events) == before + 1
    assert (events[0].actor, events[0].action) == ("dave", "transparency.view")
    assert events[0].details == {"start": period.start.isoformat(), "end": period.end.isoformat()}
    assert report.alerts.raised == 6
    assert report.watchlist_now == WatchlistSize(restricted=1)
    assert report.declared is not None
    assert report.declared.fpir == pytest.approx(1e-3)


def test_a_deactivated_user_gets_no_report(shop: Shop) -> None:
    with shop.tx() as tx:
        tx.user("dave").active = False
        with pytest.raises(PolicyError, match="deactivated"):
            transparency_report(
                tx.session, shop.store.keys, tx.organisation, tx.user("dave"),
                Period.requested(),
            )  # fmt: skip


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ("2026-03-01", "2026-03-31", ("2026-03-01T00:00:00+00:00", "2026-04-01T00:00:00+00:00")),
        ("", "", ("2026-05-17T00:00:00+00:00", "2026-06-16T00:00:00+00:00")),
        ("", "2026-01-30", ("2026-01-01T00:00:00+00:00", "2026-01-31T00:00:00+00:00")),
        ("2026-06-01T08:00", "2026-06-01T09:30+01:00",
         ("2026-06-01T08:00:00+00:00", "2026-06-01T08:30:00+00:00")),
    ],
)  # fmt: skip
def test_requested_periods(start: str, end: str, expected: tuple[str, str]) -> None:
    """Dates include both days; the default is the last 30 days, today included."""
    now = dt.datetime(2026, 6, 15, 13, 5, tzinfo=dt.UTC)
    period = Period.requested(start, end, now)
    assert (period.start.isoformat(), period.end.isoformat()) == expected


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2026-03-31", "2026-03-01", "must end after it starts"),
        ("yesterday", "", "not a date"),
        ("", "2026-02-30", "not a date"),
    ],
)
def test_bad_periods_are_refused(start: str, end: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        Period.requested(start, end)


def test_a_bare_end_date_includes_that_day() -> None:
    assert parse_bound("2026-02-28", end=True) == dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    assert parse_bound("2026-02-28") == dt.datetime(2026, 2, 28, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("threshold", "size", "fpir", "expected"),
    [(None, 100, 1e-3, 0.4592), (None, 1000, 1e-3, 0.4986), (0.96, 100, None, 0.96)],
)
def test_the_declared_operating_point(
    settings: Settings, threshold: float | None, size: int, fpir: float | None, expected: float
) -> None:
    """The calibration's threshold for the searched watchlist's size and its FPIR, or a
    fixed threshold with nothing declared."""
    configured = settings.model_copy(update={"matching": MatchingConfig(threshold=threshold)})
    point = operating_point(configured, size)
    assert point is not None
    assert point.threshold == pytest.approx(expected, abs=1e-4)
    assert point.fpir == fpir
