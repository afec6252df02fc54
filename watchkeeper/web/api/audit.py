"""``/api/audit`` and ``/api/transparency``."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api", tags=["api"])
