"""What a request needs, as FastAPI dependencies: the database session, the signed-in
user and a checked CSRF token. Routes declare which they need."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Form, HTTPException, Request
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from watchkeeper.config import Settings
from watchkeeper.errors import PolicyError
from watchkeeper.governance import access
from watchkeeper.governance.access import Permission
from watchkeeper.governance.accounts import current_session, token_owner
from watchkeeper.governance.subjects import model_in_use
from watchkeeper.pipeline import FaceModels
from watchkeeper.store.database import Store, storage_failure
from watchkeeper.store.models import LoginSession, Organisation, User

SESSION_COOKIE = "wk_session"
LOGIN_CSRF_COOKIE = "wk_login_csrf"


class NotSignedIn(Exception):
    """No valid session: pages send the browser to the sign-in page."""


BEARER = "bearer "


def store_of(request: Request) -> Store:
    return request.app.state.store


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


@contextmanager
def stored_or_refused(store: Store) -> Iterator[Session]:
    """A transaction that either commits or raises :class:`StorageError` (a full disk, a
    database that refuses the write), which the app answers 507 or 503 with the reason."""
    try:
        with store.session() as session:
            yield session
    except (SQLAlchemyError, OSError) as exc:
        failure = storage_failure(exc)
        if failure is None:
            raise
        raise failure from exc


def database(request: Request) -> Iterator[Session]:
    """One transaction per request, committed BEFORE the response is sent (the
    dependency's scope is the route function): a reply, page or 2xx is only produced
    once its change and its audit events are stored. A commit that fails turns the
    response into the storage error's."""
    with stored_or_refused(store_of(request)) as session:
        yield session


DatabaseSession = Annotated[Session, Depends(database, scope="function")]


@dataclass(frozen=True)
class SignedIn:
    user: User
    login: LoginSession
    organisation: Organisation


def signed_in(request: Request, session: DatabaseSession) -> SignedIn:
    login = current_session(session, request.cookies.get(SESSION_COOKIE), settings_of(request).web)
    if login is None:
        raise NotSignedIn
    return SignedIn(login.user, login, access.organisation(session))


CurrentUser = Annotated[SignedIn, Depends(signed_in)]


def csrf_checked(me: CurrentUser, csrf_token: Annotated[str, Form()] = "") -> SignedIn:
    """The signed-in user, once the form's CSRF token matches their session's."""
    if not secrets.compare_digest(csrf_token.encode(), me.login.csrf_token.encode()):
        raise HTTPException(403, "this form has expired or did not come from Watchkeeper")
    return me


CheckedUser = Annotated[SignedIn, Depends(csrf_checked)]


def permitted(permission: Permission, user: User) -> None:
    """403 unless ``user``'s role allows ``permission``."""
    try:
        access.require(user, permission)
    except PolicyError as refused:
        raise HTTPException(403, str(refused)) from None


@dataclass(frozen=True)
class ApiCaller:
    user: User
    organisation: Organisation


def api_caller(request: Request, session: DatabaseSession) -> ApiCaller:
    """The user an ``Authorization: Bearer`` API token acts as; 401 without a valid one."""
    header = request.headers.get("authorization", "")
    user = None
    if header.lower().startswith(BEARER):
        user = token_owner(session, header[len(BEARER) :].strip())
    if user is None:
        raise HTTPException(
            401, "a valid API token is needed", headers={"WWW-Authenticate": "Bearer"}
        )
    return ApiCaller(user, access.organisation(session))


Caller = Annotated[ApiCaller, Depends(api_caller)]


@dataclass(frozen=True)
class Viewer:
    """Who holds a long-lived request (a live stream), detached from the database."""

    name: str
    role: str


def brief_viewer(request: Request) -> Viewer:
    """The signed-in user, checked in a transaction of its own that ends at once: a
    request that stays open (server-sent events) must not hold the database."""
    with stored_or_refused(store_of(request)) as session:
        login = current_session(
            session, request.cookies.get(SESSION_COOKIE), settings_of(request).web
        )
        if login is None:
            raise NotSignedIn
        permitted(Permission.VIEW, login.user)
        return Viewer(login.user.name, login.user.role.value)


LiveViewer = Annotated[Viewer, Depends(brief_viewer)]


_models_lock = threading.Lock()


def face_models(request: Request, session: DatabaseSession) -> FaceModels:
    """The detector, embedder and quality gate that turn enrolment photos into
    templates (and test camera frames): those of the organisation's model in use,
    loaded on first use and again after a model switch."""
    settings = settings_of(request)
    name = model_in_use(access.organisation(session), settings)
    state = request.app.state
    with _models_lock:
        loaded: FaceModels | None = getattr(state, "face_models", None)
        if loaded is None or loaded.embedder.spec.name != name:
            state.face_models = FaceModels.load(settings, name)
        return state.face_models


Models = Annotated[FaceModels, Depends(face_models)]
