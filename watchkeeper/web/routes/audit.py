"""The audit log viewer and the transparency page.

``/audit`` shows the organisation's audit log, newest first, 100 events a page,
under the chain's verification status; ``/audit/export.csv`` exports what the
same filters select. Both need :attr:`Permission.AUDIT` (auditors, managers,
admins), and both readings are themselves audited. ``/transparency`` shows
anyone signed in (with :attr:`Permission.VIEW`) what the system did over a
period, counted from the audit log.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from watchkeeper.errors import PolicyError
from watchkeeper.estate.rules import rules
from watchkeeper.governance.access import Permission
from watchkeeper.governance.audit_log import AuditFilter, browse, compact, export_csv
from watchkeeper.governance.estate import transparency_counts
from watchkeeper.governance.reporting import Period, transparency_report
from watchkeeper.store.models import utcnow
from watchkeeper.web.deps import CurrentUser, DatabaseSession, permitted, settings_of, store_of
from watchkeeper.web.templating import templates

router = APIRouter(tags=["audit"])

Text = Annotated[str, Query(max_length=200)]
"""A filter field of a query string (longer ones are refused before any reading)."""


def with_query(path: str, values: dict[str, Any]) -> str:
    kept = {name: value for name, value in values.items() if value not in (None, "")}
    return f"{path}?{urlencode(kept)}" if kept else path


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    session: DatabaseSession,
    me: CurrentUser,
    actor: Text = "",
    action: Text = "",
    target: Text = "",
    start: Text = "",
    end: Text = "",
    before: Annotated[int | None, Query(ge=1)] = None,
    after: Annotated[int | None, Query(ge=0)] = None,
) -> HTMLResponse:
    permitted(Permission.AUDIT, me.user)
    form = {"actor": actor, "action": action, "target": target, "start": start, "end": end}
    context: dict[str, Any] = {"me": me, "form": form, "compact": compact}
    try:
        filters = AuditFilter.of(**form)
        report, shown = browse(
            session, store_of(request).keys, me.organisation, me.user, filters, before, after
        )
    except PolicyError as refused:
        context["error"] = str(refused)
        return templates.TemplateResponse(request, "audit.html", context, status_code=422)
    context |= {
        "report": report,
        "events": shown.events,
        "older": shown.older and with_query("/audit", form | {"before": shown.older}),
        "newer": shown.newer and with_query("/audit", form | {"after": shown.newer}),
        "newest": with_query("/audit", form) if before or after else None,
        "export": with_query("/audit/export.csv", form),
    }
    return templates.TemplateResponse(request, "audit.html", context)


@router.get("/audit/export.csv")
def audit_export(
    request: Request,
    session: DatabaseSession,
    me: CurrentUser,
    actor: Text = "",
    action: Text = "",
    target: Text = "",
    start: Text = "",
    end: Text = "",
) -> Response:
    """Every event the filters select, oldest first, as a CSV download."""
    permitted(Permission.AUDIT, me.user)
    filters = AuditFilter.of(actor, action, target, start, end)  # refusals answer 422
    text, _ = export_csv(session, store_of(request).keys, me.organisation, me.user, filters)
    name = f"audit-{utcnow():%Y%m%dT%H%M%SZ}.csv"
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/transparency", response_class=HTMLResponse)
def transparency_page(
    request: Request,
    session: DatabaseSession,
    me: CurrentUser,
    start: Text = "",
    end: Text = "",
) -> HTMLResponse:
    permitted(Permission.VIEW, me.user)
    context: dict[str, Any] = {"me": me, "form": {"start": start, "end": end}}
    try:
        period = Period.requested(start, end)
    except PolicyError as refused:
        context["error"] = str(refused)
        return templates.TemplateResponse(request, "transparency.html", context, status_code=422)
    report = transparency_report(
        session,
        store_of(request).keys,
        me.organisation,
        me.user,
        period,
        settings_of(request),
    )
    context |= {
        "report": report,
        "form": {"start": period.start.date().isoformat(), "end": period.last_day.isoformat()},
        "estate": transparency_counts(session, me.organisation, me.user),
        "estate_rules": rules(),
    }
    return templates.TemplateResponse(request, "transparency.html", context)
