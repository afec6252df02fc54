"""Every web route and every role in one table: who may, and who may not.

The table names each route's :class:`Permission` once; which of the shop's staff may
call it follows from :data:`PERMISSIONS`. For every route and every user, a denied
user gets exactly 403 (naming the permission, writing nothing to the audit log) and
an allowed one gets the route's success status; without credentials every route
answers 401 (API) or a redirect to the sign-in page (pages); the API refuses a page
session without a token, and pages refuse a bearer token alone. A test also checks
that the table lists exactly the routes of the app (its OpenAPI paths).

One shop, its signed-in browsers and API tokens are built once for the module;
state-changing calls by allowed users get fresh targets (a new proposal, a new
alert), made through the governance functions. Recognition control needs a
supervisor: those two routes run against a second app over a database of its own
whose only camera is disabled, so starting recognition starts no worker (cameras
added by the table's calls elsewhere would otherwise be started). SQLite only: the
area tests cover PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.support.alerts import raise_alert
from tests.support.data import MODELS
from tests.support.net import unused_port
from tests.support.shop import USERS, Shop, Sighting, enrol_subject, photos_of, set_up_shop
from tests.support.web import Browser, api_token, set_passwords, sign_in
from watchkeeper.config import Settings, load_settings
from watchkeeper.governance.access import PERMISSIONS, Permission
from watchkeeper.governance.estate import join_cameras
from watchkeeper.governance.organisation import update_camera
from watchkeeper.pipeline import FaceModels
from watchkeeper.service.broadcast import AlertBroadcaster
from watchkeeper.service.runtime import Runtime
from watchkeeper.store.crypto import encode_key, generate_key
from watchkeeper.store.database import Store, open_store
from watchkeeper.store.models import AuditEvent, EstateDevice, FaceImage
from watchkeeper.web.app import create_app

pytestmark = pytest.mark.parametrize("database_url", [None], ids=["sqlite"], scope="module")

EXEMPT = {
    # Signing in is what every other route's credentials come from: it must answer
    # anyone (its own CSRF cookie and the password are its checks; tests/web/test_auth.py).
    ("GET", "/login"),
    ("POST", "/login"),
    # Any signed-in user may sign out, whatever their role; signing out here would end
    # the module's shared sessions (tests/web/test_auth.py covers it).
    ("POST", "/logout"),
}

EDGE_ROUTES = {
    # A chain's edges call these with their own credential, never a user's token or
    # session (tests/edge/ and tests/governance/test_edges.py): every user is refused.
    ("POST", "/api/edge/enrol"),
    ("POST", "/api/edge/sync"),
    ("POST", "/api/edge/alerts"),
    ("POST", "/api/edge/audit"),
}


# The world the table's requests act on


@dataclass
class Staff:
    """One app and, for each shop user, a signed-in browser and API token headers."""

    shop: Shop
    anonymous: TestClient
    browsers: dict[str, Browser]
    tokens: dict[str, dict[str, str]]


@dataclass
class World:
    main: Staff
    supervised: Staff
    """A second app, with a supervisor over a database whose only camera is disabled."""
    broadcaster: AlertBroadcaster
    models: FaceModels
    seen: Sighting
    photo: bytes
    """An LFW photo of one usable face (JPEG), for proposals."""
    active: str
    """An approved entry (never changed by the table's calls)."""
    image: str
    """One of ``active``'s enrolment photos."""
    pending: str
    """A proposal by bob that nobody approves: target of refused calls, renewals, restrictions."""
    alert: str
    """An alert of ``active``, only read (reviews by allowed users get fresh ones)."""

    def entry(self, fresh: bool) -> str:
        """A new proposal by bob when ``fresh`` (the call consumes it), else ``pending``."""
        if not fresh:
            return self.pending
        return str(enrol_subject(self.main.shop, self.models, "Joseph_Biden", approve_by=None))

    def alert_to_review(self, fresh: bool) -> str:
        return (
            raise_alert(self.main.shop, uuid.UUID(self.active), self.seen) if fresh else self.alert
        )


def new_store(folder: Path) -> tuple[Settings, Store]:
    settings = load_settings(
        models_dir=MODELS, data_dir=folder, database_url=None, key=encode_key(generate_key())
    )
    return settings, open_store(settings, create=True)


def staff_of(stack: ExitStack, app: FastAPI, shop: Shop) -> Staff:
    set_passwords(shop)
    anonymous = stack.enter_context(TestClient(app, follow_redirects=False))  # runs the lifespan
    browsers = {name: sign_in(TestClient(app, follow_redirects=False), name) for name in USERS}
    return Staff(shop, anonymous, browsers, {name: api_token(shop, name) for name in USERS})


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory,
    database_url: None,
    face_models: FaceModels,
    sightings: Callable[[str, int], Sighting],
) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("route-roles")
    with ExitStack() as stack:
        settings, store = new_store(folder / "main")
        stack.callback(store.close)
        shop = set_up_shop(store)
        runtime = Runtime(settings, store, cameras=False)
        broadcaster = runtime.broadcaster
        app = create_app(settings, store, runtime)
        app.state.face_models = face_models  # the session's models, not loaded again
        main = staff_of(stack, app, shop)

        quiet_settings, quiet_store = new_store(folder / "supervised")
        stack.callback(quiet_store.close)
        quiet_shop = set_up_shop(quiet_store)
        with quiet_shop.tx() as tx:
            alice = tx.user("alice")
            update_camera(tx.session, quiet_store.keys, tx.organisation, alice, tx.camera, False)
        quiet_app = create_app(quiet_settings, quiet_store, Runtime(quiet_settings, quiet_store))
        supervised = staff_of(stack, quiet_app, quiet_shop)

        seen = sightings("Joseph_Biden", 4)
        active = enrol_subject(shop, face_models, "Joseph_Biden")
        with shop.tx() as tx:
            image = tx.session.scalars(select(FaceImage.id).filter_by(subject_id=active)).one()
        yield World(
            main=main,
            supervised=supervised,
            broadcaster=broadcaster,
            models=face_models,
            seen=seen,
            photo=photos_of("Joseph_Biden", 1, skip=1)[0].data,
            active=str(active),
            image=str(image),
            pending=str(enrol_subject(shop, face_models, "Joseph_Biden", approve_by=None)),
            alert=raise_alert(shop, active, seen),
        )


# The table


@dataclass(frozen=True)
class Call:
    """A valid request: its path, and its form fields, JSON body, files or query."""

    path: str
    data: dict[str, Any] | None = None
    json: Any = None
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None
    params: dict[str, str] | None = None


Build = Callable[[World, bool], Call]
"""A valid request for the route; ``fresh``: an allowed user calls it, so a target the
call uses up (a proposal to approve, an alert to review) is made anew."""


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    permission: Permission | None
    """None: any signed-in user (or any token's user) may call it."""
    build: Build
    ok: int
    """What an allowed user gets."""
    supervised: bool = False
    """Called on the app with a supervisor."""
    stream: bool = False
    """Server-sent events: the test ends the stream once it is open."""

    @property
    def api(self) -> bool:
        return self.path.startswith("/api/")

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    def allows(self, name: str) -> bool:
        return self.permission is None or self.permission in PERMISSIONS[USERS[name]]


def at(path: str, **request: Any) -> Build:
    return lambda world, fresh: Call(path, **request)


def unreachable() -> str:
    """A camera URL where nothing listens: a connection test fails at once."""
    return f"rtsp://admin:pw@127.0.0.1:{unused_port()}/stream1"


def camera_name() -> str:
    return f"cam-{uuid.uuid4().hex[:8]}"


def in_days(days: int) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(days=days)


def proposal(world: World, api: bool) -> tuple[dict[str, str], list]:
    """The fields and photo of a proposal linked to the shop's incident."""
    fields = {
        "label": "man, grey suit",
        "reason": "repeat theft",
        "incidents": str(world.main.shop.incident_id),
    }
    fields |= {"attest_not_child_or_vulnerable": "true"} if api else {"attest": "on"}
    return fields, [("photos", ("still.jpg", world.photo, "image/jpeg"))]


def page_proposal(world: World, fresh: bool) -> Call:
    fields, files = proposal(world, api=False)
    return Call("/watchlist", data=fields, files=files)


def api_proposal(world: World, fresh: bool) -> Call:
    fields, files = proposal(world, api=True)
    return Call("/api/subjects", data=fields, files=files)


def estate_device(world: World) -> str:
    """The estate register's device for the shop's camera (it joins on first use)."""
    with world.main.shop.tx() as tx:
        join_cameras(tx.session, world.main.shop.store.keys, tx.organisation, tx.user("alice"))
        return str(
            tx.session.scalars(
                select(EstateDevice.id).where(EstateDevice.camera_id == world.main.shop.camera_id)
            ).one()
        )


INCIDENT = {"site": "Leeds", "category": "theft", "description": "took two bottles of gin"}
V, R = Permission.VIEW, Permission.REVIEW
MANAGE = Permission.MANAGE_ORGANISATION
ESTATE = Permission.ESTATE_VIEW

ROUTES = [
    # Pages
    Route("GET", "/", None, at("/"), 200),
    Route("GET", "/alerts", V, at("/alerts"), 200),
    Route("GET", "/alerts/stream", V, at("/alerts/stream"), 200, stream=True),
    Route("GET", "/alerts/{alert_id}", V, lambda w, f: Call(f"/alerts/{w.alert}"), 200),
    Route(
        "GET",
        "/alerts/{alert_id}/snapshot",
        V,
        lambda w, f: Call(f"/alerts/{w.alert}/snapshot"),
        200,
    ),
    Route(
        "POST",
        "/alerts/{alert_id}/review",
        R,
        lambda w, f: Call(f"/alerts/{w.alert_to_review(f)}/review", data={"decision": "confirm"}),
        303,
    ),
    Route(
        "GET",
        "/watchlist/photos/{image_id}",
        V,
        lambda w, f: Call(f"/watchlist/photos/{w.image}"),
        200,
    ),
    Route("GET", "/incidents", V, at("/incidents"), 200),
    Route("POST", "/incidents", Permission.REPORT_INCIDENT, at("/incidents", data=INCIDENT), 303),
    Route("GET", "/incidents/new", Permission.REPORT_INCIDENT, at("/incidents/new"), 200),
    Route("GET", "/watchlist", V, at("/watchlist"), 200),
    Route("POST", "/watchlist", Permission.ENROL, page_proposal, 303),
    Route("GET", "/watchlist/new", Permission.ENROL, at("/watchlist/new"), 200),
    Route(
        "POST",
        "/watchlist/check-photo",
        Permission.ENROL,
        lambda w, f: Call(
            "/watchlist/check-photo", data={}, files=[("photo", ("a.jpg", w.photo, "image/jpeg"))]
        ),
        200,
    ),
    Route("GET", "/watchlist/{subject_id}", V, lambda w, f: Call(f"/watchlist/{w.active}"), 200),
    Route(
        "POST",
        "/watchlist/{subject_id}/approve",
        Permission.APPROVE,
        lambda w, f: Call(f"/watchlist/{w.entry(f)}/approve", data={}),
        303,
    ),
    Route(
        "POST",
        "/watchlist/{subject_id}/renew",
        Permission.APPROVE,
        lambda w, f: Call(
            f"/watchlist/{w.pending}/renew",
            data={"expires": f"{in_days(100):%Y-%m-%d}", "reason": "seen again last week"},
        ),
        303,
    ),
    Route(
        "POST",
        "/watchlist/{subject_id}/suspend",
        Permission.SUSPEND,
        lambda w, f: Call(f"/watchlist/{w.entry(f)}/suspend", data={"note": "under review"}),
        303,
    ),
    Route(
        "POST",
        "/watchlist/{subject_id}/restrict",
        Permission.SUSPEND,
        lambda w, f: Call(
            f"/watchlist/{w.pending}/restrict", data={"restricted": "true", "note": "asked"}
        ),
        303,
    ),
    Route(
        "POST",
        "/watchlist/{subject_id}/erase",
        Permission.ERASE,
        lambda w, f: Call(
            f"/watchlist/{w.entry(f)}/erase", data={"reason": "request", "confirm": "true"}
        ),
        303,
    ),
    Route("GET", "/audit", Permission.AUDIT, at("/audit"), 200),
    Route("GET", "/audit/export.csv", Permission.AUDIT, at("/audit/export.csv"), 200),
    Route("GET", "/transparency", V, at("/transparency"), 200),
    Route("GET", "/estate", ESTATE, at("/estate", params={"finding": "plain-http"}), 200),
    Route(
        "GET", "/estate/{device_id}", ESTATE, lambda w, f: Call(f"/estate/{estate_device(w)}"), 200
    ),
    Route("GET", "/cameras", V, at("/cameras"), 200),
    Route(
        "POST",
        "/cameras",
        MANAGE,
        lambda w, f: Call(
            "/cameras",
            data={"site": str(w.main.shop.site_id), "name": camera_name(), "source": unreachable()},
        ),
        303,
    ),
    Route(
        "POST",
        "/cameras/test",
        MANAGE,
        lambda w, f: Call(
            "/cameras/test",
            data={"site": str(w.main.shop.site_id), "name": "till", "source": unreachable()},
        ),
        200,
    ),
    Route(
        "POST",
        "/cameras/{camera_id}/enabled",
        MANAGE,
        lambda w, f: Call(f"/cameras/{w.main.shop.camera_id}/enabled", data={"enabled": "false"}),
        303,
    ),
    Route("GET", "/settings/model", Permission.APPROVE, at("/settings/model"), 200),
    Route(
        "POST",
        "/settings/model",
        Permission.APPROVE,
        # The model in use (the shop's entries were enrolled with it): nothing to start.
        at("/settings/model", data={"model": "dlib-resnet-v1"}),
        303,
    ),
    Route(
        "POST",
        "/recognition/stop",
        Permission.CONTROL_RECOGNITION,
        at("/recognition/stop", data={}),
        303,
        supervised=True,
    ),
    Route(
        "POST",
        "/recognition/start",
        Permission.CONTROL_RECOGNITION,
        at("/recognition/start", data={}),
        303,
        supervised=True,
    ),
    # API
    Route("GET", "/api/me", None, at("/api/me"), 200),
    Route("GET", "/api/cameras", V, at("/api/cameras"), 200),
    Route(
        "POST",
        "/api/cameras",
        MANAGE,
        lambda w, f: Call(
            "/api/cameras",
            json={
                "site": "Leeds",
                "name": camera_name(),
                "source": unreachable(),
                "enabled": False,
            },
        ),
        201,
    ),
    Route(
        "PATCH",
        "/api/cameras/{camera_id}",
        MANAGE,
        lambda w, f: Call(f"/api/cameras/{w.main.shop.camera_id}", json={"enabled": False}),
        200,
    ),
    Route(
        "POST",
        "/api/cameras/test",
        MANAGE,
        lambda w, f: Call("/api/cameras/test", json={"source": unreachable()}),
        200,
    ),
    Route("GET", "/api/alerts", V, at("/api/alerts"), 200),
    Route("GET", "/api/alerts/{alert_id}", V, lambda w, f: Call(f"/api/alerts/{w.alert}"), 200),
    Route(
        "GET",
        "/api/alerts/{alert_id}/snapshot",
        V,
        lambda w, f: Call(f"/api/alerts/{w.alert}/snapshot"),
        200,
    ),
    Route(
        "POST",
        "/api/alerts/{alert_id}/reviews",
        R,
        lambda w, f: Call(
            f"/api/alerts/{w.alert_to_review(f)}/reviews", json={"decision": "confirm"}
        ),
        201,
    ),
    Route("GET", "/api/incidents", V, at("/api/incidents"), 200),
    Route(
        "POST",
        "/api/incidents",
        Permission.REPORT_INCIDENT,
        at("/api/incidents", json=INCIDENT),
        201,
    ),
    Route("GET", "/api/subjects", V, at("/api/subjects"), 200),
    Route("POST", "/api/subjects", Permission.ENROL, api_proposal, 201),
    Route(
        "GET", "/api/subjects/{subject_id}", V, lambda w, f: Call(f"/api/subjects/{w.active}"), 200
    ),
    Route(
        "DELETE",
        "/api/subjects/{subject_id}",
        Permission.ERASE,
        lambda w, f: Call(f"/api/subjects/{w.entry(f)}", params={"reason": "request"}),
        200,
    ),
    Route(
        "POST",
        "/api/subjects/{subject_id}/approve",
        Permission.APPROVE,
        lambda w, f: Call(f"/api/subjects/{w.entry(f)}/approve"),
        200,
    ),
    Route(
        "POST",
        "/api/subjects/{subject_id}/renew",
        Permission.APPROVE,
        lambda w, f: Call(
            f"/api/subjects/{w.pending}/renew",
            json={"expires_at": in_days(100).isoformat(), "reason": "seen again last week"},
        ),
        200,
    ),
    Route(
        "POST",
        "/api/subjects/{subject_id}/suspend",
        Permission.SUSPEND,
        lambda w, f: Call(f"/api/subjects/{w.entry(f)}/suspend", json={"note": "under review"}),
        200,
    ),
    Route(
        "POST",
        "/api/subjects/{subject_id}/restrict",
        Permission.SUSPEND,
        lambda w, f: Call(
            f"/api/subjects/{w.pending}/restrict", json={"restricted": True, "note": "asked"}
        ),
        200,
    ),
    Route(
        "GET",
        "/api/subjects/{subject_id}/photos/{image_id}",
        V,
        lambda w, f: Call(f"/api/subjects/{w.active}/photos/{w.image}"),
        200,
    ),
    Route("GET", "/api/settings/model", Permission.APPROVE, at("/api/settings/model"), 200),
    Route(
        "POST",
        "/api/settings/model",
        Permission.APPROVE,
        at("/api/settings/model", json={"model": "dlib-resnet-v1"}),
        202,
    ),
    Route("GET", "/api/audit", Permission.AUDIT, at("/api/audit"), 200),
    Route("GET", "/api/audit/verify", Permission.AUDIT, at("/api/audit/verify"), 200),
    Route("GET", "/api/transparency", V, at("/api/transparency"), 200),
    Route("GET", "/api/estate", ESTATE, at("/api/estate", params={"site": "Leeds"}), 200),
    Route(
        "GET",
        "/api/estate/{device_id}",
        ESTATE,
        lambda w, f: Call(f"/api/estate/{estate_device(w)}"),
        200,
    ),
]


# Sending


def send(
    client: TestClient,
    route: Route,
    call: Call,
    headers: dict[str, str] | None = None,
    csrf: str | None = None,
) -> httpx.Response:
    """``call`` as ``route``'s method; a page form also carries ``csrf``."""
    data = call.data
    if csrf is not None and data is not None:
        data = {"csrf_token": csrf, **data}
    return client.request(
        route.method,
        call.path,
        data=data,
        json=call.json,
        files=call.files,
        params=call.params,
        headers=headers,
    )


@dataclass
class StreamCloser:
    """Ends the alert stream a request opens, once it has subscribed (the stream never
    ends on its own; a None message tells a subscriber to finish), so that a stream
    opened to someone who may not open it fails the test instead of hanging it."""

    broadcaster: AlertBroadcaster
    subscribed: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._close, daemon=True)
        self.thread.start()

    def _close(self) -> None:
        deadline = time.monotonic() + 10
        while self.broadcaster.subscribers == 0:
            if self.done.is_set() or time.monotonic() > deadline:
                return
            time.sleep(0.01)
        self.subscribed = True
        self.broadcaster.publish(None)  # type: ignore[arg-type]

    def finish(self) -> bool:
        """Stop waiting; whether a stream was opened."""
        self.done.set()
        self.thread.join(10)
        return self.subscribed


def call_as(world: World, route: Route, name: str, fresh: bool) -> httpx.Response:
    """``route`` called by ``name`` with their own credentials: a token for the API, the
    browser's session and CSRF token for pages."""
    staff = world.supervised if route.supervised else world.main
    call = route.build(world, fresh)
    if route.api:
        return send(staff.anonymous, route, call, headers=staff.tokens[name])
    browser = staff.browsers[name]
    return send(browser.client, route, call, csrf=browser.csrf)


def recognition_control_done() -> None:
    """Wait for the supervisor's background start or stop, which logs itself when done (a
    refused call that follows must not see that record arrive)."""
    for thread in threading.enumerate():
        if thread.name in ("recognition-start", "recognition-stop"):
            thread.join(30)
            assert not thread.is_alive(), f"{thread.name} did not finish"


def audit_events(staff: Staff) -> int:
    with staff.shop.tx() as tx:
        return tx.session.scalar(select(func.count()).select_from(AuditEvent)) or 0


def refused_to_sign_in(response: httpx.Response, call: Call) -> bool:
    """A page's answer without a session: to the sign-in page, coming back here."""
    return response.status_code == 303 and response.headers["location"].startswith(
        f"/login?next={call.path}"
    )


# The tests


def test_the_table_lists_every_route_of_the_app_and_no_other(world: World) -> None:
    app = world.main.anonymous.app
    served = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()  # type: ignore[attr-defined]
        for method in operations
    }
    tabled = [(route.method, route.path) for route in ROUTES]
    assert len(tabled) == len(set(tabled)), "a route is in the table twice"
    assert served - EXEMPT - EDGE_ROUTES - set(tabled) == set(), "routes missing from the table"
    assert set(tabled) - served == set(), "the table names routes the app does not have"
    assert served >= EXEMPT | EDGE_ROUTES


EDGE_CALLS = {
    ("POST", "/api/edge/enrol"): {"json": {"code": "wkc_not-a-code"}},
    ("POST", "/api/edge/sync"): {"json": {}},
    ("POST", "/api/edge/alerts"): {"json": {"id": str(uuid.uuid4())}},
    ("POST", "/api/edge/audit"): {"json": {"events": []}},
}


@pytest.mark.parametrize("name", sorted(USERS))
@pytest.mark.parametrize(
    "route", sorted(EDGE_ROUTES), ids=[" ".join(r) for r in sorted(EDGE_ROUTES)]
)
def test_edge_routes_refuse_every_user(world: World, route: tuple[str, str], name: str) -> None:
    """A user's API token or signed-in session opens no edge route (401), and a refused
    call stores nothing but, for enrolment, the refusal's audit event."""
    method, path = route
    staff = world.main
    token = send(
        staff.anonymous,
        Route(method, path, None, at(path), 0),
        Call(path, **EDGE_CALLS[route]),
        headers=staff.tokens[name],
    )
    browser = staff.browsers[name]
    session = browser.client.request(method, path, **EDGE_CALLS[route])
    assert (token.status_code, session.status_code) == (401, 401), (token.text, session.text)


CASES = [(route, name) for route in ROUTES for name in sorted(USERS)]


@pytest.mark.parametrize(
    ("route", "name"), CASES, ids=[f"{route.key}-{name}" for route, name in CASES]
)
def test_who_may_and_who_may_not(world: World, route: Route, name: str) -> None:
    staff = world.supervised if route.supervised else world.main
    allowed = route.allows(name)
    before = audit_events(staff)
    closer = StreamCloser(world.broadcaster) if route.stream else None
    response = call_as(world, route, name, fresh=allowed)
    opened = closer is not None and closer.finish()
    if route.supervised:
        recognition_control_done()
    if not allowed:
        assert response.status_code == 403, response.text
        assert route.permission is not None
        assert route.permission.value in response.json()["detail"], "refused for that permission"
        assert audit_events(staff) == before, "a refused call records and changes nothing"
        assert not opened
        return
    assert response.status_code == route.ok, response.text
    if route.stream:
        assert opened, "the stream was opened"
        assert response.headers["content-type"].startswith("text/event-stream")


@pytest.mark.parametrize("route", ROUTES, ids=[route.key for route in ROUTES])
def test_nothing_without_credentials(world: World, route: Route) -> None:
    staff = world.supervised if route.supervised else world.main
    call = route.build(world, False)
    response = send(staff.anonymous, route, call)
    if route.api:
        assert response.status_code == 401, response.text
    else:
        assert refused_to_sign_in(response, call), (response.status_code, response.headers)


@pytest.mark.parametrize("route", ROUTES, ids=[route.key for route in ROUTES])
def test_the_api_needs_a_token_and_pages_a_session(world: World, route: Route) -> None:
    """The admin's credentials of the other kind: a session cookie (with its CSRF token)
    does not open the API, and a bearer token does not open a page."""
    staff = world.supervised if route.supervised else world.main
    call = route.build(world, False)
    if route.api:
        browser = staff.browsers["alice"]
        response = send(browser.client, route, call, csrf=browser.csrf)
        assert response.status_code == 401, response.text
    else:
        response = send(staff.anonymous, route, call, headers=staff.tokens["alice"])
        assert refused_to_sign_in(response, call), (response.status_code, response.headers)
