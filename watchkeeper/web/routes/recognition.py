"""Cameras: their health, adding and testing them, turning them on and off, and the one
control that stops (or restarts) recognition everywhere. Pages and the REST API.

Every change is made by the governance functions (checked and audited there), committed,
and only then handed to the supervisor (:meth:`Supervisor.cameras_changed`), whose
background reconcile reads the database: it must find the change there. A source is
shown masked everywhere; the one with credentials never leaves the database and the
camera's worker.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from watchkeeper.errors import NotFoundError, PolicyError
from watchkeeper.governance import access
from watchkeeper.governance import edges as chain
from watchkeeper.governance.access import PERMISSIONS, Permission, site_scope
from watchkeeper.governance.organisation import (
    add_camera,
    camera_source,
    check_source,
    masked_url,
    update_camera,
)
from watchkeeper.service.probe import SourceProbe, probe_source
from watchkeeper.service.supervisor import CameraHealth, Supervisor
from watchkeeper.store.models import Camera, Organisation, Site, User
from watchkeeper.web.api.cameras import (
    CameraChange,
    CameraCreate,
    CameraPublic,
    ConnectionTest,
    ConnectionTestPublic,
)
from watchkeeper.web.api.schemas import CameraHealthPublic
from watchkeeper.web.deps import (
    Caller,
    CheckedUser,
    CurrentUser,
    DatabaseSession,
    SignedIn,
    permitted,
    stored_or_refused,
)
from watchkeeper.web.templating import templates

router = APIRouter(tags=["cameras"])

TextField = Annotated[str, Form()]


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
        last_restart=health.last_restart,
        alerts=health.alerts,
        unstored_alerts=health.unstored_alerts,
        store_error=health.store_error,
        decision_delay_s=health.decision_delay_s,
        waiting_faces=health.waiting_faces,
        decisions_late=health.decisions_late,
    )


def listed(
    request: Request, session: Session, organisation: Organisation, user: User
) -> list[CameraPublic]:
    """The organisation's cameras at the sites ``user`` may see, each with its worker's
    health when it runs."""
    supervisor = request.app.state.supervisor
    health = {h.camera_id: h for h in supervisor.health()} if supervisor is not None else {}
    query = (
        select(Camera)
        .join(Site)
        .where(Site.organisation_id == organisation.id)
        .order_by(Site.name, Camera.name)
    )
    scope = site_scope(user)
    if scope is not None:
        query = query.where(Camera.site_id.in_(scope))
    return [camera_public(camera, health.get(camera.id)) for camera in session.scalars(query)]


def camera_public(camera: Camera, health: CameraHealth | None = None) -> CameraPublic:
    return CameraPublic(
        id=camera.id,
        site=camera.site.name,
        name=camera.name,
        source=camera.source_display,
        enabled=camera.enabled,
        schedule=camera.schedule,
        health=None if health is None else public(health),
    )


def camera_of(session: Session, organisation: Organisation, camera_id: uuid.UUID) -> Camera:
    """The organisation's camera with this id; another organisation's is not found."""
    camera = session.get(Camera, camera_id)
    if camera is None or camera.site.organisation_id != organisation.id:
        raise NotFoundError(f"no camera {camera_id}")
    return camera


def site_of(session: Session, organisation: Organisation, site_id: str) -> Site:
    try:
        site = session.get(Site, uuid.UUID(site_id))
    except ValueError:
        site = None
    if site is None or site.organisation_id != organisation.id:
        raise PolicyError("choose one of the organisation's sites")
    return site


def committed(request: Request, session: Session) -> None:
    """Commit the request's change now, then let a running supervisor follow it. Nothing
    may read through ``session`` afterwards."""
    session.commit()
    supervisor = request.app.state.supervisor
    if supervisor is not None:
        supervisor.cameras_changed()


def probed(request: Request, session: Session, source: str) -> SourceProbe:
    """Look at ``source`` after committing the request's transaction (the sign-in's own
    write must not hold the database while a camera is waited for, up to
    ``web.camera_test_s``): ``session`` can no longer be used."""
    session.commit()
    settings = request.app.state.settings
    return probe_source(source, settings.video, settings.web.camera_test_s)


def cameras_page(
    request: Request,
    session: Session,
    me: SignedIn,
    *,
    form: dict[str, str] | None = None,
    error: str | None = None,
    probe: SourceProbe | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The cameras page; ``form`` refills the add form after a refusal or a test."""
    supervisor = request.app.state.supervisor
    allowed = PERMISSIONS[me.user.role]
    may_manage = Permission.MANAGE_ORGANISATION in allowed
    sites = []
    if may_manage:
        sites = session.scalars(
            select(Site).where(Site.organisation_id == me.organisation.id).order_by(Site.name)
        ).all()
    scope = site_scope(me.user)
    edges = [
        chain.edge_view(edge)
        for edge in chain.list_edges(session, me.organisation)
        if edge.revoked_at is None and (scope is None or edge.site_id in scope)
    ]
    return templates.TemplateResponse(
        request,
        "cameras.html",
        {
            "me": me,
            "edges": edges,
            "edge_sites": {edge["site"] for edge in edges},
            "cameras": listed(request, session, me.organisation, me.user),
            "supervised": supervisor is not None,
            "running": supervisor is not None and supervisor.running,
            "may_control": supervisor is not None and Permission.CONTROL_RECOGNITION in allowed,
            "may_manage": may_manage,
            "sites": sites,
            "form": form or {},
            "error": error,
            "probe": probe,
            "test_seconds": request.app.state.settings.web.camera_test_s,
        },
        status_code=status_code,
    )


def refill(site: str, name: str, source: str, schedule: str) -> dict[str, str]:
    """The add form's fields to send back. A source with a password is not sent back
    (it would travel to the browser again); the user types it once more."""
    withheld = masked_url(source) != source
    return {
        "site": site,
        "name": name,
        "source": "" if withheld else source,
        "withheld": "yes" if withheld else "",
        "schedule": schedule,
    }


@router.get("/cameras", response_class=HTMLResponse)
def show_cameras(request: Request, session: DatabaseSession, me: CurrentUser) -> HTMLResponse:
    permitted(Permission.VIEW, me.user)
    return cameras_page(request, session, me)


@router.post("/cameras", response_model=None)
def add_camera_form(
    request: Request,
    session: DatabaseSession,
    me: CheckedUser,
    site: TextField = "",
    name: TextField = "",
    source: TextField = "",
    schedule: TextField = "",
) -> Response:
    """Add a camera (administrators). Refused with the reason (422), storing nothing."""
    permitted(Permission.MANAGE_ORGANISATION, me.user)
    try:
        add_camera(
            session,
            request.app.state.store.keys,
            me.organisation,
            me.user,
            site_of(session, me.organisation, site),
            name,
            source,
            schedule,
        )
    except (PolicyError, NotFoundError) as refused:
        form = refill(site, name, source, schedule)
        return cameras_page(request, session, me, form=form, error=str(refused), status_code=422)
    committed(request, session)
    return RedirectResponse("/cameras", status_code=303)


@router.post("/cameras/test", response_class=HTMLResponse)
def check_connection_form(
    request: Request,
    session: DatabaseSession,
    me: CheckedUser,
    site: TextField = "",
    name: TextField = "",
    source: TextField = "",
    schedule: TextField = "",
) -> HTMLResponse:
    """Look at the add form's source (administrators): its picture size and rate, or
    why it gave none. Stores nothing."""
    permitted(Permission.MANAGE_ORGANISATION, me.user)
    form = refill(site, name, source, schedule)
    try:
        checked = check_source(source)
    except PolicyError as refused:
        return cameras_page(request, session, me, form=form, error=str(refused), status_code=422)
    site_scope(me.user)  # loads the user's sites, which the page needs after the commit
    probe = probed(request, session, checked)
    with stored_or_refused(request.app.state.store) as fresh:
        return cameras_page(request, fresh, me, form=form, probe=probe)


@router.post("/cameras/{camera_id}/enabled")
def enable_camera_form(
    request: Request,
    session: DatabaseSession,
    me: CheckedUser,
    camera_id: uuid.UUID,
    enabled: Annotated[bool, Form()],
) -> RedirectResponse:
    """Turn a camera on or off (administrators); a running supervisor follows at once."""
    permitted(Permission.MANAGE_ORGANISATION, me.user)
    camera = camera_of(session, me.organisation, camera_id)
    update_camera(session, request.app.state.store.keys, me.organisation, me.user, camera, enabled)
    committed(request, session)
    return RedirectResponse("/cameras", status_code=303)


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


@router.get("/api/cameras", response_model=list[CameraPublic], tags=["api"])
def cameras_api(request: Request, session: DatabaseSession, caller: Caller) -> list[CameraPublic]:
    """The cameras at the caller's sites, with each running one's health."""
    permitted(Permission.VIEW, caller.user)
    return listed(request, session, caller.organisation, caller.user)


@router.post("/api/cameras", response_model=CameraPublic, status_code=201, tags=["api"])
def create_camera_api(
    request: Request, session: DatabaseSession, caller: Caller, body: CameraCreate
) -> CameraPublic:
    """Add a camera (administrators); 422 with the reason, storing nothing, when refused."""
    permitted(Permission.MANAGE_ORGANISATION, caller.user)
    camera = add_camera(
        session,
        request.app.state.store.keys,
        caller.organisation,
        caller.user,
        access.site(session, caller.organisation.id, body.site),
        body.name,
        body.source,
        body.schedule,
        body.enabled,
    )
    created = camera_public(camera)
    committed(request, session)
    return created


@router.patch("/api/cameras/{camera_id}", response_model=CameraPublic, tags=["api"])
def change_camera_api(
    request: Request,
    session: DatabaseSession,
    caller: Caller,
    camera_id: uuid.UUID,
    body: CameraChange,
) -> CameraPublic:
    """Turn a camera on or off, set its schedule or give it a new source (administrators)."""
    permitted(Permission.MANAGE_ORGANISATION, caller.user)
    camera = camera_of(session, caller.organisation, camera_id)
    update_camera(
        session,
        request.app.state.store.keys,
        caller.organisation,
        caller.user,
        camera,
        body.enabled,
        body.schedule,
        body.source,
    )
    changed = camera_public(camera)
    committed(request, session)
    return changed


@router.post("/api/cameras/test", response_model=ConnectionTestPublic, tags=["api"])
def check_connection_api(
    request: Request, session: DatabaseSession, caller: Caller, body: ConnectionTest
) -> ConnectionTestPublic:
    """Look at a source, or at a registered camera's stored one (administrators): its
    picture size and rate, or why it gave none. Stores nothing."""
    permitted(Permission.MANAGE_ORGANISATION, caller.user)
    if (body.source is None) == (body.camera is None):
        raise PolicyError("give either a source or a camera to test")
    if body.camera is not None:
        camera = camera_of(session, caller.organisation, body.camera)
        source = camera_source(request.app.state.store.keys, camera)
    else:
        source = check_source(body.source or "")
    probe = probed(request, session, source)
    return ConnectionTestPublic(
        source=probe.source,
        ok=probe.ok,
        width=probe.width,
        height=probe.height,
        fps=probe.fps,
        seconds=probe.seconds,
        error=probe.error,
    )
