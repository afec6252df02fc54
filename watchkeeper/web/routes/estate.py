"""``/estate``: the camera estate register (filters by site, maker and finding) and
``/estate/{device_id}``: one device, why its maker is named, its findings and its
probe history. Both need :attr:`Permission.ESTATE_VIEW` (admins, managers, auditors)
and show only the sites the user may see."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from watchkeeper.estate.rules import rules
from watchkeeper.governance import estate
from watchkeeper.governance.access import Permission
from watchkeeper.web.deps import CurrentUser, DatabaseSession, permitted, store_of
from watchkeeper.web.templating import templates

router = APIRouter(tags=["estate"])


class Filter(BaseModel):
    """The register's filters ('' or absent: any)."""

    site: str = Field("", max_length=200, description="Site name.")
    maker: str = Field("", max_length=100, description="Maker, as identified (any case).")
    finding: str = Field("", max_length=50, description="Rule id of a current finding.")


@router.get("/estate", response_class=HTMLResponse)
def estate_page(
    request: Request,
    session: DatabaseSession,
    me: CurrentUser,
    filters: Annotated[Filter, Query()],
) -> HTMLResponse:
    permitted(Permission.ESTATE_VIEW, me.user)
    everything = estate.register_view(session, store_of(request).keys, me.organisation, me.user)
    shown = estate.register_view(
        session,
        store_of(request).keys,
        me.organisation,
        me.user,
        filters.site or None,
        filters.maker or None,
        filters.finding or None,
    )
    context: dict[str, Any] = {
        "me": me,
        "devices": shown,
        "form": filters,
        "sites": sorted({v["site"] for v in everything}),
        "makers": sorted({v["maker"] for v in everything if v["maker"]}),
        "rules": rules(),
        "counts": estate.estate_counts(everything),
    }
    return templates.TemplateResponse(request, "estate.html", context)


@router.get("/estate/{device_id}", response_class=HTMLResponse)
def estate_device_page(
    request: Request, session: DatabaseSession, me: CurrentUser, device_id: str
) -> HTMLResponse:
    permitted(Permission.ESTATE_VIEW, me.user)
    device = estate.device_detail(session, me.organisation, me.user, device_id)
    return templates.TemplateResponse(
        request, "estate_device.html", {"me": me, "device": device, "rules": rules()}
    )
