"""The audit log viewer and the transparency page."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["audit"])
