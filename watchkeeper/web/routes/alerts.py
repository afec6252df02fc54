"""Alerts as reviewers see them: the pending list, and new ones pushed as they happen."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from watchkeeper.governance.access import Permission
from watchkeeper.governance.alerts import browse_alerts
from watchkeeper.governance.live import StoredAlert
from watchkeeper.service.broadcast import AlertBroadcaster
from watchkeeper.service.supervisor import CameraHealth
from watchkeeper.store.models import AlertStatus
from watchkeeper.web.app import templates
from watchkeeper.web.deps import (
    CurrentUser,
    DatabaseSession,
    LiveViewer,
    permitted,
    store_of,
)

router = APIRouter(tags=["alerts"])


def alert_message(camera: CameraHealth, alert: StoredAlert) -> dict[str, Any]:
    """What an alert page is sent about a new alert (no face data: the page asks for
    the crop, with its own authorisation, when it shows the alert)."""
    return {
        "id": alert.alert_id,
        "camera": camera.name,
        "subject_label": alert.label,
        "score": alert.score,
        "threshold": alert.threshold,
        "occurred_at": alert.occurred_at,
        "status": AlertStatus.PENDING.value,
    }


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(request: Request, session: DatabaseSession, me: CurrentUser) -> HTMLResponse:
    permitted(Permission.VIEW, me.user)
    pending = browse_alerts(
        session, store_of(request), me.organisation, me.user, AlertStatus.PENDING
    )
    return templates.TemplateResponse(request, "alerts.html", {"me": me, "alerts": pending})


@router.get("/alerts/stream")
async def alerts_stream(request: Request, viewer: LiveViewer) -> StreamingResponse:
    """Server-sent events: one ``alert`` event per new alert, comments as heartbeats."""
    broadcaster: AlertBroadcaster = request.app.state.broadcaster

    async def events() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        async for message in broadcaster.subscribe():
            if await request.is_disconnected():
                return
            if message is None:
                yield ": still here\n\n"
            else:
                yield f"event: alert\ndata: {json.dumps(message)}\n\n"

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"}
    )
