"""Retention and erasure: expired entries, old alerts and unowned files are deleted for
good, with every row and file that held the person's data (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
import uuid
from collections.abc import Callable

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.support.shop import Shop, Sighting, Tx, enrol_in, record_sighting
from watchkeeper.errors import PolicyError
from watchkeeper.governance import audit
from watchkeeper.governance.alerts import review
from watchkeeper.governance.incidents import record_incident
from watchkeeper.governance.retention import (
    ORPHAN_GRACE,
    RetentionSweeper,
    purge,
    remove_orphan_files,
)
from watchkeeper.governance.subjects import ALERT_CROP, FACE_IMAGE, Removed, erase
from watchkeeper.pipeline import FaceModels
from watchkeeper.store.models import (
    Alert,
    AuditEvent,
    Base,
    Decision,
    FaceImage,
    Incident,
    IncidentCategory,
    Organisation,
    Review,
    Subject,
    SubjectIncident,
    SubjectSite,
    Template,
    utcnow,
)


@pytest.fixture
def sighting(sightings: Callable[[str, int], Sighting]) -> Callable[..., Sighting]:
    """``sighting(person, index)``: the chip and probe vector of an LFW photo."""
    return lambda person, index=6: sightings(person, index)


def own_incident(tx: Tx, shop: Shop, description: str) -> Incident:
    """An incident that only the entry about to be made will refer to."""
    return record_incident(
        tx.session,
        shop.store.keys,
        tx.organisation,
        tx.user("bob"),
        site=tx.site,
        occurred_at=utcnow() - dt.timedelta(days=3),
        category=IncidentCategory.VIOLENCE,
        description=description,
    )


def raise_alert(
    tx: Tx,
    shop: Shop,
    subject: Subject,
    seen: Sighting,
    occurred_at: dt.datetime | None = None,
    reviewer: str | None = "dave",
) -> Alert:
    """A stored alert on ``subject`` at the shop's door, reviewed once by ``reviewer``."""
    alert = record_sighting(tx.session, shop, tx.camera, subject.id, seen, occurred_at)
    assert alert is not None
    if reviewer is not None:
        review(tx.session, shop.store, tx.organisation, tx.user(reviewer), alert, Decision.CONFIRM)
    return alert


def count(session: Session, table: type[Base], *where: object) -> int:
    return session.scalar(select(func.count()).select_from(table).where(*where)) or 0


def files(shop: Shop) -> set[str]:
    """Every file under the data folder's files root, as ``kind/name``."""
    return {str(p.relative_to(shop.store.files.root)) for p in shop.store.files.all_files()}


def no_biometrics_or_labels(details: object, *texts: str) -> None:
    """Audit details hold ids and counts: no lists of numbers (vectors), no labels or reasons."""
    dumped = json.dumps(details)
    for text in texts:
        assert text not in dumped
    values = list(details.values()) if isinstance(details, dict) else []
    for value in values:
        if isinstance(value, list):
            assert all(isinstance(item, str) for item in value), value


def test_purge_deletes_an_expired_entry_with_everything_it_owns(
    shop: Shop, face_models: FaceModels, sighting: Callable[..., Sighting]
) -> None:
    """Once its expiry has passed, an entry is hard-deleted with its photos, templates,
    alerts, reviews, snapshot files and the incidents no other entry refers to; an
    unexpired entry is untouched; the audit event lists ids and counts only."""
    now = utcnow()
    expires_at = now + dt.timedelta(days=10)
    with shop.tx() as tx:
        incident = own_incident(tx, shop, "pushed a member of staff at the till")
        expiring = enrol_in(
            tx,
            shop,
            face_models,
            "Joseph_Biden",
            photos=2,
            incidents=[incident, tx.incident],
            expires_at=expires_at,
        )
        kept = enrol_in(tx, shop, face_models, "Colin_Powell")
        expiring_alerts = [
            raise_alert(tx, shop, expiring, sighting("Joseph_Biden", index)) for index in (3, 4)
        ]
        kept_alert = raise_alert(tx, shop, kept, sighting("Colin_Powell"))
        expiring_id, kept_id, incident_id = expiring.id, kept.id, incident.id
        expiring_images = [image.id for image in expiring.images]
        expiring_alert_ids = [alert.id for alert in expiring_alerts]
        kept_files = {f"{FACE_IMAGE}/{kept.images[0].id}", f"{ALERT_CROP}/{kept_alert.id}"}
    assert len(files(shop)) == 6

    reports, orphans = purge(shop.store, "carol", now=expires_at - dt.timedelta(minutes=1))
    assert [report.subject_ids for report in reports] == [[]]
    assert orphans == 0
    assert len(files(shop)) == 6

    reports, orphans = purge(shop.store, "carol", now=expires_at + dt.timedelta(minutes=1))
    (report,) = reports
    assert report.subject_ids == [str(expiring_id)]
    assert report.removed == Removed(
        subjects=1, face_images=2, templates=2, alerts=2, reviews=2, incidents=1
    )
    assert orphans == 0
    assert files(shop) == kept_files

    with shop.tx() as tx:
        s = tx.session
        left = {
            "subject": count(s, Subject, Subject.id == expiring_id),
            "face_image": count(s, FaceImage, FaceImage.subject_id == expiring_id),
            "template": count(s, Template, Template.face_image_id.in_(expiring_images)),
            "alert": count(s, Alert, Alert.subject_id == expiring_id),
            "review": count(s, Review, Review.alert_id.in_(expiring_alert_ids)),
            "subject_incident": count(
                s, SubjectIncident, SubjectIncident.subject_id == expiring_id
            ),
            "subject_site": count(s, SubjectSite, SubjectSite.subject_id == expiring_id),
            "incident": count(s, Incident, Incident.id == incident_id),
        }
        assert left == dict.fromkeys(left, 0)
        still = {
            "subject": count(s, Subject, Subject.id == kept_id),
            "face_image": count(s, FaceImage, FaceImage.subject_id == kept_id),
            "template": count(s, Template),
            "alert": count(s, Alert, Alert.subject_id == kept_id),
            "review": count(s, Review),
            "subject_incident": count(s, SubjectIncident, SubjectIncident.subject_id == kept_id),
            "subject_site": count(s, SubjectSite, SubjectSite.subject_id == kept_id),
            "incident": count(s, Incident, Incident.id == shop.incident_id),
        }
        assert still == dict.fromkeys(still, 1)

        (event,) = s.scalars(select(AuditEvent).where(AuditEvent.action == "retention.purge"))
        assert event.actor == "carol"
        assert event.details["expired_subjects"] == [str(expiring_id)]
        assert event.details["old_alerts"] == []
        assert {key: event.details[key] for key in vars(report.removed)} == vars(report.removed)
        no_biometrics_or_labels(
            event.details, "Joseph_Biden", "seen taking goods", "pushed a member"
        )
        assert audit.verify(s, shop.store.keys, tx.organisation).intact


@pytest.mark.parametrize("retention_days", [30, 7])
def test_alerts_past_the_policy_retention_are_deleted_with_their_files_and_reviews(
    shop: Shop, face_models: FaceModels, sighting: Callable[..., Sighting], retention_days: int
) -> None:
    """Alerts that happened more than the policy's alert retention before the sweep are
    deleted with their snapshots and reviews; newer ones, and the entry, stay."""
    now = utcnow()
    retention = dt.timedelta(days=retention_days)
    ages = {
        "long-past": (retention + dt.timedelta(days=10), False),
        "an-hour-past": (retention + dt.timedelta(hours=1), False),
        "at-the-limit": (retention, True),
        "a-day-inside": (retention - dt.timedelta(days=1), True),
        "just-now": (dt.timedelta(0), True),
    }
    with shop.tx() as tx:
        tx.organisation.alert_retention_days = retention_days
        subject = enrol_in(tx, shop, face_models, "Joseph_Biden", now=now - dt.timedelta(days=60))
        seen = sighting("Joseph_Biden", 4)
        alerts = {
            name: raise_alert(tx, shop, subject, seen, occurred_at=now - age).id
            for name, (age, _) in ages.items()
        }
        subject_id, image_id = subject.id, subject.images[0].id
    old = {alerts[name] for name, (_, kept) in ages.items() if not kept}
    young = {alerts[name] for name, (_, kept) in ages.items() if kept}

    (report,), orphans = purge(shop.store, now=now)
    assert {uuid.UUID(i) for i in report.alert_ids} == old
    assert report.subject_ids == []
    assert report.removed == Removed(alerts=len(old), reviews=len(old))
    assert orphans == 0

    with shop.tx() as tx:
        s = tx.session
        assert set(s.scalars(select(Alert.id))) == young
        assert set(s.scalars(select(Review.alert_id))) == young
        assert s.get(Subject, subject_id) is not None
        assert count(s, Template) == 1
        (event,) = s.scalars(select(AuditEvent).where(AuditEvent.action == "retention.purge"))
        assert event.actor == "system"
        assert {uuid.UUID(i) for i in event.details["old_alerts"]} == old
        assert event.details["expired_subjects"] == []
        assert event.details["alerts"] == len(old)
        assert event.details["reviews"] == len(old)
        assert event.details["alert_cutoff"] == (now - retention).isoformat()
        no_biometrics_or_labels(event.details, "Joseph_Biden")
    assert files(shop) == {f"{FACE_IMAGE}/{image_id}"} | {f"{ALERT_CROP}/{i}" for i in young}


def test_erasure_leaves_no_row_and_no_file_about_the_person(
    shop: Shop, face_models: FaceModels, sighting: Callable[..., Sighting]
) -> None:
    """The erasure figure: an entry with 5 photos and 3 reviewed alerts is erased, and
    every table that held anything about it, and the files folder, hold nothing."""
    with shop.tx() as tx:
        subject = enrol_in(tx, shop, face_models, "Colin_Powell", photos=5)
        for index in (5, 6, 7):
            raise_alert(tx, shop, subject, sighting("Colin_Powell", index))
        subject_id = subject.id
    assert len(files(shop)) == 8
    with shop.tx() as tx:
        before = {table.__tablename__: count(tx.session, table) for table in TABLES}
    assert before == {
        "face_image": 5,
        "template": 5,
        "alert": 3,
        "review": 3,
        "subject": 1,
        "subject_incident": 1,
        "subject_site": 1,
        "incident": 1,
    }

    with shop.tx() as tx:
        removed = erase(
            tx.session,
            shop.store,
            tx.organisation,
            tx.user("carol"),
            tx.session.get_one(Subject, subject_id),
            "the person asked for erasure",
        )
    assert removed == Removed(
        subjects=1, face_images=5, templates=5, alerts=3, reviews=3, incidents=1
    )

    with shop.store.session() as session:  # shop.tx() would look for the erased incident
        after = {table.__tablename__: count(session, table) for table in TABLES}
        assert after == dict.fromkeys(after, 0)
        assert list(shop.store.files.all_files()) == []
        (event,) = session.scalars(select(AuditEvent).where(AuditEvent.action == "subject.erase"))
        assert event.object_id == str(subject_id)
        assert {key: event.details[key] for key in vars(removed)} == vars(removed)
        for logged in session.scalars(select(AuditEvent)):
            no_biometrics_or_labels(logged.details, "Colin_Powell", "seen taking goods")
        organisation = session.get_one(Organisation, shop.organisation_id)
        assert audit.verify(session, shop.store.keys, organisation).intact


TABLES: tuple[type[Base], ...] = (
    FaceImage,
    Template,
    Alert,
    Review,
    Subject,
    SubjectIncident,
    SubjectSite,
    Incident,
)
"""Every table that holds something about a watchlist entry."""


@pytest.mark.parametrize("grace", [ORPHAN_GRACE, dt.timedelta(days=1)], ids=["default", "1-day"])
def test_unowned_files_older_than_the_grace_period_are_removed(
    shop: Shop, face_models: FaceModels, sighting: Callable[..., Sighting], grace: dt.timedelta
) -> None:
    """Files no row owns (and unfinished ``.part`` files) are removed once older than the
    grace period; younger ones may belong to a transaction still running and stay;
    files owned by a photo or alert always stay."""
    with shop.tx() as tx:
        subject = enrol_in(tx, shop, face_models, "Joseph_Biden")
        alert = raise_alert(tx, shop, subject, sighting("Joseph_Biden", 4), reviewer=None)
        image_id, alert_id, subject_id = subject.images[0].id, alert.id, subject.id
    old = time.time() - grace.total_seconds() - 60
    young = time.time() - grace.total_seconds() + 60
    cases = [
        # (file under the root, modified at, kept)
        (f"{FACE_IMAGE}/{image_id}", old, True),
        (f"{ALERT_CROP}/{alert_id}", old, True),
        (f"{FACE_IMAGE}/{uuid.uuid4()}", old, False),
        (f"{FACE_IMAGE}/{uuid.uuid4()}", young, True),
        (f"{ALERT_CROP}/{uuid.uuid4()}", old, False),
        (f"{ALERT_CROP}/{image_id}", old, False),
        (f"{FACE_IMAGE}/.{uuid.uuid4()}.part", old, False),
        (f"{FACE_IMAGE}/.{image_id}.part", old, False),
        (f"{ALERT_CROP}/.{uuid.uuid4()}.part", young, True),
        (f"{FACE_IMAGE}/nested/{image_id}", old, False),
        (f"notes/{uuid.uuid4()}", old, False),
        (f"{uuid.uuid4()}", old, False),
    ]
    root = shop.store.files.root
    for name, mtime, _ in cases:
        path = root / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(64))
        os.utime(path, (mtime, mtime))

    with shop.store.session() as session:
        removed = remove_orphan_files(session, shop.store, grace)

    assert {name: (root / name).exists() for name, _, _ in cases} == {
        name: kept for name, _, kept in cases
    }
    assert removed == sum(not kept for _, _, kept in cases)
    assert shop.store.files.read(FACE_IMAGE, image_id, subject_id).startswith(b"\xff\xd8")
    assert shop.store.files.read(ALERT_CROP, alert_id, subject_id).startswith(b"\xff\xd8")


def test_the_retention_sweeper_purges_expired_entries_in_the_background(
    shop: Shop,
    face_models: FaceModels,
    sighting: Callable[..., Sighting],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A sweeper started beside a long-running scan deletes an entry whose expiry has
    passed (by the "system" actor), leaves current entries, and stops when asked."""
    caplog.set_level(logging.INFO, logger="watchkeeper.governance.retention")
    past = utcnow() - dt.timedelta(days=2)
    with shop.tx() as tx:
        expired = enrol_in(
            tx,
            shop,
            face_models,
            "Joseph_Biden",
            now=past,
            expires_at=past + dt.timedelta(days=1),
        )
        raise_alert(
            tx, shop, expired, sighting("Joseph_Biden", 4), occurred_at=past + dt.timedelta(hours=1)
        )
        current = enrol_in(tx, shop, face_models, "Colin_Powell")
        expired_id, current_id = expired.id, current.id
        current_file = f"{FACE_IMAGE}/{current.images[0].id}"
    assert len(files(shop)) == 3

    sweeper = RetentionSweeper(shop.store, interval=0.05).start()
    try:
        deadline = time.monotonic() + 30
        while True:
            with shop.store.session() as session:
                if session.get(Subject, expired_id) is None:
                    break
            assert time.monotonic() < deadline, f"not purged in time; log:\n{caplog.text}"
            time.sleep(0.05)
    finally:
        sweeper.stop()
    assert not sweeper._thread.is_alive()

    assert files(shop) == {current_file}
    with shop.tx() as tx:
        assert tx.session.get(Subject, current_id) is not None
        assert count(tx.session, Alert) == 0
        assert count(tx.session, FaceImage) == 1
        purges = list(
            tx.session.scalars(select(AuditEvent).where(AuditEvent.action == "retention.purge"))
        )
        assert len(purges) == 1  # later sweeps found nothing and logged nothing
        assert purges[0].actor == "system"
        assert purges[0].details["expired_subjects"] == [str(expired_id)]
    assert "1 expired entries" in caplog.text


def test_stopping_the_sweeper_does_not_wait_for_its_interval(shop: Shop) -> None:
    """stop() interrupts the wait between sweeps: a scan is never held up by it."""
    sweeper = RetentionSweeper(shop.store, interval=3600).start()
    time.sleep(0.2)
    started = time.monotonic()
    sweeper.stop()
    assert time.monotonic() - started < 5
    assert not sweeper._thread.is_alive()


def test_only_managers_and_admins_may_run_the_sweep(shop: Shop, face_models: FaceModels) -> None:
    """A person sweeping needs the purge permission; a refused sweep deletes nothing."""
    now = utcnow()
    with shop.tx() as tx:
        subject_id = enrol_in(
            tx, shop, face_models, "Joseph_Biden", expires_at=now + dt.timedelta(days=1)
        ).id
    later = now + dt.timedelta(days=2)
    for name in ("bob", "dave", "erin", "frank"):
        with pytest.raises(PolicyError, match="may not run the retention sweep"):
            purge(shop.store, name, now=later)
    with shop.tx() as tx:
        assert tx.session.get(Subject, subject_id) is not None
    assert len(files(shop)) == 1
    (report,), _ = purge(shop.store, "alice", now=later)
    assert report.subject_ids == [str(subject_id)]
    assert files(shop) == set()
