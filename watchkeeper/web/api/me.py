"""``/api/me``: whom the calling token acts as."""

from __future__ import annotations

from fastapi import APIRouter

from watchkeeper.web.api.schemas import UserPublic
from watchkeeper.web.deps import Caller

router = APIRouter(prefix="/api", tags=["api"])


@router.get("/me", response_model=UserPublic)
def me(caller: Caller) -> UserPublic:
    user = caller.user
    return UserPublic(
        name=user.name,
        role=user.role.value,
        organisation=caller.organisation.name,
        sites=sorted(site.name for site in user.sites),
    )
