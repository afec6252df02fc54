"""The audit log: an HMAC chain per organisation that shows any edit, insertion or
deletion made directly in the database, and that never holds biometric data."""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sqlalchemy import Connection, delete, insert, select, update

from tests.support.shop import Shop, enrol_subject, set_up_shop
from watchkeeper.governance import audit
from watchkeeper.governance.organisation import Policy, set_policy
from watchkeeper.governance.retention import purge_organisation
from watchkeeper.governance.subjects import approve, erase, renew, restrict, suspend
from watchkeeper.pipeline import FaceModels
from watchkeeper.store.database import Store
from watchkeeper.store.models import AuditEvent, Organisation, Site, Subject, utcnow

EVENTS = AuditEvent.__table__
ORGANISATIONS = Organisation.__table__


def report_of(store: Store, organisation_id: uuid.UUID) -> audit.AuditReport:
    with store.session() as session:
        return audit.verify(session, store.keys, session.get_one(Organisation, organisation_id))


def actions_of(store: Store, organisation_id: uuid.UUID) -> list[str]:
    with store.session() as session:
        return list(
            session.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.organisation_id == organisation_id)
                .order_by(AuditEvent.sequence)
            )
        )


def test_a_chain_of_real_actions_verifies(shop: Shop, face_models: FaceModels) -> None:
    store = shop.store
    subject_id = enrol_subject(shop, face_models, "Joseph_Biden", approve_by=None)
    soon = utcnow() + dt.timedelta(days=1)
    enrol_subject(shop, face_models, "Donald_Trump", approve_by=None, expires_at=soon)
    later = utcnow() + dt.timedelta(days=400)
    with shop.tx() as tx:
        subject = tx.session.get_one(Subject, subject_id)
        approve(tx.session, store.keys, tx.organisation, tx.user("carol"), subject)
        renew(tx.session, store.keys, tx.organisation, tx.user("alice"), subject, later, "again")
        suspend(tx.session, store.keys, tx.organisation, tx.user("carol"), subject, "check")
        approve(tx.session, store.keys, tx.organisation, tx.user("carol"), subject)
        restrict(tx.session, store.keys, tx.organisation, tx.user("carol"), subject, True, "req")
        restrict(tx.session, store.keys, tx.organisation, tx.user("carol"), subject, False, "ok")
        set_policy(
            tx.session,
            store.keys,
            tx.organisation,
            tx.user("alice"),
            Policy(max_retention_days=500, default_retention_days=200),
        )
    with shop.tx() as tx:
        subject = tx.session.get_one(Subject, subject_id)
        erase(tx.session, store, tx.organisation, tx.user("carol"), subject, "withdrawn")
    with store.session() as session:  # the sweep takes the second entry and the incident
        organisation = session.get_one(Organisation, shop.organisation_id)
        purged = purge_organisation(
            session, store, organisation, None, now=utcnow() + dt.timedelta(days=2)
        )
        assert purged.removed.subjects == 1
        assert purged.removed.incidents == 1

    report = report_of(store, shop.organisation_id)
    assert report.intact, report.problems
    assert report.organisation == "Corner Shops"
    actions = actions_of(store, shop.organisation_id)
    assert report.events == len(actions)
    assert actions[0] == "organisation.create"
    assert actions[-11:] == [
        "subject.enrol",
        "subject.enrol",
        "subject.approve",
        "subject.renew",
        "subject.suspend",
        "subject.reinstate",
        "subject.restrict",
        "subject.unrestrict",
        "organisation.policy",
        "subject.erase",
        "retention.purge",
    ]
    with store.session() as session:
        sequences = list(
            session.scalars(
                select(AuditEvent.sequence)
                .where(AuditEvent.organisation_id == shop.organisation_id)
                .order_by(AuditEvent.sequence)
            )
        )
        details = [
            json.dumps(d)
            for d in session.scalars(
                select(AuditEvent.details).where(AuditEvent.organisation_id == shop.organisation_id)
            )
        ]
    assert sequences == list(range(1, len(actions) + 1))
    for label in ("Joseph_Biden", "Donald_Trump"):
        assert not any(label in d for d in details), "a subject's label was logged"


# --- tampering directly in the database ----------------------------------------------


def _event(connection: Connection, organisation_id: uuid.UUID, sequence: int) -> dict:
    row = connection.execute(
        select(EVENTS)
        .where(EVENTS.c.organisation_id == organisation_id)
        .where(EVENTS.c.sequence == sequence)
    ).one()
    return dict(row._mapping)


def _newest(connection: Connection, organisation_id: uuid.UUID) -> int:
    return connection.execute(
        select(ORGANISATIONS.c.audit_count).where(ORGANISATIONS.c.id == organisation_id)
    ).scalar_one()


def _set(which: int | str, **values: object) -> Callable[[Connection, uuid.UUID], None]:
    def tamper(connection: Connection, organisation_id: uuid.UUID) -> None:
        target = _newest(connection, organisation_id) if which == "newest" else which
        connection.execute(
            update(EVENTS)
            .where(EVENTS.c.organisation_id == organisation_id)
            .where(EVENTS.c.sequence == target)
            .values(**values)
        )

    return tamper


def _delete(which: int | str) -> Callable[[Connection, uuid.UUID], None]:
    def tamper(connection: Connection, organisation_id: uuid.UUID) -> None:
        target = _newest(connection, organisation_id) if which == "newest" else which
        connection.execute(
            delete(EVENTS)
            .where(EVENTS.c.organisation_id == organisation_id)
            .where(EVENTS.c.sequence == target)
        )

    return tamper


def _delete_newest_and_roll_back_the_end(connection: Connection, organisation_id: uuid.UUID):
    """Cut the newest event and make the organisation's end point at the one before."""
    newest = _newest(connection, organisation_id)
    before = _event(connection, organisation_id, newest - 1)
    _delete("newest")(connection, organisation_id)
    connection.execute(
        update(ORGANISATIONS)
        .where(ORGANISATIONS.c.id == organisation_id)
        .values(audit_count=newest - 1, audit_head=before["mac"])
    )


def _forge_at_the_end(connection: Connection, organisation_id: uuid.UUID) -> None:
    """A copy of event 2, appended with the next sequence number."""
    forged = _event(connection, organisation_id, 2)
    del forged["id"]
    forged["sequence"] = _newest(connection, organisation_id) + 1
    connection.execute(insert(EVENTS).values(**forged))


def _forge_in_the_middle(connection: Connection, organisation_id: uuid.UUID) -> None:
    """A copy of event 2 slipped in as event 3, the later events shifted up by one."""
    newest = _newest(connection, organisation_id)
    for sequence in range(newest, 2, -1):
        _set(sequence, sequence=sequence + 1)(connection, organisation_id)
    forged = _event(connection, organisation_id, 2)
    del forged["id"]
    forged["sequence"] = 3
    connection.execute(insert(EVENTS).values(**forged))


def _swap_macs(connection: Connection, organisation_id: uuid.UUID) -> None:
    """Events 3 and 4 exchange their MACs (each MAC is still one the key made)."""
    third = _event(connection, organisation_id, 3)
    fourth = _event(connection, organisation_id, 4)
    _set(3, mac=fourth["mac"])(connection, organisation_id)
    _set(4, mac=third["mac"])(connection, organisation_id)


def _organisation(**values: object) -> Callable[[Connection, uuid.UUID], None]:
    def tamper(connection: Connection, organisation_id: uuid.UUID) -> None:
        if values.get("audit_count") == "+1":
            values["audit_count"] = _newest(connection, organisation_id) + 1
        connection.execute(
            update(ORGANISATIONS).where(ORGANISATIONS.c.id == organisation_id).values(**values)
        )

    return tamper


CHANGED = "its contents were changed after it was written"
GAP = "events were deleted or inserted"
BROKEN_LINK = "does not follow the event before it"
COUNT = "events but"
END = "the recorded end of the log was changed"
NOT_NEWEST = "the newest event is not the one last written"

TAMPERING: dict[str, tuple[Callable[[Connection, uuid.UUID], None], set[str]]] = {
    "update-details": (_set(3, details={"role": "admin"}), {CHANGED}),
    "update-actor": (_set(3, actor="mallory"), {CHANGED}),
    "update-action": (_set(3, action="user.delete"), {CHANGED}),
    "update-object": (_set(3, object_id=str(uuid.uuid4())), {CHANGED}),
    "update-at": (_set(3, at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC)), {CHANGED}),
    "update-newest-details": (_set("newest", details={}), {CHANGED}),
    "swap-macs": (_swap_macs, {CHANGED, BROKEN_LINK}),
    "delete-middle": (_delete(4), {GAP, BROKEN_LINK, COUNT}),
    "delete-first": (_delete(1), {GAP, BROKEN_LINK, COUNT}),
    "delete-newest": (_delete("newest"), {COUNT, NOT_NEWEST}),
    "delete-newest-and-roll-back-end": (_delete_newest_and_roll_back_the_end, {END}),
    "forge-at-end": (_forge_at_the_end, {CHANGED, BROKEN_LINK, COUNT, NOT_NEWEST}),
    "forge-in-middle": (_forge_in_the_middle, {CHANGED, BROKEN_LINK, COUNT}),
    "update-audit-count": (_organisation(audit_count="+1"), {END, COUNT}),
    "update-audit-head": (_organisation(audit_head=bytes(32)), {END, NOT_NEWEST}),
    "update-audit-head-mac": (_organisation(audit_head_mac=bytes(32)), {END}),
}


@pytest.mark.parametrize("case", TAMPERING.values(), ids=TAMPERING.keys())
def test_tampering_in_the_database_is_reported(shop: Shop, case) -> None:
    """Each change made with SQL, bypassing Watchkeeper, shows in ``verify``; every kind
    of problem expected for it is named, and nothing else."""
    tamper, expected = case
    store = shop.store
    before = report_of(store, shop.organisation_id)
    assert before.intact, before.problems
    assert before.events >= 6
    with store.engine.begin() as connection:
        tamper(connection, shop.organisation_id)
    report = report_of(store, shop.organisation_id)
    assert not report.intact
    known = [CHANGED, GAP, BROKEN_LINK, COUNT, END, NOT_NEWEST]
    kinds = {kind for kind in known if any(kind in problem for problem in report.problems)}
    assert kinds == expected, report.problems
    assert all(any(kind in problem for kind in known) for problem in report.problems)


def test_the_problem_names_the_event(shop: Shop) -> None:
    with shop.store.engine.begin() as connection:
        _set(3, actor="mallory")(connection, shop.organisation_id)
        row = _event(connection, shop.organisation_id, 3)
    report = report_of(shop.store, shop.organisation_id)
    assert report.problems == [f"event 3 (row {row['id']}): {CHANGED}"]


# --- what may be logged ----------------------------------------------------------------


@pytest.mark.parametrize(
    "details",
    [
        {"photo": b"\xff\xd8\xff\xe0"},
        {"photo": bytearray(b"abc")},
        {"photo": memoryview(b"abc")},
        {"template": np.zeros(128, np.float32)},
        {"template": np.float32(0.5)},
        {"nested": {"deeper": [1, 2, np.ones(4)]}},
        {"list": [b"x"]},
        {"when": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)},
        {"id": uuid.uuid4()},
        {"mapping": {1: "integer key"}},
    ],
    ids=[
        "bytes",
        "bytearray",
        "memoryview",
        "array",
        "numpy-scalar",
        "nested-array",
        "bytes-in-list",
        "datetime",
        "uuid",
        "integer-key",
    ],
)
def test_details_that_could_carry_biometrics_are_refused(shop: Shop, details: dict) -> None:
    """Only plain JSON values may be logged, so a template or photo can never end up in
    the log; a refused event changes nothing."""
    store = shop.store
    with store.session() as session:
        before = session.get_one(Organisation, shop.organisation_id).audit_count
    with pytest.raises(TypeError, match=r"details"), store.session() as session:
        audit.record(session, store.keys, shop.organisation_id, "alice", "test.event", **details)
    with store.session() as session:
        assert session.get_one(Organisation, shop.organisation_id).audit_count == before
    assert report_of(store, shop.organisation_id).intact


def test_plain_details_are_logged_as_given(shop: Shop) -> None:
    store = shop.store
    details = {
        "count": 3,
        "big": 2**53 + 1,
        "negative": -7,
        "score": 0.1 + 0.2,
        "tiny": 1e-7,
        "whole": 1.0,
        "ok": True,
        "none": None,
        "ids": ["a", "b"],
        "empty": {},
        "nothing": [],
        "text": 'Zoë said "stop" \\ ✓\n',
        "nested": {"k": [1, {"x": "y"}]},
    }
    with store.session() as session:
        event = audit.record(
            session,
            store.keys,
            shop.organisation_id,
            "alice",
            "test.event",
            "thing",
            "t1",
            **details,
        )
        event_id = event.id
    with store.session() as session:
        stored = session.get_one(AuditEvent, event_id).details
    assert stored == details
    assert json.dumps(stored, sort_keys=True) == json.dumps(details, sort_keys=True)
    report = report_of(store, shop.organisation_id)
    assert report.intact, report.problems


# --- organisations -------------------------------------------------------------------


def test_each_organisation_has_its_own_chain(store: Store) -> None:
    first = set_up_shop(store)
    second = set_up_shop(store, "Other Org")
    with store.session() as session:
        for shop in (first, second):
            sequences = list(
                session.scalars(
                    select(AuditEvent.sequence)
                    .where(AuditEvent.organisation_id == shop.organisation_id)
                    .order_by(AuditEvent.sequence)
                )
            )
            assert sequences == list(range(1, len(sequences) + 1))
            first_event = session.scalars(
                select(AuditEvent).where(
                    AuditEvent.organisation_id == shop.organisation_id,
                    AuditEvent.sequence == 1,
                )
            ).one()
            assert first_event.previous_mac == audit.GENESIS

    with store.engine.begin() as connection:
        _set(2, actor="mallory")(connection, first.organisation_id)
        _delete("newest")(connection, first.organisation_id)
    broken = report_of(store, first.organisation_id)
    untouched = report_of(store, second.organisation_id)
    assert not broken.intact
    assert untouched.intact, untouched.problems
    assert untouched.organisation == "Other Org"
    with store.session() as session:
        assert untouched.events == session.get_one(Organisation, second.organisation_id).audit_count


def test_an_event_moved_to_another_organisation_is_reported(store: Store) -> None:
    first = set_up_shop(store)
    second = set_up_shop(store, "Other Org")
    with store.engine.begin() as connection:
        forged = _event(connection, first.organisation_id, 2)
        del forged["id"]
        forged["organisation_id"] = second.organisation_id
        forged["sequence"] = _newest(connection, second.organisation_id) + 1
        connection.execute(insert(EVENTS).values(**forged))
    assert report_of(store, first.organisation_id).intact
    assert not report_of(store, second.organisation_id).intact


def test_a_whole_chain_copied_to_another_organisation_is_reported(store: Store) -> None:
    """Each MAC names its organisation: one organisation's log, end marker included,
    cannot stand in for another's."""
    first = set_up_shop(store)
    second = set_up_shop(store, "Other Org")
    with store.engine.begin() as connection:
        connection.execute(delete(EVENTS).where(EVENTS.c.organisation_id == second.organisation_id))
        for row in connection.execute(
            select(EVENTS).where(EVENTS.c.organisation_id == first.organisation_id)
        ).all():
            copied = dict(row._mapping)
            del copied["id"]
            copied["organisation_id"] = second.organisation_id
            connection.execute(insert(EVENTS).values(**copied))
        end = connection.execute(
            select(
                ORGANISATIONS.c.audit_count,
                ORGANISATIONS.c.audit_head,
                ORGANISATIONS.c.audit_head_mac,
            ).where(ORGANISATIONS.c.id == first.organisation_id)
        ).one()
        connection.execute(
            update(ORGANISATIONS)
            .where(ORGANISATIONS.c.id == second.organisation_id)
            .values(**end._mapping)
        )
    assert report_of(store, first.organisation_id).intact
    problems = report_of(store, second.organisation_id).problems
    assert any(CHANGED in problem for problem in problems), problems
    assert any(END in problem for problem in problems), problems


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_transactions_that_each_added_a_row_of_the_organisation_both_append(shop: Shop) -> None:
    """On PostgreSQL, inserting a row that references the organisation (an alert, a
    site) locks the organisation's row KEY SHARE until commit. Two such transactions
    that then audit must both get their turn at the chain's head, one after the other:
    with a plain FOR UPDATE on the head they deadlocked (two edges' alerts at once)."""
    store = shop.store
    both_inserted = threading.Barrier(2, timeout=30)

    def add_then_audit(name: str) -> None:
        with store.session() as session:
            site = Site(organisation_id=shop.organisation_id, name=name)
            session.add(site)
            session.flush()
            both_inserted.wait()
            audit.record(session, store.keys, shop.organisation_id, "alice", "site.add",
                         "site", site.id)  # fmt: skip

    before = len(actions_of(store, shop.organisation_id))
    with ThreadPoolExecutor(2) as pool:
        for done in [pool.submit(add_then_audit, name) for name in ("Hull", "Selby")]:
            done.result()
    assert len(actions_of(store, shop.organisation_id)) == before + 2
    assert report_of(store, shop.organisation_id).intact
