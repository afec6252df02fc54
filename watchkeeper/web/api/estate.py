"""``/api/estate`` and ``/api/estate/{device_id}``: the camera estate register for
scripts, with the same filters, permission (:attr:`Permission.ESTATE_VIEW`) and site
scope as the ``/estate`` pages. Discovery, imports and probes run from the command
line (`watchkeeper estate`), which can reach the cameras' networks."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from watchkeeper.governance import estate
from watchkeeper.governance.access import Permission
from watchkeeper.web.deps import Caller, DatabaseSession, permitted, store_of
from watchkeeper.web.routes.estate import Filter

router = APIRouter(prefix="/api", tags=["api"])


class FindingPublic(BaseModel):
    rule: str = Field(description="Rule id (docs/estate.md lists every rule and its source).")
    severity: str = Field(description="high, medium or low.")
    why: str
    evidence: list[str]


class DevicePublic(BaseModel):
    id: str
    short_id: str
    site: str
    sensitive_site: bool
    location: str | None
    address: str
    ports: dict[str, int]
    origin: str = Field(description="discovered, imported or camera.")
    camera_id: str | None = Field(description="The recognition camera this device is.")
    label_brand: str | None = Field(description="Brand on the asset list (not always the maker).")
    label_model: str | None
    installer: str | None
    maker: str | None = Field(description="The real maker, as identified.")
    maker_confidence: str | None
    maker_evidence: list[str] = Field(description="Every clue for and against, with its source.")
    model: str | None
    firmware: str | None
    serial: str | None
    mac: str | None
    capabilities: list[str] = Field(description="Analytics modules and rules it offers.")
    findings: list[FindingPublic] = Field(description="From its latest probe.")
    first_seen_at: str | None
    last_seen_at: str | None


class ProbePublic(BaseModel):
    id: str
    at: str
    answered: bool
    seconds: float
    facts: dict[str, Any] = Field(description="What the device said (ONVIF, banners, ports).")
    problems: list[str]
    findings: list[FindingPublic]


class DeviceDetailPublic(DevicePublic):
    probes: list[ProbePublic] = Field(description="Newest first.")


@router.get("/estate", response_model=list[DevicePublic])
def estate_list(
    request: Request,
    session: DatabaseSession,
    caller: Caller,
    filters: Annotated[Filter, Query()],
) -> list[dict[str, Any]]:
    permitted(Permission.ESTATE_VIEW, caller.user)
    return estate.register_view(
        session,
        store_of(request).keys,
        caller.organisation,
        caller.user,
        filters.site or None,
        filters.maker or None,
        filters.finding or None,
    )


@router.get("/estate/{device_id}", response_model=DeviceDetailPublic)
def estate_device(session: DatabaseSession, caller: Caller, device_id: str) -> dict[str, Any]:
    permitted(Permission.ESTATE_VIEW, caller.user)
    return estate.device_detail(session, caller.organisation, caller.user, device_id)
