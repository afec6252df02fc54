"""Watchlist pages: incidents, entries and their photos."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["watchlist"])
