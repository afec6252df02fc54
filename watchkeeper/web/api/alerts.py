"""``/api/alerts``: alerts of the caller's sites, their reviews, and new reviews.

The same rules as the pages: another site's alert is "not found" (404), a second
decision by the same reviewer or one on a decided alert is refused (422), and every
list, view, snapshot and review is audited by the governance functions called here.
No schema has a field for the probe vector; the snapshot is its own JPEG endpoint.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from watchkeeper.governance import access
from watchkeeper.governance.access import Permission
from watchkeeper.governance.alerts import (
    NOTE_MAX_CHARS,
    alert_view,
    browse_alerts,
    card_details,
    review,
    show_alert,
)
from watchkeeper.governance.bands import Band, score_band
from watchkeeper.store.models import Alert, AlertStatus, Decision
from watchkeeper.web.deps import Caller, DatabaseSession, permitted, settings_of, store_of

router = APIRouter(prefix="/api", tags=["api"])


class AlertSummary(BaseModel):
    id: str
    occurred_at: str = Field(description="When the face was matched (ISO 8601, UTC).")
    camera: str = Field(description="Site/camera.")
    subject: str = Field(description="Id of the watchlist entry matched.")
    subject_label: str
    band: Band = Field(
        description="strong, likely or weak: how far the score lies above the threshold "
        "(review.strong_margin, review.likely_margin). Not a probability."
    )
    score: float = Field(description="Fused cosine similarity of the face to the entry.")
    threshold: float = Field(description="The calibrated threshold the score had to reach.")
    status: AlertStatus


class ReviewPublic(BaseModel):
    user: str
    decision: Decision
    note: str | None
    at: str = Field(description="ISO 8601, UTC.")


class IncidentPublic(BaseModel):
    id: str
    category: str
    occurred_at: str = Field(description="ISO 8601, UTC.")
    site: str
    description: str


class SightingPublic(BaseModel):
    """How the face was seen: counts and scores, no face data."""

    seconds: float | None = Field(None, description="From first to last sight, seconds.")
    frames: int | None = Field(None, description="Analysed frames in which it was detected.")
    shots: int | None = Field(None, description="Usable shots the decision rests on.")
    best_quality: float | None = Field(None, description="Best shot's quality score, 0-1.")
    runner_up_margin: float | None = Field(
        None, description="Score minus the next watchlist entry's (None: no other candidate)."
    )


class AlertPublic(AlertSummary):
    site: str
    model: str = Field(description="Embedder whose score this is.")
    sighting: SightingPublic | None = Field(description="None for alerts before it was kept.")
    flags: list[str] = Field(description="Plain-language warnings for the reviewer.")
    expires_at: str = Field(description="When the watchlist entry expires (ISO 8601, UTC).")
    photos: list[str] = Field(
        description="Ids of the entry's enrolment photos: GET /watchlist/photos/{id}."
    )
    incidents: list[IncidentPublic]
    reviews: list[ReviewPublic]
    confirmations_needed: int = Field(description="Different reviewers who must confirm.")
    confirmed_by: list[str]


class ReviewCreate(BaseModel):
    decision: Decision
    note: str | None = Field(None, max_length=NOTE_MAX_CHARS, description="Why, in a few words.")


def _summary(view: dict[str, Any], request: Request) -> AlertSummary:
    band = score_band(view["score"], view["threshold"], settings_of(request).review)
    return AlertSummary.model_validate(view | {"band": band})


def _public(request: Request, alert: Alert, view: dict[str, Any]) -> AlertPublic:
    return AlertPublic.model_validate(view | card_details(alert, settings_of(request).review))


@router.get("/alerts", response_model=list[AlertSummary])
def list_alerts(
    request: Request, session: DatabaseSession, caller: Caller, status: AlertStatus | None = None
) -> list[AlertSummary]:
    """Alerts of the caller's sites, newest first, optionally of one status."""
    permitted(Permission.VIEW, caller.user)
    views = browse_alerts(session, store_of(request), caller.organisation, caller.user, status)
    return [_summary(view, request) for view in views]


@router.get("/alerts/{alert_id}", response_model=AlertPublic)
def get_alert(
    request: Request, session: DatabaseSession, caller: Caller, alert_id: str
) -> AlertPublic:
    """One alert with its reviews, band, warnings and the entry's incidents."""
    permitted(Permission.VIEW, caller.user)
    alert = access.owned(session, Alert, caller.organisation.id, alert_id)
    view, _ = show_alert(session, store_of(request), caller.organisation, caller.user, alert)
    return _public(request, alert, view)


@router.get(
    "/alerts/{alert_id}/snapshot",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}, "description": "The camera's face crop."}},
)
def get_snapshot(
    request: Request, session: DatabaseSession, caller: Caller, alert_id: str
) -> Response:
    """The camera's face crop (JPEG), decrypted for this response only; audited."""
    permitted(Permission.VIEW, caller.user)
    alert = access.owned(session, Alert, caller.organisation.id, alert_id)
    _, snapshot = show_alert(
        session, store_of(request), caller.organisation, caller.user, alert, with_snapshot=True
    )
    return Response(snapshot, media_type="image/jpeg")


@router.post("/alerts/{alert_id}/reviews", response_model=AlertPublic, status_code=201)
def post_review(
    request: Request, session: DatabaseSession, caller: Caller, alert_id: str, body: ReviewCreate
) -> AlertPublic:
    """Record the caller's decision; the alert as it now stands. 422 for a second
    decision by the same reviewer or one on an alert already decided."""
    permitted(Permission.REVIEW, caller.user)
    alert = access.owned(session, Alert, caller.organisation.id, alert_id)
    note = (body.note or "").strip() or None
    store = store_of(request)
    settings = settings_of(request)
    review(session, store, caller.organisation, caller.user, alert, body.decision, note, settings)
    return _public(request, alert, alert_view(alert, full=True))
