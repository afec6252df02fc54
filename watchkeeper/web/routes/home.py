"""The start page of a signed-in user."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from watchkeeper.web.deps import CurrentUser
from watchkeeper.web.templating import templates

router = APIRouter(tags=["pages"])


@router.get("/", response_class=HTMLResponse)
def home(request: Request, me: CurrentUser) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        "home.html",
        {"me": me, "sites": sorted(site.name for site in me.user.sites)},
    )
