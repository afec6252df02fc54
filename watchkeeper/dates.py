"""Dates and times from users, in UTC; the edges of the calendar refused with a reason.

Python's datetimes end at 0001-01-01 and 9999-12-31: ``9999-12-31T23:59:59-23:59`` is a
valid ISO date-time whose UTC time lies past the end, and adding 999,999,999 days to
today does too. Both raise OverflowError deep in a conversion; here they become a
ValueError that says which value, for the caller to report as its own kind of refusal.
"""

from __future__ import annotations

import datetime as dt


def as_utc(value: dt.datetime) -> dt.datetime:
    """``value`` in UTC (a time without a zone is taken as UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError(f"{value.isoformat()} lies outside the years 1 to 9999 in UTC") from None


def parse_utc(text: str) -> dt.datetime:
    """An ISO date or date-time as UTC; ValueError when it is not one or lies outside
    the calendar in UTC."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD) or an ISO date-time") from None
    return as_utc(value)


def days_after(start: dt.datetime, days: int) -> dt.datetime:
    """``days`` days after ``start``; ValueError when that leaves the calendar."""
    try:
        return start + dt.timedelta(days=days)
    except OverflowError:
        raise ValueError(f"{days} days from {start:%Y-%m-%d} is past the year 9999") from None
