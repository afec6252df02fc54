"""``/api/incidents`` and ``/api/subjects``: the watchlist."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api", tags=["api"])
