"""Watchlist pages: incidents, entries and their photos."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from watchkeeper.governance.access import Permission
from watchkeeper.governance.subjects import read_photo
from watchkeeper.web.deps import CurrentUser, DatabaseSession, permitted, store_of

router = APIRouter(tags=["watchlist"])


@router.get("/watchlist/photos/{image_id}", response_class=Response)
def photo(request: Request, session: DatabaseSession, me: CurrentUser, image_id: str) -> Response:
    """One stored enrolment photo as JPEG (decrypted for this response only; audited).
    404 for an unknown id, another organisation's photo or one outside the user's sites."""
    permitted(Permission.VIEW, me.user)
    data = read_photo(session, store_of(request), me.organisation, me.user, image_id)
    return Response(data, media_type="image/jpeg")
