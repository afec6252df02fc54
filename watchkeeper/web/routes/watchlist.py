"""Watchlist pages: incidents, entries and their photos, and what staff may do to them.

Every read and change goes through the governance functions, which check the rules
and write the audit log; these pages add site scoping of what is offered, forms
and their errors. A change to what cameras search (approve, renew, suspend,
restrict, erase) is committed before the cameras are told to reload.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from watchkeeper.errors import NotFoundError, PolicyError
from watchkeeper.governance.access import PERMISSIONS, Permission, approver_roles
from watchkeeper.governance.incidents import incident_view, list_incidents, record_incident
from watchkeeper.governance.subjects import (
    EXPIRED,
    EnrolmentPhoto,
    PhotosRefused,
    approve,
    enrol,
    erase,
    list_subjects,
    read_photo,
    renew,
    restrict,
    show_subject,
    suspend,
)
from watchkeeper.pipeline import FaceModels
from watchkeeper.store.models import IncidentCategory, SubjectStatus, utcnow
from watchkeeper.web.deps import (
    CheckedUser,
    CurrentUser,
    DatabaseSession,
    Models,
    SignedIn,
    csrf_checked,
    permitted,
    settings_of,
    store_of,
)
from watchkeeper.web.templating import templates
from watchkeeper.web.uploads import (
    PhotoBadge,
    UploadTooLarge,
    check_photo,
    photos_of,
    read_upload,
    refused_badge,
)
from watchkeeper.web.watchlist_common import (
    chosen_incidents,
    chosen_sites,
    commit_and_notify,
    find_subject,
    parse_date,
    visible_sites,
)

router = APIRouter(tags=["watchlist"])

STATUSES = (
    SubjectStatus.PENDING.value,
    SubjectStatus.ACTIVE.value,
    SubjectStatus.SUSPENDED.value,
    EXPIRED,
)
"""What the list can be filtered by (an entry's effective status)."""


def days_left(expires_at: str, now: dt.datetime) -> int:
    """Whole days until an ISO expiry (negative once passed)."""
    return (dt.datetime.fromisoformat(expires_at) - now).days


# Photos


@router.get("/watchlist/photos/{image_id}", response_class=Response)
def photo(request: Request, session: DatabaseSession, me: CurrentUser, image_id: str) -> Response:
    """One stored enrolment photo as JPEG (decrypted for this response only; audited).
    404 for an unknown id, another organisation's photo or one outside the user's sites."""
    permitted(Permission.VIEW, me.user)
    data = read_photo(session, store_of(request), me.organisation, me.user, image_id)
    return Response(data, media_type="image/jpeg")


# Incidents


@router.get("/incidents", response_class=HTMLResponse)
def incidents_page(request: Request, session: DatabaseSession, me: CurrentUser) -> HTMLResponse:
    permitted(Permission.VIEW, me.user)
    incidents = list_incidents(session, store_of(request).keys, me.organisation, me.user)
    return templates.TemplateResponse(
        request,
        "incidents.html",
        {
            "me": me,
            "incidents": [incident_view(i) for i in incidents],
            "may_report": Permission.REPORT_INCIDENT in PERMISSIONS[me.user.role],
        },
    )


def incident_form(
    request: Request,
    session: Session,
    me: SignedIn,
    values: dict[str, Any] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        "incident_new.html",
        {
            "me": me,
            "sites": visible_sites(session, me.organisation, me.user),
            "categories": [c.value for c in IncidentCategory],
            "values": values or {},
            "error": error,
        },
        status_code=status_code,
    )


@router.get("/incidents/new", response_class=HTMLResponse)
def new_incident(request: Request, session: DatabaseSession, me: CurrentUser) -> HTMLResponse:
    permitted(Permission.REPORT_INCIDENT, me.user)
    return incident_form(request, session, me)


@router.post("/incidents", response_class=HTMLResponse)
def create_incident(
    request: Request,
    session: DatabaseSession,
    me: CheckedUser,
    site: Annotated[str, Form()] = "",
    occurred_at: Annotated[str, Form()] = "",
    category: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
    police_reference: Annotated[str, Form()] = "",
    evidence: Annotated[str, Form()] = "",
) -> Response:
    """Record an incident (the signed-in user is its reporter). ``occurred_at`` is a
    date-time in UTC (empty: now); ``evidence`` holds one reference per line."""
    permitted(Permission.REPORT_INCIDENT, me.user)
    values = {
        "site": site,
        "occurred_at": occurred_at,
        "category": category,
        "description": description,
        "police_reference": police_reference,
        "evidence": evidence,
    }
    try:
        if category not in set(IncidentCategory):
            raise PolicyError("choose what kind of incident it was")
        if not site:
            raise PolicyError("choose the site where it happened")
        (where,) = chosen_sites(session, me.organisation, me.user, [site])
        record_incident(
            session,
            store_of(request).keys,
            me.organisation,
            me.user,
            site=where,
            occurred_at=parse_date(occurred_at, "time") if occurred_at.strip() else utcnow(),
            category=IncidentCategory(category),
            description=description,
            evidence=evidence.splitlines(),
            police_reference=police_reference.strip() or None,
        )
    except PolicyError as refused:
        return incident_form(request, session, me, values, str(refused), 422)
    return RedirectResponse("/incidents", status_code=303)


# Entries


@router.get("/watchlist", response_class=HTMLResponse)
def watchlist_page(
    request: Request, session: DatabaseSession, me: CurrentUser, status: str = ""
) -> HTMLResponse:
    """Every entry the user may see (or those of one status), with the days each has left."""
    permitted(Permission.VIEW, me.user)
    if status and status not in STATUSES:
        raise PolicyError(f"no status {status!r}; choose one of {', '.join(STATUSES)}")
    now = utcnow()
    entries = list_subjects(
        session, store_of(request).keys, me.organisation, me.user, status or None, now
    )
    for entry in entries:
        entry["days_left"] = days_left(entry["expires_at"], now)
    return templates.TemplateResponse(
        request,
        "watchlist.html",
        {
            "me": me,
            "entries": entries,
            "status": status,
            "statuses": STATUSES,
            "may_enrol": Permission.ENROL in PERMISSIONS[me.user.role],
        },
    )


def enrol_form(
    request: Request,
    session: Session,
    me: SignedIn,
    values: dict[str, Any] | None = None,
    error: str | None = None,
    badges: list[PhotoBadge] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    organisation = me.organisation
    incidents = list_incidents(session, store_of(request).keys, organisation, me.user)
    default_expiry = utcnow() + dt.timedelta(days=organisation.default_retention_days)
    return templates.TemplateResponse(
        request,
        "watchlist_new.html",
        {
            "me": me,
            "incidents": [incident_view(i) for i in incidents],
            "sites": visible_sites(session, organisation, me.user),
            "values": values or {"incidents": [], "sites": []},
            "error": error,
            "badges": badges or [],
            "default_expiry": f"{default_expiry:%Y-%m-%d}",
            "max_days": organisation.max_retention_days,
            "limits": settings_of(request).web,
        },
        status_code=status_code,
    )


@router.get("/watchlist/new", response_class=HTMLResponse)
def new_entry(request: Request, session: DatabaseSession, me: CurrentUser) -> HTMLResponse:
    permitted(Permission.ENROL, me.user)
    return enrol_form(request, session, me)


@router.post("/watchlist", response_class=HTMLResponse)
async def create_entry(
    request: Request, session: DatabaseSession, me: CurrentUser, models: Models
) -> Response:
    """Propose an entry from a multipart form (fields and photos); read under the
    upload limits (413), refused per photo (422, the form again with each photo's
    badge) or stored as pending for a second person to approve."""
    try:
        form = await read_upload(request, settings_of(request).web)
    except UploadTooLarge as refused:
        return templates.TemplateResponse(
            request, "error.html", {"me": me, "message": str(refused)}, status_code=413
        )
    csrf_checked(me, str(form.get("csrf_token", "")))
    permitted(Permission.ENROL, me.user)
    values = {
        "label": str(form.get("label", "")),
        "reason": str(form.get("reason", "")),
        "incidents": [str(v) for v in form.getlist("incidents") if str(v).strip()],
        "sites": [str(v) for v in form.getlist("sites") if str(v).strip()],
        "expires": str(form.get("expires", "")),
        "attest": bool(form.get("attest")),
    }
    photos = await photos_of(form)
    # Detection and embedding take a while: off the event loop.
    return await run_in_threadpool(enrol_from_form, request, session, me, models, values, photos)


def enrol_from_form(
    request: Request,
    session: Session,
    me: SignedIn,
    models: FaceModels,
    values: dict[str, Any],
    photos: list[EnrolmentPhoto],
) -> Response:
    try:
        subject = enrol(
            session,
            store_of(request),
            me.organisation,
            me.user,
            models,
            label=values["label"],
            reason=values["reason"],
            incidents=chosen_incidents(session, me.organisation, me.user, values["incidents"]),
            sites=chosen_sites(session, me.organisation, me.user, values["sites"]) or None,
            photos=photos,
            attest_not_child_or_vulnerable=values["attest"],
            expires_at=parse_date(values["expires"], "expiry") if values["expires"] else None,
        )
    except PhotosRefused as refused:
        badges = [
            refused_badge(p.name, refused.refusals[p.name])
            if p.name in refused.refusals
            else PhotoBadge(p.name, True, "usable")
            for p in photos
        ]
        return enrol_form(request, session, me, values, str(refused), badges, 422)
    except (PolicyError, NotFoundError) as refused:
        return enrol_form(request, session, me, values, str(refused), None, 422)
    return RedirectResponse(f"/watchlist/{subject.id}", status_code=303)


@router.post("/watchlist/check-photo")
async def check_one_photo(request: Request, me: CurrentUser, models: Models) -> dict[str, Any]:
    """The badge one photo (field ``photo``) would get, as JSON, before the form is
    sent: the photo is decoded and its face found and gated, then forgotten (nothing
    stored or logged about it)."""
    try:
        form = await read_upload(request, settings_of(request).web)
    except UploadTooLarge as refused:
        raise HTTPException(413, str(refused)) from None
    csrf_checked(me, str(form.get("csrf_token", "")))
    permitted(Permission.ENROL, me.user)
    photos = await photos_of(form, "photo")
    if len(photos) != 1:
        raise HTTPException(400, "send one photo in the field 'photo'")
    badge = await run_in_threadpool(check_photo, photos[0], models)
    return {
        "name": badge.name,
        "usable": badge.usable,
        "label": badge.label,
        "quality": badge.quality,
        "reasons": list(badge.reasons),
    }


@router.get("/watchlist/{subject_id}", response_class=HTMLResponse)
def entry_page(
    request: Request, session: DatabaseSession, me: CurrentUser, subject_id: str
) -> HTMLResponse:
    """One entry with its photos, incidents, approvals and alerts, and the actions
    this user may take."""
    permitted(Permission.VIEW, me.user)
    subject = find_subject(session, me.organisation, me.user, subject_id)
    view = show_subject(session, store_of(request).keys, me.organisation, me.user, subject)
    now = utcnow()
    view["days_left"] = days_left(view["expires_at"], now)
    allowed = PERMISSIONS[me.user.role]
    live = view["status"] != EXPIRED
    approver = (
        Permission.APPROVE in allowed
        and me.user.role in approver_roles(me.organisation)
        and subject.created_by_id != me.user.id
        and live
    )
    actions = {
        "approve": approver and view["status"] != SubjectStatus.ACTIVE.value,
        "renew": approver,
        "suspend": Permission.SUSPEND in allowed
        and live
        and view["status"] != SubjectStatus.SUSPENDED.value,
        "restrict": Permission.SUSPEND in allowed,
        "erase": Permission.ERASE in allowed,
    }
    return templates.TemplateResponse(
        request, "watchlist_entry.html", {"me": me, "entry": view, "actions": actions}
    )


@router.post("/watchlist/{subject_id}/approve")
def approve_entry(
    request: Request, session: DatabaseSession, me: CheckedUser, subject_id: str
) -> Response:
    permitted(Permission.APPROVE, me.user)
    subject = find_subject(session, me.organisation, me.user, subject_id)
    approve(session, store_of(request).keys, me.organisation, me.user, subject)
    target = f"/watchlist/{subject.id}"
    commit_and_notify(request, session)
    return RedirectResponse(target, status_code=303)


@router.post("/watchlist/{subject_id}/renew")
def renew_entry(
    request: Request,
    session: DatabaseSession,
    me: CheckedUser,
    subject_id: str,
    expires: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    """A new expiry date (UTC midnight of that day) with the reason for keeping the entry."""
    permitted(Permission.APPROVE, me.user)
    subject = find_subject(session, me.organisation, me.user, subject_id)
    if not expires.strip():
        raise PolicyError("a renewal needs a new expiry date")
    renew(
        session,
        store_of(request).keys,
        me.organisation,
        me.user,
        subject,
        parse_date(expires, "expiry"),
        reason,
    )
    target = f"/watchlist/{subject.id}"
    commit_and_notify(request, session)
    return RedirectResponse(target, status_code=303)


@router.post("/watchlist/{subject_id}/suspend")
def suspend_entry(
    request: Request,
    session: DatabaseSession,
    me: CheckedUser,
    subject_id: str,
    note: Annotated[str, Form()] = "",
) -> Response:
    permitted(Permission.SUSPEND, me.user)
    subject = find_subject(session, me.organisation, me.user, subject_id)
    if not note.strip():
        raise PolicyError("say why the entry is suspended")
    suspend(session, store_of(request).keys, me.organisation, me.user, subject, note.strip())
    target = f"/watchlist/{subject.id}"
    commit_and_notify(request, session)
    return RedirectResponse(target, status_code=303)


@router.post("/watchlist/{subject_id}/restrict")
def restrict_entry(
    request: Request,
    session: DatabaseSession,
    me: CheckedUser,
    subject_id: str,
    restricted: Annotated[bool, Form()] = True,
    note: Annotated[str, Form()] = "",
) -> Response:
    """Restrict processing (kept, never searched) or, with ``restricted=false``, lift it."""
    permitted(Permission.SUSPEND, me.user)
    subject = find_subject(session, me.organisation, me.user, subject_id)
    restrict(session, store_of(request).keys, me.organisation, me.user, subject, restricted, note)
    target = f"/watchlist/{subject.id}"
    commit_and_notify(request, session)
    return RedirectResponse(target, status_code=303)


@router.post("/watchlist/{subject_id}/erase")
def erase_entry(
    request: Request,
    session: DatabaseSession,
    me: CheckedUser,
    subject_id: str,
    reason: Annotated[str, Form()] = "",
    confirm: Annotated[bool, Form()] = False,
) -> Response:
    """Remove the entry with its photos, templates, alerts and reviews (files after
    the commit), once the user has ticked the confirmation."""
    permitted(Permission.ERASE, me.user)
    subject = find_subject(session, me.organisation, me.user, subject_id)
    if not confirm:
        raise PolicyError("tick the box to confirm that everything about this entry goes")
    erase(session, store_of(request), me.organisation, me.user, subject, reason)
    commit_and_notify(request, session)
    return RedirectResponse("/watchlist", status_code=303)
