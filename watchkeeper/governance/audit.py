"""The tamper-evident audit log: an HMAC chain per organisation.

Each event's MAC covers its own fields and the MAC of the event before it, so
editing an event breaks its MAC, and inserting or deleting one breaks the
chain. Deleting events from the end would leave a valid shorter chain, so the
organisation row also holds the newest MAC and the count, under a MAC of
their own. The MAC key is derived from the encryption key, which is never in
the database: someone with write access to the database alone cannot forge a
consistent log.

Events name who did what to which object, with counts and ids; they never
hold biometric data or a subject's label (erasure must not leave the person
described in the log).

Every change to what may be searched is audited, so the audit log is also where
the watchlist's change journal is written (:data:`WATCHLIST_CHANGES`): in the same
transaction, one ``WatchlistChange`` per entry concerned, from which the core sends
a chain's edges what changed (``watchkeeper.governance.edges``).
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import math
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from watchkeeper.store.crypto import KeyRing
from watchkeeper.store.models import AuditEvent, Organisation, WatchlistChange, utcnow

GENESIS = bytes(32)
"""The ``previous_mac`` of an organisation's first event."""

_SCALARS = (str, int, float, bool, type(None))

WATCHLIST_CHANGES: dict[str, str | None] = {
    "subject.approve": None,
    "subject.reinstate": None,
    "subject.renew": None,
    "subject.suspend": None,
    "subject.restrict": None,
    "subject.unrestrict": None,
    "subject.erase": None,
    "subject.retemplate": None,
    "retention.purge": "expired_subjects",
    "models.switch_completed": "*",
    "watchlist.retemplate": "*",
}
"""Audited actions that change what may be searched: None, the event's own entry;
a name, the entries listed in that detail; ``*``, every entry."""


def _check_details(value: Any, where: str = "details") -> None:
    """Only plain JSON values: no bytes, arrays or objects that could carry biometrics."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: keys must be strings")
            _check_details(item, f"{where}.{key}")
    elif isinstance(value, list):
        for item in value:
            _check_details(item, where)
    elif not isinstance(value, _SCALARS):
        raise TypeError(f"{where}: {type(value).__name__} is not allowed in the audit log")
    elif isinstance(value, float) and not math.isfinite(value):
        raise TypeError(f"{where}: {value} is not a JSON number")


def _event_mac(keys: KeyRing, event: AuditEvent) -> bytes:
    fields = [
        str(event.organisation_id),
        event.sequence,
        event.at.astimezone(dt.UTC).isoformat(),
        event.actor,
        event.action,
        event.object_type,
        event.object_id,
        event.details,
        event.previous_mac.hex(),
    ]
    message = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(keys.audit_key, message, "sha256").digest()


def _head_mac(keys: KeyRing, organisation: Organisation) -> bytes:
    message = f"{organisation.id}:{organisation.audit_count}:{organisation.audit_head.hex()}"
    return hmac.new(keys.audit_key, message.encode(), "sha256").digest()


def seal_genesis(keys: KeyRing, organisation: Organisation) -> None:
    """Set a new organisation's empty chain."""
    organisation.audit_count = 0
    organisation.audit_head = GENESIS
    organisation.audit_head_mac = _head_mac(keys, organisation)


def record(
    session: Session,
    keys: KeyRing,
    organisation_id: uuid.UUID,
    actor: str,
    action: str,
    object_type: str | None = None,
    object_id: uuid.UUID | str | None = None,
    **details: Any,
) -> AuditEvent:
    """Append one event in ``session``'s transaction (it commits with the change it records)."""
    _check_details(details)
    # The row may already be in the session from before another transaction appended
    # events: lock it and read its chain head afresh (not the session's stale copy).
    # FOR NO KEY UPDATE on PostgreSQL (key_share): the head is not a key, and a plain
    # FOR UPDATE conflicts with the KEY SHARE lock that inserting any row referencing
    # the organisation takes, so two transactions that each inserted such a row (two
    # alerts) before auditing deadlocked. Appends to the chain still go one at a time.
    organisation = session.scalars(
        select(Organisation)
        .where(Organisation.id == organisation_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    ).one()
    event = AuditEvent(
        organisation_id=organisation.id,
        sequence=organisation.audit_count + 1,
        at=utcnow(),
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=None if object_id is None else str(object_id),
        details=details,
        previous_mac=organisation.audit_head,
    )
    event.mac = _event_mac(keys, event)
    session.add(event)
    organisation.audit_count = event.sequence
    organisation.audit_head = event.mac
    organisation.audit_head_mac = _head_mac(keys, organisation)
    _journal(session, organisation.id, action, object_id, details)
    session.flush()
    return event


def _entry_id(value: object) -> uuid.UUID | None:
    """An entry's id as an audited change names it (None: not an entry's id)."""
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        return None


def _journal(
    session: Session,
    organisation_id: uuid.UUID,
    action: str,
    object_id: uuid.UUID | str | None,
    details: dict[str, Any],
) -> None:
    """Write the watchlist change journal's rows for an audited change (see
    :data:`WATCHLIST_CHANGES`)."""
    if action not in WATCHLIST_CHANGES:
        return
    which = WATCHLIST_CHANGES[action]
    if which == "*":
        subjects: list[uuid.UUID | None] = [None]
    else:
        named = [object_id] if which is None else list(details.get(which) or [])
        subjects = [entry for entry in map(_entry_id, named) if entry is not None]
    session.add_all(
        WatchlistChange(organisation_id=organisation_id, subject_id=subject) for subject in subjects
    )


@dataclass
class AuditReport:
    organisation: str
    events: int
    problems: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems


def verify(session: Session, keys: KeyRing, organisation: Organisation) -> AuditReport:
    """Check every event of ``organisation``'s chain, and the chain's recorded end."""
    report = AuditReport(organisation.name, 0)
    previous = GENESIS
    expected_sequence = 1
    events = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.organisation_id == organisation.id)
        .order_by(AuditEvent.sequence, AuditEvent.id)
    )
    for event in events:
        report.events += 1
        where = f"event {event.sequence} (row {event.id})"
        if event.sequence != expected_sequence:
            report.problems.append(
                f"{where}: expected sequence {expected_sequence}; events were deleted or inserted"
            )
        if not hmac.compare_digest(event.previous_mac, previous):
            report.problems.append(f"{where}: does not follow the event before it")
        if not hmac.compare_digest(event.mac, _event_mac(keys, event)):
            report.problems.append(f"{where}: its contents were changed after it was written")
        previous = event.mac
        expected_sequence = event.sequence + 1
    if not hmac.compare_digest(organisation.audit_head_mac, _head_mac(keys, organisation)):
        report.problems.append("the recorded end of the log was changed")
    if report.events != organisation.audit_count:
        report.problems.append(
            f"the log holds {report.events} events but {organisation.audit_count} were written"
        )
    if not hmac.compare_digest(previous, organisation.audit_head):
        report.problems.append("the newest event is not the one last written")
    return report
