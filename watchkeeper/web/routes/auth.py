"""Signing in and out.

The sign-in form carries a CSRF token of its own (double submit: a random
cookie and the same value in the form), so another site cannot sign a browser
in to an account of its choosing. The session cookie is HttpOnly and
SameSite=Strict; every later form carries the session's CSRF token.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from watchkeeper.governance import access
from watchkeeper.governance.accounts import (
    SignInDelayed,
    SignInRefused,
    open_session,
    sign_in,
    sign_out,
)
from watchkeeper.web.deps import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    CheckedUser,
    DatabaseSession,
    settings_of,
    store_of,
)
from watchkeeper.web.templating import templates

router = APIRouter(tags=["sign-in"])


def _safe_next(target: str) -> str:
    """Only a path on this server (no scheme, host or protocol-relative '//')."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _form(request: Request, next_path: str, error: str | None, status: int) -> HTMLResponse:
    token = secrets.token_urlsafe(32)
    response = templates.TemplateResponse(
        request,
        "login.html",
        {"csrf_token": token, "next": _safe_next(next_path), "error": error},
        status_code=status,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=settings_of(request).web.secure_cookies,
        path="/login",
    )
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    return _form(request, next, None, 200)


@router.post("/login")
def login(
    request: Request,
    session: DatabaseSession,
    name: Annotated[str, Form(max_length=100)],
    password: Annotated[str, Form(max_length=1024)],
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not secrets.compare_digest(expected.encode(), csrf_token.encode()):
        return _form(request, next, "The form expired; please sign in again.", 403)
    settings, store = settings_of(request), store_of(request)
    try:
        user = sign_in(
            session,
            store.keys,
            access.organisation(session),
            name,
            password,
            settings.web,
            request.client.host if request.client else None,
        )
    except SignInRefused as refused:
        # The failure is counted and audited: this request's transaction commits.
        return _form(request, next, str(refused).capitalize() + ".", 401)
    except SignInDelayed as delayed:
        response = _form(request, next, str(delayed).capitalize() + ".", 429)
        response.headers["Retry-After"] = str(delayed.seconds)
        return response
    opened = open_session(session, store.keys, user, settings.web)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        opened.token,
        max_age=int(settings.web.session_hours * 3600),
        httponly=True,
        samesite="strict",
        secure=settings.web.secure_cookies,
        path="/",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, session: DatabaseSession, me: CheckedUser) -> Response:
    sign_out(session, store_of(request).keys, me.login)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
