"""The core's side of a chain: the routes its edges call (see
:mod:`watchkeeper.edge.protocol`). They take an edge's credential, never a user's
token or session; every rule is in :mod:`watchkeeper.governance.edges`.

The watchlist route is a long poll: it answers at once when the edge is behind,
else waits (up to ``wait`` seconds) for the change journal to move. One task per
process follows the journal's newest revision (:class:`JournalWatch`), so a
hundred waiting edges cost one small query a quarter of a second, and no
database connection is held while they wait.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from watchkeeper.errors import EdgeRefused
from watchkeeper.governance import edges
from watchkeeper.service.runtime import alert_message
from watchkeeper.store.database import Store
from watchkeeper.store.models import WatchlistChange
from watchkeeper.web.deps import BEARER, settings_of, store_of, stored_or_refused

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/edge", tags=["chain (edges only)"])

POLL_S = 0.25


class JournalWatch:
    """The newest revision of the watchlist change journal, followed by one task."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.revision = -1
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def _read(self) -> int:
        with self.store.session() as session:
            return session.scalar(select(func.max(WatchlistChange.revision))) or 0

    async def _follow(self) -> None:
        while True:
            try:
                revision = await run_in_threadpool(self._read)
            except Exception as exc:  # the database is away: waiting edges time out
                log.warning("cannot read the watchlist's change journal: %s", exc)
                revision = self.revision
            if revision != self.revision:
                self.revision = revision
                self._changed.set()
                self._changed = asyncio.Event()
            await asyncio.sleep(POLL_S)

    async def wait_beyond(self, revision: int, seconds: float) -> None:
        """Return when the journal passes ``revision`` (any organisation's), or after
        ``seconds``."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._follow())
        deadline = asyncio.get_running_loop().time() + seconds
        while self.revision <= revision:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                return


def journal_watch(request: Request) -> JournalWatch:
    app = request.app
    if getattr(app.state, "journal_watch", None) is None:
        app.state.journal_watch = JournalWatch(store_of(request))
    return app.state.journal_watch


def _credential(request: Request) -> str:
    header = request.headers.get("authorization", "")
    return header[len(BEARER) :].strip() if header.lower().startswith(BEARER) else ""


def _refused(exc: EdgeRefused) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse({"detail": str(exc)}, status_code=exc.status, headers=headers)


class Enrol(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(max_length=200, description="The one-time code from `edges add`.")
    version: str = Field("", max_length=100, description="The edge's Watchkeeper version.")


class Enrolled(BaseModel):
    edge_id: uuid.UUID
    name: str
    site: str
    credential: str = Field(description="The edge's credential from now on (shown once).")
    audit_key: str = Field(description="Key of the edge's audit chain (hex, shown once).")


@router.post("/enrol", status_code=201, response_model=Enrolled)
def enrol(request: Request, body: Enrol) -> Any:
    """An edge exchanges its one-time code for its own credential."""
    store = store_of(request)
    try:
        with stored_or_refused(store) as session:
            done = edges.enrol(session, store.keys, body.code, body.version)
            enrolled = Enrolled(
                edge_id=done.edge.id, name=done.edge.name, site=done.edge.site.name,
                credential=done.credential, audit_key=done.audit_key.hex(),
            )  # fmt: skip
    except EdgeRefused as exc:
        edges.refusal(store, None, "edge.enrol_refused", str(exc))
        return _refused(exc)
    supervisor = request.app.state.supervisor
    if supervisor is not None:  # the site's cameras are the edge's now
        supervisor.cameras_changed()
    return enrolled


@router.post("/sync")
async def sync(
    request: Request,
    status: Annotated[dict[str, Any], Body(default_factory=dict)],
    since: Annotated[int, Query(ge=0, description="The watchlist revision the edge holds.")] = 0,
    wait: Annotated[float, Query(ge=0, le=300, description="Seconds to wait for a change.")] = 0.0,
    digest: Annotated[bool, Query(description="Also list every entry searchable now.")] = False,
) -> Any:
    """The edge reports its status and gets the watchlist changes after ``since``."""
    store, settings, credential = store_of(request), settings_of(request), _credential(request)

    def exchange() -> dict[str, Any]:
        with stored_or_refused(store) as session:
            edge = edges.authenticated(session, credential)
            edges.record_status(edge, since, status)
            return edges.changes_for(session, store.keys, settings, edge, since, digest)

    try:
        answer = await run_in_threadpool(exchange)
        if answer["revision"] == since and not answer["full"] and wait > 0:
            await journal_watch(request).wait_beyond(since, wait)
            answer = await run_in_threadpool(exchange)
    except EdgeRefused as exc:
        return _refused(exc)
    return answer


@router.post("/alerts", status_code=201)
def receive_alert(request: Request, alert: Annotated[dict[str, Any], Body()]) -> Any:
    """One alert raised at the edge: stored once, whatever the number of deliveries."""
    store, settings = store_of(request), settings_of(request)
    edge_id = None
    try:
        with stored_or_refused(store) as session:
            edge = edges.authenticated(session, _credential(request))
            edge_id = edge.id
            ingested = edges.ingest_alert(session, store, settings, edge, alert)
    except EdgeRefused as exc:
        if exc.status != 401:
            edges.refusal(
                store, edge_id, "edge.alert_refused", str(exc), alert=str(alert.get("id"))[:40]
            )
        return _refused(exc)
    if ingested.stored is None:
        return JSONResponse({"id": alert.get("id"), "stored": "before"}, status_code=200)
    runtime = request.app.state.runtime
    runtime.broadcaster.publish(alert_message(ingested.camera, ingested.stored))
    runtime.notifier.wake()
    return {"id": ingested.stored.alert_id, "stored": "now"}


@router.post("/audit")
def receive_audit(
    request: Request, events: Annotated[list[dict[str, Any]], Body(embed=True)]
) -> Any:
    """The edge's audit events, verified against its chain and recorded."""
    store = store_of(request)
    edge_id = None
    try:
        with stored_or_refused(store) as session:
            edge = edges.authenticated(session, _credential(request))
            edge_id = edge.id
            count = edges.ingest_audit(session, store.keys, edge, events)
    except EdgeRefused as exc:
        if exc.status != 401:
            edges.refusal(store, edge_id, "edge.audit_refused", str(exc))
        return _refused(exc)
    return {"recorded": count}
