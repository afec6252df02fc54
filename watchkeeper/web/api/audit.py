"""``/api/audit``, ``/api/audit/verify`` and ``/api/transparency``.

The log and its verification need :attr:`Permission.AUDIT`; the transparency
figures, :attr:`Permission.VIEW`. Every call is audited like the pages.
Events carry ids, counts and the text staff typed (reasons, notes), never a
face, a vector or a key; their MACs are not returned either.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from watchkeeper.governance.access import Permission
from watchkeeper.governance.audit_log import PAGE_SIZE, AuditFilter, browse, verification
from watchkeeper.governance.reporting import (
    AlertOutcomes,
    Deletions,
    EntryChanges,
    OperatingPoint,
    Period,
    SubjectAccess,
    WatchlistSize,
    transparency_report,
)
from watchkeeper.web.deps import Caller, DatabaseSession, permitted, settings_of, store_of

router = APIRouter(prefix="/api", tags=["api"])

Text = Annotated[str, Query(max_length=200)]


class AuditEventPublic(BaseModel):
    sequence: int = Field(description="Position in the organisation's chain, from 1.")
    at: dt.datetime = Field(description="When it was recorded (UTC).")
    actor: str = Field(description="User name, 'system', 'console' or 'camera:NAME'.")
    action: str = Field(description="What was done, e.g. 'subject.approve'.")
    object_type: str | None
    object_id: str | None
    details: dict[str, Any] = Field(description="Ids, counts and reasons; never biometric data.")


class AuditPagePublic(BaseModel):
    events: list[AuditEventPublic] = Field(description="Newest first.")
    older: int | None = Field(description="Pass as `before` for the next older page.")
    newer: int | None = Field(description="Pass as `after` for the next newer page.")


class AuditVerificationPublic(BaseModel):
    organisation: str
    events: int = Field(description="Events checked.")
    intact: bool = Field(description="No event was edited, inserted or deleted, nor the last.")
    problems: list[str] = Field(description="Where the chain breaks, and how.")


class TransparencyPublic(BaseModel):
    start: dt.datetime = Field(description="Start of the period (UTC, included).")
    end: dt.datetime = Field(description="End of the period (UTC, excluded).")
    alerts: AlertOutcomes = Field(
        description="Alerts stored in the period (audit log), by status at its end."
    )
    false_match_rate: float | None = Field(
        description="rejected / (confirmed + rejected) among those alerts; null if none."
    )
    watchlist_at_start: WatchlistSize = Field(
        description="Entries at the start, replayed from the audit log."
    )
    watchlist_now: WatchlistSize = Field(description="Entries held now (the database).")
    entries: EntryChanges = Field(description="Changes to entries in the period (audit log).")
    deletions: Deletions = Field(description="Deleted in the period (audit log).")
    subject_access: SubjectAccess = Field(description="Requests answered (audit log).")
    declared: OperatingPoint | None = Field(
        description="The threshold in use and the false-alert rate its calibration declares."
    )


@router.get("/audit", response_model=AuditPagePublic)
def audit_events(
    request: Request,
    session: DatabaseSession,
    caller: Caller,
    actor: Text = "",
    action: Text = "",
    target: Text = "",
    start: Text = "",
    end: Text = "",
    before: Annotated[int | None, Query(ge=1)] = None,
    after: Annotated[int | None, Query(ge=0)] = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_SIZE * 10)] = PAGE_SIZE,
) -> AuditPagePublic:
    """One page of the audit log, newest first, with the filters of ``/audit``: ``actor``
    (exact), ``action`` (prefix), ``target`` (id prefix or named in the details),
    ``start`` and ``end`` (dates, both included, or ISO date-times in UTC, the end
    excluded). The chain is not verified here: ask ``/api/audit/verify``."""
    permitted(Permission.AUDIT, caller.user)
    filters = AuditFilter.of(actor, action, target, start, end)
    keys, who = store_of(request).keys, caller.user
    _, shown = browse(
        session, keys, caller.organisation, who, filters, before, after, limit, verify=False
    )
    return AuditPagePublic(
        events=[
            AuditEventPublic(
                sequence=event.sequence,
                at=event.at,
                actor=event.actor,
                action=event.action,
                object_type=event.object_type,
                object_id=event.object_id,
                details=event.details,
            )
            for event in shown.events
        ],
        older=shown.older,
        newer=shown.newer,
    )


@router.get("/audit/verify", response_model=AuditVerificationPublic)
def audit_verify(
    request: Request, session: DatabaseSession, caller: Caller
) -> AuditVerificationPublic:
    """Check the whole chain, as ``watchkeeper audit verify`` does (the check is recorded)."""
    permitted(Permission.AUDIT, caller.user)
    report = verification(session, store_of(request).keys, caller.organisation, caller.user)
    return AuditVerificationPublic(
        organisation=report.organisation,
        events=report.events,
        intact=report.intact,
        problems=report.problems,
    )


@router.get("/transparency", response_model=TransparencyPublic)
def transparency(
    request: Request, session: DatabaseSession, caller: Caller, start: Text = "", end: Text = ""
) -> TransparencyPublic:
    """The transparency figures for a period: ``start`` and ``end`` as for ``/api/audit``;
    by default the last 30 UTC days, today included."""
    permitted(Permission.VIEW, caller.user)
    period = Period.requested(start, end)
    report = transparency_report(
        session,
        store_of(request).keys,
        caller.organisation,
        caller.user,
        period,
        settings_of(request),
    )
    return TransparencyPublic(
        start=period.start,
        end=period.end,
        alerts=report.alerts,
        false_match_rate=report.alerts.false_match_rate,
        watchlist_at_start=report.watchlist_at_start,
        watchlist_now=report.watchlist_now,
        entries=report.entries,
        deletions=report.deletions,
        subject_access=report.subject_access,
        declared=report.declared,
    )
