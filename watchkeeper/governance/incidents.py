"""Incidents: the recorded events that every watchlist entry must point to."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from watchkeeper.errors import PolicyError
from watchkeeper.governance import audit
from watchkeeper.governance.access import Permission, require, site_scope
from watchkeeper.store.crypto import KeyRing
from watchkeeper.store.models import Incident, IncidentCategory, Organisation, Site, User, utcnow


def record_incident(
    session: Session,
    keys: KeyRing,
    organisation: Organisation,
    actor: User,
    *,
    site: Site,
    occurred_at: dt.datetime,
    category: IncidentCategory,
    description: str,
    evidence: Sequence[str] = (),
    police_reference: str | None = None,
    now: dt.datetime | None = None,
) -> Incident:
    """Record an incident reported by ``actor`` (who is its reporter)."""
    now = now or utcnow()
    require(actor, Permission.REPORT_INCIDENT)
    if site.organisation_id != organisation.id:
        raise PolicyError("the site belongs to another organisation")
    if occurred_at > now + dt.timedelta(minutes=5):
        raise PolicyError(f"an incident cannot be in the future ({occurred_at:%Y-%m-%d %H:%M})")
    if not description.strip():
        raise PolicyError("an incident needs a description of what happened")
    incident = Incident(
        organisation_id=organisation.id,
        site=site,
        occurred_at=occurred_at,
        category=category,
        description=description.strip(),
        reporter_id=actor.id,
        evidence=[item for item in evidence if item.strip()],
        police_reference=police_reference or None,
    )
    session.add(incident)
    session.flush()
    audit.record(
        session,
        keys,
        organisation.id,
        actor.name,
        "incident.create",
        "incident",
        incident.id,
        site=str(site.id),
        category=category.value,
    )
    return incident


def incident_view(incident: Incident) -> dict[str, Any]:
    return {
        "id": str(incident.id),
        "site": incident.site.name,
        "occurred_at": incident.occurred_at.isoformat(),
        "category": incident.category.value,
        "description": incident.description,
        "reporter": incident.reporter.name,
        "evidence": list(incident.evidence),
        "police_reference": incident.police_reference,
    }


def list_incidents(
    session: Session, keys: KeyRing, organisation: Organisation, actor: User
) -> list[Incident]:
    """The incidents at the sites ``actor`` may see, newest first; audited."""
    require(actor, Permission.VIEW)
    query = (
        select(Incident)
        .where(Incident.organisation_id == organisation.id)
        .order_by(Incident.occurred_at.desc())
    )
    scope = site_scope(actor)
    if scope is not None:
        query = query.where(Incident.site_id.in_(scope))
    incidents = list(session.scalars(query))
    audit.record(
        session,
        keys,
        organisation.id,
        actor.name,
        "incident.list",
        None,
        None,
        shown=len(incidents),
    )
    return incidents
