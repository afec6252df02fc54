"""The retention sweep: expired entries and old alerts are hard-deleted, with every file.

It also removes files that no row owns (left by a process killed between
writing a file and committing its row), once they are older than a grace
period so that an enrolment still in progress elsewhere is never touched.
The audit log gets counts and ids, never biometric data.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from watchkeeper.governance import access, audit
from watchkeeper.governance.access import Permission, require
from watchkeeper.governance.subjects import (
    ALERT_CROP,
    FACE_IMAGE,
    Removed,
    delete_alerts,
    delete_subject,
)
from watchkeeper.store.database import Store
from watchkeeper.store.models import Alert, FaceImage, Organisation, Subject, User, utcnow

log = logging.getLogger(__name__)

ORPHAN_GRACE = dt.timedelta(minutes=10)
"""Unowned files younger than this are left alone: their transaction may still commit."""

SYSTEM = "system"
"""The actor named in the audit log for scheduled sweeps."""


@dataclass
class PurgeReport:
    organisation: str
    removed: Removed = field(default_factory=Removed)
    subject_ids: list[str] = field(default_factory=list)
    alert_ids: list[str] = field(default_factory=list)


def purge_organisation(
    session: Session,
    store: Store,
    organisation: Organisation,
    actor: User | None,
    now: dt.datetime | None = None,
) -> PurgeReport:
    """Delete ``organisation``'s expired entries and its alerts past their retention.
    ``actor`` None: the scheduled sweep."""
    now = now or utcnow()
    if actor is not None:
        require(actor, Permission.PURGE)
    report = PurgeReport(organisation.name)
    expired = session.scalars(
        select(Subject).where(Subject.organisation_id == organisation.id, Subject.expires_at <= now)
    ).all()
    alerts_of_expired = [
        str(alert_id)
        for alert_id in session.scalars(
            select(Alert.id).where(Alert.subject_id.in_([subject.id for subject in expired]))
        )
    ]
    for subject in expired:
        report.subject_ids.append(str(subject.id))
        report.removed += delete_subject(session, store, subject)
    cutoff = now - dt.timedelta(days=organisation.alert_retention_days)
    old_alerts = list(
        session.scalars(
            select(Alert.id).where(
                Alert.organisation_id == organisation.id, Alert.occurred_at < cutoff
            )
        )
    )
    report.alert_ids = [str(alert_id) for alert_id in old_alerts]
    report.removed += delete_alerts(session, store, old_alerts)
    if report.subject_ids or report.alert_ids:
        audit.record(
            session,
            store.keys,
            organisation.id,
            actor.name if actor else SYSTEM,
            "retention.purge",
            None,
            None,
            expired_subjects=report.subject_ids,
            alerts_of_expired_subjects=alerts_of_expired,
            old_alerts=report.alert_ids,
            alert_cutoff=cutoff.isoformat(),
            **vars(report.removed),
        )
    return report


def remove_orphan_files(session: Session, store: Store, grace: dt.timedelta = ORPHAN_GRACE) -> int:
    """Delete files under the data folder that no row owns and that are older than
    ``grace``; return how many. Covers every organisation in the database."""
    owners = {
        FACE_IMAGE: {str(i) for i in session.scalars(select(FaceImage.id))},
        ALERT_CROP: {str(i) for i in session.scalars(select(Alert.id))},
    }
    limit = time.time() - grace.total_seconds()
    removed = 0
    for path in store.files.all_files():
        kind = path.parent.name
        name = path.name.removeprefix(".").removesuffix(".part")
        owned = path.parent.parent == store.files.root and name in owners.get(kind, set())
        if owned and not path.name.startswith("."):
            continue
        try:
            if path.stat().st_mtime > limit:
                continue
            path.unlink()
        except FileNotFoundError:
            continue
        removed += 1
        log.info("removed unowned file %s", path.relative_to(store.files.root))
    return removed


def purge(
    store: Store,
    actor_name: str | None = None,
    organisation_name: str | None = None,
    now: dt.datetime | None = None,
    grace: dt.timedelta = ORPHAN_GRACE,
) -> tuple[list[PurgeReport], int]:
    """Sweep, each organisation in its own transaction, then remove unowned files.

    A person (``actor_name``) sweeps their own organisation (the only one, or the
    named one); the scheduled sweep (``actor_name`` None) sweeps them all.
    """
    with store.session() as session:
        if actor_name is not None:
            organisation_ids = [access.organisation(session, organisation_name).id]
        else:
            organisation_ids = list(session.scalars(select(Organisation.id)))
    reports = []
    for organisation_id in organisation_ids:
        with store.session() as session:
            organisation = session.get_one(Organisation, organisation_id)
            actor = (
                None if actor_name is None else access.user(session, organisation_id, actor_name)
            )
            reports.append(purge_organisation(session, store, organisation, actor, now))
    with store.session() as session:
        orphans = remove_orphan_files(session, store, grace)
    return reports, orphans


class RetentionSweeper:
    """Runs :func:`purge` every ``interval`` seconds in a background thread, inside a
    long-running scan or service. Failures are logged and retried next time."""

    def __init__(self, store: Store, interval: float) -> None:
        self.store = store
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="retention-sweeper", daemon=True)

    def start(self) -> RetentionSweeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                reports, orphans = purge(self.store)
            except Exception:
                log.exception("retention sweep failed; retrying in %.0f s", self.interval)
            else:
                for report in reports:
                    if report.subject_ids or report.alert_ids:
                        log.info(
                            "retention sweep (%s): %d expired entries, %d old alerts deleted",
                            report.organisation,
                            len(report.subject_ids),
                            len(report.alert_ids),
                        )
                if orphans:
                    log.info("retention sweep: %d unowned files deleted", orphans)
            self._stop.wait(self.interval)
