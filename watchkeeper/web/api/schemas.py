"""What the API returns. Public schemas only: no password hash, token, template or key
material is ever a field of any of them."""

from __future__ import annotations

from pydantic import BaseModel, Field


class UserPublic(BaseModel):
    name: str = Field(description="User name within the organisation.")
    role: str = Field(description="admin, manager, reporter, reviewer or auditor.")
    organisation: str
    sites: list[str] = Field(description="Sites the user works at.")
