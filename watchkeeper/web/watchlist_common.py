"""What the watchlist pages and the watchlist API share: lookups within the user's
sites, dates from forms, and telling running cameras that the watchlist changed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from fastapi import Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from watchkeeper.dates import parse_utc
from watchkeeper.errors import NotFoundError, PolicyError
from watchkeeper.governance import access
from watchkeeper.governance.access import site_scope
from watchkeeper.governance.subjects import ensure_visible
from watchkeeper.store.models import Incident, Organisation, Site, Subject, User


def visible_sites(session: Session, organisation: Organisation, user: User) -> list[Site]:
    """The sites ``user`` may see (every site of the organisation for admins and
    auditors), by name."""
    scope = site_scope(user)
    sites = session.scalars(
        select(Site).where(Site.organisation_id == organisation.id).order_by(Site.name)
    )
    return [site for site in sites if scope is None or site.id in scope]


def chosen_sites(
    session: Session, organisation: Organisation, user: User, wanted: Iterable[str]
) -> list[Site]:
    """The sites named in ``wanted`` (ids or names), each one the user may see."""
    sites = visible_sites(session, organisation, user)
    chosen = []
    for item in wanted:
        found = [site for site in sites if item in (str(site.id), site.name)]
        if not found:
            raise PolicyError(f"no site {item!r} among yours")
        chosen.append(found[0])
    return chosen


def chosen_incidents(
    session: Session, organisation: Organisation, user: User, wanted: Iterable[str]
) -> list[Incident]:
    """The incidents with these ids (or first 8 hex digits), each at a site the user may see."""
    scope = site_scope(user)
    incidents = []
    for ident in wanted:
        incident = access.owned(session, Incident, organisation.id, ident)
        if scope is not None and incident.site_id not in scope:
            raise NotFoundError(f"no incident {ident!r}")
        incidents.append(incident)
    return incidents


def find_subject(session: Session, organisation: Organisation, user: User, ident: str) -> Subject:
    """An entry by id (or first 8 hex digits) that ``user`` may see; otherwise not found."""
    subject = access.owned(session, Subject, organisation.id, ident)
    ensure_visible(subject, user)
    return subject


def parse_date(text: str, what: str) -> dt.datetime:
    """A date (YYYY-MM-DD) or date-time from a form, as UTC (a time without a zone is UTC)."""
    try:
        return parse_utc(text)
    except ValueError as refused:
        raise PolicyError(f"{what}: {refused}") from None


def commit_and_notify(request: Request, session: Session) -> None:
    """Commit the request's change, then tell the cameras to reload what they search.

    The commit comes first so that a camera reloading at once reads the change; the
    session must not be used afterwards (its transaction is over)."""
    session.commit()
    supervisor = request.app.state.supervisor
    notify = getattr(supervisor, "watchlist_changed", None)
    if notify is not None:
        notify()
