"""Cameras' health, and the one control that stops (or restarts) recognition everywhere."""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from watchkeeper.governance.access import PERMISSIONS, Permission
from watchkeeper.service.supervisor import CameraHealth, Supervisor
from watchkeeper.web.api.schemas import CameraHealthPublic
from watchkeeper.web.app import templates
from watchkeeper.web.deps import Caller, CheckedUser, CurrentUser, permitted

router = APIRouter(tags=["cameras"])


def supervisor_of(request: Request) -> Supervisor:
    supervisor = request.app.state.supervisor
    if supervisor is None:
        raise HTTPException(404, "recognition does not run in this process")
    return supervisor


def public(health: CameraHealth) -> CameraHealthPublic:
    seen = health.last_frame_at
    return CameraHealthPublic(
        name=health.name,
        state=health.state.value,
        fps=health.fps,
        frames=health.frames,
        dropped=health.dropped,
        last_frame_seconds_ago=None if seen is None else round(time.time() - seen, 1),
        error=health.error,
        restarts=health.restarts,
        alerts=health.alerts,
    )


@router.get("/cameras", response_class=HTMLResponse)
def cameras_page(request: Request, me: CurrentUser) -> HTMLResponse:
    permitted(Permission.VIEW, me.user)
    supervisor = supervisor_of(request)
    return templates.TemplateResponse(
        request,
        "cameras.html",
        {
            "me": me,
            "cameras": [public(h) for h in supervisor.health()],
            "running": supervisor.running,
            "may_control": Permission.CONTROL_RECOGNITION in PERMISSIONS[me.user.role],
        },
    )


@router.post("/recognition/stop")
def stop_recognition(request: Request, me: CheckedUser) -> RedirectResponse:
    permitted(Permission.CONTROL_RECOGNITION, me.user)
    supervisor_of(request).request_stop(me.user.name)
    return RedirectResponse("/cameras", status_code=303)


@router.post("/recognition/start")
def start_recognition(request: Request, me: CheckedUser) -> RedirectResponse:
    permitted(Permission.CONTROL_RECOGNITION, me.user)
    supervisor_of(request).request_start(me.user.name)
    return RedirectResponse("/cameras", status_code=303)


@router.get("/api/cameras", response_model=list[CameraHealthPublic], tags=["api"])
def cameras_api(request: Request, caller: Caller) -> list[CameraHealthPublic]:
    permitted(Permission.VIEW, caller.user)
    return [public(h) for h in supervisor_of(request).health()]
