"""Alerts as reviewers see them: the list, new ones pushed as they happen, and the review
card on which two different reviewers decide each one.

Every page shows only the alerts of the sites the signed-in user may see
(:func:`~watchkeeper.governance.access.site_scope`); another site's alert is "not
found". Viewing the card, its snapshot and every decision are audited by the
governance functions called here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from sqlalchemy.orm import Session

from watchkeeper.config import ReviewConfig
from watchkeeper.errors import PolicyError
from watchkeeper.governance import access
from watchkeeper.governance.access import PERMISSIONS, Permission
from watchkeeper.governance.alerts import (
    NOTE_MAX_CHARS,
    browse_alerts,
    card_details,
    review,
    show_alert,
)
from watchkeeper.governance.bands import score_band
from watchkeeper.service.broadcast import AlertBroadcaster
from watchkeeper.service.runtime import SITE_KEY
from watchkeeper.store.models import Alert, AlertStatus, Decision
from watchkeeper.web.deps import (
    CheckedUser,
    CurrentUser,
    DatabaseSession,
    LiveViewer,
    SignedIn,
    permitted,
    settings_of,
    store_of,
)
from watchkeeper.web.templating import templates

router = APIRouter(tags=["alerts"])


def public_message(message: dict[str, Any], config: ReviewConfig) -> dict[str, Any]:
    """A broadcast message as an alert page receives it: its band, without its site."""
    public = {key: value for key, value in message.items() if key != SITE_KEY}
    public["band"] = score_band(message["score"], message["threshold"], config)
    return public


def review_config(request: Request) -> ReviewConfig:
    return settings_of(request).review


def banded(views: list[dict[str, Any]], config: ReviewConfig) -> list[dict[str, Any]]:
    return [view | {"band": score_band(view["score"], view["threshold"], config)} for view in views]


STATUS_CHOICES = ("pending", "unsure", "confirmed", "rejected", "all")


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(
    request: Request,
    session: DatabaseSession,
    me: CurrentUser,
    status: Annotated[str, Query()] = "pending",
) -> HTMLResponse:
    """The alerts of the user's sites with one status (pending by default), newest first."""
    permitted(Permission.VIEW, me.user)
    if status not in STATUS_CHOICES:
        status = "pending"
    chosen = None if status == "all" else AlertStatus(status)
    alerts = browse_alerts(session, store_of(request), me.organisation, me.user, chosen)
    return templates.TemplateResponse(
        request,
        "alerts.html",
        {
            "me": me,
            "alerts": banded(alerts, review_config(request)),
            "status": status,
            "choices": STATUS_CHOICES,
        },
    )


def live_scope(request: Request, viewer: LiveViewer) -> frozenset[str] | None:
    """The ids of the sites whose alerts the stream's viewer may be told of (None: all),
    read once when the stream opens, in a transaction that ends at once."""
    with store_of(request).session() as session:
        organisation = access.organisation(session)
        scope = access.site_scope(access.user(session, organisation.id, viewer.name))
    return None if scope is None else frozenset(str(site) for site in scope)


@router.get("/alerts/stream")
async def alerts_stream(
    request: Request, scope: Annotated[frozenset[str] | None, Depends(live_scope)]
) -> StreamingResponse:
    """Server-sent events: one ``alert`` event per new alert of a site the viewer may
    see, comments as heartbeats."""
    broadcaster: AlertBroadcaster = request.app.state.broadcaster
    config = review_config(request)

    async def events() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        async for message in broadcaster.subscribe():
            if await request.is_disconnected():
                return
            if message is None:
                yield ": still here\n\n"
            elif scope is None or message.get(SITE_KEY) in scope:
                yield f"event: alert\ndata: {json.dumps(public_message(message, config))}\n\n"

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"}
    )


def render_card(
    request: Request,
    session: Session,
    me: SignedIn,
    alert: Alert,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The review card (its viewing audited by :func:`show_alert`)."""
    view, _ = show_alert(session, store_of(request), me.organisation, me.user, alert)
    card = view | card_details(alert, review_config(request))
    mine = next((r for r in card["reviews"] if r["user"] == me.user.name), None)
    return templates.TemplateResponse(
        request,
        "alert.html",
        {
            "me": me,
            "alert": card,
            "guidance": review_config(request).guidance,
            "may_review": Permission.REVIEW in PERMISSIONS[me.user.role],
            "decided": card["status"] in (AlertStatus.CONFIRMED, AlertStatus.REJECTED),
            "mine": mine,
            "decisions": list(Decision),
            "note_max": NOTE_MAX_CHARS,
            "error": error,
        },
        status_code=status_code,
    )


@router.get("/alerts/{alert_id}", response_class=HTMLResponse)
def alert_card(
    request: Request, session: DatabaseSession, me: CurrentUser, alert_id: str
) -> HTMLResponse:
    """The review card: the camera's crop beside the entry's enrolment photos, the score
    band, warnings about the sighting, the incidents, guidance, reviews and the form."""
    permitted(Permission.VIEW, me.user)
    alert = access.owned(session, Alert, me.organisation.id, alert_id)
    return render_card(request, session, me, alert)


@router.get("/alerts/{alert_id}/snapshot", response_class=Response)
def alert_snapshot(
    request: Request, session: DatabaseSession, me: CurrentUser, alert_id: str
) -> Response:
    """The camera's face crop as JPEG (decrypted for this response only; audited as
    ``alert.snapshot``)."""
    permitted(Permission.VIEW, me.user)
    alert = access.owned(session, Alert, me.organisation.id, alert_id)
    _, snapshot = show_alert(
        session, store_of(request), me.organisation, me.user, alert, with_snapshot=True
    )
    return Response(snapshot, media_type="image/jpeg")


@router.post("/alerts/{alert_id}/review", response_class=HTMLResponse)
def alert_review(
    request: Request,
    session: DatabaseSession,
    me: CheckedUser,
    alert_id: str,
    decision: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
) -> Response:
    """Record the signed-in reviewer's decision, then show the card again. A decision
    the rules refuse (a second one by the same person, an alert already decided) or
    a bad form is shown on the card with 422, and nothing is stored."""
    permitted(Permission.REVIEW, me.user)
    alert = access.owned(session, Alert, me.organisation.id, alert_id)
    note = note.strip()
    try:
        chosen = Decision(decision)
    except ValueError:
        return render_card(
            request, session, me, alert, "Choose confirm, reject or unsure.", status_code=422
        )
    try:
        review(
            session,
            store_of(request),
            me.organisation,
            me.user,
            alert,
            chosen,
            note or None,
            settings_of(request),
        )
    except PolicyError as refused:
        return render_card(request, session, me, alert, str(refused), status_code=422)
    return RedirectResponse(f"/alerts/{alert.id}", status_code=303)
