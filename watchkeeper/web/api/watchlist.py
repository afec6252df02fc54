"""``/api/incidents`` and ``/api/subjects``: the watchlist for integrations (API token).

The same governance functions as the pages, the same site scoping, the same upload
limits; responses never hold a template, a key or a photo other than the JPEG asked
for by its own route.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from pydantic import AfterValidator, BaseModel, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from watchkeeper.dates import as_utc
from watchkeeper.errors import NotFoundError
from watchkeeper.governance.access import Permission
from watchkeeper.governance.incidents import incident_view, list_incidents, record_incident
from watchkeeper.governance.subjects import (
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
from watchkeeper.store.models import IncidentCategory, utcnow
from watchkeeper.web.deps import ApiCaller, Caller, DatabaseSession, Models, permitted, store_of
from watchkeeper.web.uploads import UploadTooLarge, photos_of, read_upload, refused_badge
from watchkeeper.web.watchlist_common import (
    chosen_incidents,
    chosen_sites,
    commit_and_notify,
    find_subject,
    parse_date,
)

router = APIRouter(prefix="/api", tags=["api"])

UtcDateTime = Annotated[dt.datetime, AfterValidator(as_utc)]
"""An ISO date-time, converted to UTC (UTC when it has no zone); one whose UTC time
lies outside the calendar is a validation error (422)."""


class IncidentCreate(BaseModel):
    site: str = Field(description="Site name (or id) where it happened; one of the caller's.")
    occurred_at: UtcDateTime | None = Field(None, description="When; default now. UTC if no zone.")
    category: IncidentCategory
    description: str = Field(min_length=1, description="What happened (facts, not looks).")
    police_reference: str | None = None
    evidence: list[str] = Field(default_factory=list, description="References held elsewhere.")


class IncidentPublic(BaseModel):
    id: str
    site: str
    occurred_at: str
    category: str
    description: str
    reporter: str
    evidence: list[str]
    police_reference: str | None


class SubjectSummary(BaseModel):
    id: str
    label: str
    status: str = Field(description="pending, active, suspended or expired.")
    restricted: bool = Field(description="Kept but never searched (restriction of processing).")
    expires_at: str
    sites: list[str]
    photos: int
    false_matches: int


class IncidentRef(BaseModel):
    id: str
    site: str
    occurred_at: str
    category: str
    description: str
    police_reference: str | None


class PhotoPublic(BaseModel):
    id: str = Field(description="Fetch the JPEG from /api/subjects/{id}/photos/{photo id}.")
    quality: float = Field(description="Quality gate score in [0, 1] when enrolled.")
    size: list[int] = Field(description="Width and height in pixels.")
    models: list[str] = Field(description="Embedders holding a template of it (ids only).")


class AlertRef(BaseModel):
    id: str
    occurred_at: str
    status: str


class SubjectPublic(SubjectSummary):
    reason: str
    status_note: str | None
    created_by: str
    created_at: str
    approved_by: str | None
    approved_at: str | None
    attested_not_child_or_vulnerable: bool
    incidents: list[IncidentRef]
    images: list[PhotoPublic]
    alerts: list[AlertRef]


class RenewRequest(BaseModel):
    expires_at: UtcDateTime = Field(description="New expiry (UTC if no zone).")
    reason: str = Field(min_length=1)


class NoteRequest(BaseModel):
    note: str = Field(min_length=1)


class RestrictRequest(BaseModel):
    restricted: bool = Field(True, description="False lifts the restriction.")
    note: str = ""


class Erased(BaseModel):
    subjects: int
    face_images: int
    templates: int
    alerts: int
    reviews: int
    incidents: int


def _shown(request: Request, session: Session, caller: ApiCaller, subject_id: str) -> Any:
    subject = find_subject(session, caller.organisation, caller.user, subject_id)
    return show_subject(session, store_of(request).keys, caller.organisation, caller.user, subject)


@router.get("/incidents", response_model=list[IncidentPublic])
def get_incidents(request: Request, session: DatabaseSession, caller: Caller) -> list[Any]:
    """Incidents at the caller's sites, newest first."""
    permitted(Permission.VIEW, caller.user)
    incidents = list_incidents(session, store_of(request).keys, caller.organisation, caller.user)
    return [incident_view(i) for i in incidents]


@router.post("/incidents", response_model=IncidentPublic, status_code=201)
def post_incident(
    request: Request, session: DatabaseSession, caller: Caller, body: IncidentCreate
) -> Any:
    permitted(Permission.REPORT_INCIDENT, caller.user)
    (site,) = chosen_sites(session, caller.organisation, caller.user, [body.site])
    incident = record_incident(
        session,
        store_of(request).keys,
        caller.organisation,
        caller.user,
        site=site,
        occurred_at=body.occurred_at or utcnow(),
        category=body.category,
        description=body.description,
        evidence=body.evidence,
        police_reference=body.police_reference,
    )
    return incident_view(incident)


@router.get("/subjects", response_model=list[SubjectSummary])
def get_subjects(
    request: Request, session: DatabaseSession, caller: Caller, status: str | None = None
) -> list[Any]:
    """Entries at the caller's sites; ``status`` filters by effective status."""
    permitted(Permission.VIEW, caller.user)
    return list_subjects(session, store_of(request).keys, caller.organisation, caller.user, status)


@router.get("/subjects/{subject_id}", response_model=SubjectPublic)
def get_subject(request: Request, session: DatabaseSession, caller: Caller, subject_id: str) -> Any:
    permitted(Permission.VIEW, caller.user)
    return _shown(request, session, caller, subject_id)


@router.post("/subjects", response_model=SubjectPublic, status_code=201)
async def post_subject(
    request: Request, session: DatabaseSession, caller: Caller, models: Models
) -> Any:
    """Propose an entry (pending until a second person approves it). Multipart fields:
    ``label``, ``reason``, ``incidents`` (repeated ids), ``sites`` (repeated names or
    ids; default the incidents' sites), ``expires_at`` (optional date),
    ``attest_not_child_or_vulnerable`` (true), and ``photos`` (files). 413 over the
    upload limits; 422 with ``photos`` (each refused photo's badge and reasons)."""
    permitted(Permission.ENROL, caller.user)
    try:
        form = await read_upload(request, request.app.state.settings.web)
    except UploadTooLarge as refused:
        raise HTTPException(413, str(refused)) from None
    fields = {
        "label": str(form.get("label", "")),
        "reason": str(form.get("reason", "")),
        "incidents": [str(v) for v in form.getlist("incidents") if str(v).strip()],
        "sites": [str(v) for v in form.getlist("sites") if str(v).strip()],
        "expires_at": str(form.get("expires_at", "")).strip(),
        "attest": str(form.get("attest_not_child_or_vulnerable", "")).lower()
        in {"true", "1", "yes", "on"},
    }
    photos = await photos_of(form)
    return await run_in_threadpool(_enrol, request, session, caller, models, fields, photos)


def _enrol(
    request: Request,
    session: Session,
    caller: ApiCaller,
    models: FaceModels,
    fields: dict[str, Any],
    photos: list[EnrolmentPhoto],
) -> Any:
    organisation, user = caller.organisation, caller.user
    try:
        subject = enrol(
            session,
            store_of(request),
            organisation,
            user,
            models,
            label=fields["label"],
            reason=fields["reason"],
            incidents=chosen_incidents(session, organisation, user, fields["incidents"]),
            sites=chosen_sites(session, organisation, user, fields["sites"]) or None,
            photos=photos,
            attest_not_child_or_vulnerable=fields["attest"],
            expires_at=parse_date(fields["expires_at"], "expiry") if fields["expires_at"] else None,
        )
    except PhotosRefused as refused:
        badges = [refused_badge(name, reasons) for name, reasons in refused.refusals.items()]
        raise HTTPException(
            422,
            {
                "message": str(refused),
                "photos": [
                    {"name": b.name, "label": b.label, "reasons": list(b.reasons)} for b in badges
                ],
            },
        ) from None
    return show_subject(session, store_of(request).keys, organisation, user, subject)


@router.post("/subjects/{subject_id}/approve", response_model=SubjectPublic)
def post_approve(
    request: Request, session: DatabaseSession, caller: Caller, subject_id: str
) -> Any:
    permitted(Permission.APPROVE, caller.user)
    subject = find_subject(session, caller.organisation, caller.user, subject_id)
    approve(session, store_of(request).keys, caller.organisation, caller.user, subject)
    view = _shown(request, session, caller, subject_id)
    commit_and_notify(request, session)
    return view


@router.post("/subjects/{subject_id}/renew", response_model=SubjectPublic)
def post_renew(
    request: Request, session: DatabaseSession, caller: Caller, subject_id: str, body: RenewRequest
) -> Any:
    permitted(Permission.APPROVE, caller.user)
    subject = find_subject(session, caller.organisation, caller.user, subject_id)
    renew(
        session,
        store_of(request).keys,
        caller.organisation,
        caller.user,
        subject,
        body.expires_at,
        body.reason,
    )
    view = _shown(request, session, caller, subject_id)
    commit_and_notify(request, session)
    return view


@router.post("/subjects/{subject_id}/suspend", response_model=SubjectPublic)
def post_suspend(
    request: Request, session: DatabaseSession, caller: Caller, subject_id: str, body: NoteRequest
) -> Any:
    permitted(Permission.SUSPEND, caller.user)
    subject = find_subject(session, caller.organisation, caller.user, subject_id)
    suspend(session, store_of(request).keys, caller.organisation, caller.user, subject, body.note)
    view = _shown(request, session, caller, subject_id)
    commit_and_notify(request, session)
    return view


@router.post("/subjects/{subject_id}/restrict", response_model=SubjectPublic)
def post_restrict(
    request: Request,
    session: DatabaseSession,
    caller: Caller,
    subject_id: str,
    body: RestrictRequest,
) -> Any:
    permitted(Permission.SUSPEND, caller.user)
    subject = find_subject(session, caller.organisation, caller.user, subject_id)
    restrict(
        session,
        store_of(request).keys,
        caller.organisation,
        caller.user,
        subject,
        body.restricted,
        body.note,
    )
    view = _shown(request, session, caller, subject_id)
    commit_and_notify(request, session)
    return view


@router.delete("/subjects/{subject_id}", response_model=Erased)
def delete_subject(
    request: Request, session: DatabaseSession, caller: Caller, subject_id: str, reason: str = ""
) -> Any:
    """Erase the entry and everything derived from it; ``reason`` (query) is required."""
    permitted(Permission.ERASE, caller.user)
    subject = find_subject(session, caller.organisation, caller.user, subject_id)
    removed = erase(session, store_of(request), caller.organisation, caller.user, subject, reason)
    commit_and_notify(request, session)
    return vars(removed)


@router.get("/subjects/{subject_id}/photos/{image_id}", response_class=Response)
def get_photo(
    request: Request, session: DatabaseSession, caller: Caller, subject_id: str, image_id: str
) -> Response:
    """One enrolment photo of the entry, as JPEG (audited)."""
    permitted(Permission.VIEW, caller.user)
    subject = find_subject(session, caller.organisation, caller.user, subject_id)
    if image_id not in {str(image.id) for image in subject.images}:
        raise NotFoundError(f"no photo {image_id!r} of this entry")
    data = read_photo(session, store_of(request), caller.organisation, caller.user, image_id)
    return Response(data, media_type="image/jpeg")
