"""Who may do what: the one table of permissions, and lookups scoped to an organisation.

Every lookup takes the organisation: a user, site, subject or alert of another
organisation is "not found", never shown.
"""

from __future__ import annotations

import re
import uuid
from enum import StrEnum
from typing import TypeVar

from sqlalchemy import String, cast, select
from sqlalchemy.orm import Session

from watchkeeper.errors import NotFoundError, PolicyError
from watchkeeper.store.models import (
    Alert,
    Base,
    Camera,
    Incident,
    Organisation,
    Role,
    Site,
    Subject,
    User,
)


class Permission(StrEnum):
    MANAGE_ORGANISATION = "manage the organisation (users, sites, cameras, policy)"
    REPORT_INCIDENT = "record incidents"
    ENROL = "propose watchlist entries"
    APPROVE = "approve, renew or reinstate watchlist entries"
    SUSPEND = "suspend or restrict watchlist entries"
    ERASE = "erase watchlist entries"
    REVIEW = "review alerts"
    VIEW = "view the watchlist and alerts"
    SUBJECT_ACCESS = "answer subject access requests"
    PURGE = "run the retention sweep"
    AUDIT = "verify the audit log"
    CONTROL_RECOGNITION = "start or stop recognition on every camera"
    ESTATE_VIEW = "see the camera estate register and write its report"
    ESTATE_SURVEY = "discover, import and probe the camera estate"


PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.MANAGER: frozenset(Permission) - {Permission.MANAGE_ORGANISATION},
    Role.REPORTER: frozenset({Permission.REPORT_INCIDENT, Permission.ENROL, Permission.VIEW}),
    Role.REVIEWER: frozenset({Permission.REVIEW, Permission.VIEW}),
    Role.AUDITOR: frozenset({Permission.AUDIT, Permission.VIEW, Permission.ESTATE_VIEW}),
}
"""Approval additionally needs a role named in the organisation's ``approver_roles``."""


def require(user: User, permission: Permission) -> None:
    if not user.active:
        raise PolicyError(f"user {user.name!r} is deactivated")
    if permission not in PERMISSIONS[user.role]:
        raise PolicyError(f"{user.name!r} ({user.role}) may not {permission.value}")


ORGANISATION_WIDE = frozenset({Role.ADMIN, Role.AUDITOR})
"""Roles that see every site's alerts and entries; every other user sees the sites
they are bound to, and nothing site-bound when bound to none."""


def site_scope(user: User) -> frozenset[uuid.UUID] | None:
    """The ids of the sites whose alerts and entries ``user`` may see; None: all."""
    if user.role in ORGANISATION_WIDE:
        return None
    return frozenset(site.id for site in user.sites)


def approver_roles(organisation: Organisation) -> set[Role]:
    return {Role(name.strip()) for name in organisation.approver_roles.split(",") if name.strip()}


def require_approver(organisation: Organisation, user: User) -> None:
    require(user, Permission.APPROVE)
    if user.role not in approver_roles(organisation):
        allowed = ", ".join(sorted(approver_roles(organisation)))
        raise PolicyError(f"only {allowed} may approve in {organisation.name!r}")


def organisation(session: Session, name: str | None = None) -> Organisation:
    """The named organisation, or the only one when no name is given."""
    query = select(Organisation)
    if name is not None:
        query = query.where(Organisation.name == name)
    found = session.scalars(query.limit(2)).all()
    if not found:
        raise NotFoundError(
            f"no organisation {name!r}" if name else "no organisation; run `watchkeeper init`"
        )
    if len(found) > 1:
        raise NotFoundError("several organisations share this database; name one")
    return found[0]


def user(session: Session, organisation_id: uuid.UUID, name: str) -> User:
    found = session.scalars(
        select(User).where(User.organisation_id == organisation_id, User.name == name)
    ).one_or_none()
    if found is None:
        raise NotFoundError(f"no user {name!r}")
    return found


def site(session: Session, organisation_id: uuid.UUID, name: str) -> Site:
    found = session.scalars(
        select(Site).where(Site.organisation_id == organisation_id, Site.name == name)
    ).one_or_none()
    if found is None:
        raise NotFoundError(f"no site {name!r}")
    return found


def camera(session: Session, organisation_id: uuid.UUID, name: str | None) -> Camera:
    """A camera by name, ``site/name`` where two sites use the same name, or with no
    name the organisation's only camera."""
    query = select(Camera).join(Site).where(Site.organisation_id == organisation_id)
    if name is not None:
        site_name, _, camera_name = name.rpartition("/")
        query = query.where(Camera.name == camera_name)
        if site_name:
            query = query.where(Site.name == site_name)
    found = session.scalars(query.limit(2)).all()
    if name is None and len(found) != 1:
        raise NotFoundError(
            "no camera registered (`watchkeeper cameras add`)"
            if not found
            else "several cameras; name one with --camera (see `watchkeeper cameras list`)"
        )
    if not found:
        raise NotFoundError(f"no camera {name!r}")
    if len(found) > 1:
        raise NotFoundError(f"several sites have a camera {name!r}; write SITE/{name}")
    return found[0]


Owned = TypeVar("Owned", Subject, Incident, Alert)


def owned(session: Session, kind: type[Owned], organisation_id: uuid.UUID, ident: str) -> Owned:
    """A subject, incident or alert of this organisation by its id, or by the first 6 to 8
    hex digits that lists show."""
    noun = kind.__tablename__
    text = ident.strip().lower()
    try:
        row = session.get(kind, uuid.UUID(text))
    except ValueError:
        if not re.fullmatch(r"[0-9a-f]{6,8}", text):
            raise NotFoundError(
                f"{noun} id {ident!r} is neither an id nor its first 6 to 8 hex digits"
            ) from None
        # Both SQLite (32 hex digits) and PostgreSQL (dashed text) start with these digits.
        matches = session.scalars(
            select(kind)
            .where(kind.organisation_id == organisation_id)
            .where(cast(kind.id, String).like(f"{text}%"))
            .limit(2)
        ).all()
        if len(matches) > 1:
            raise NotFoundError(f"{noun} id {ident!r} is ambiguous; give more digits") from None
        row = matches[0] if matches else None
    if row is None or row.organisation_id != organisation_id:
        raise NotFoundError(f"no {noun} {ident!r}")
    return row


def ensure_owned(row: Subject | Incident | Alert, organisation: Organisation) -> None:
    """Refuse to act on another organisation's record, however it was found."""
    if row.organisation_id != organisation.id:
        raise NotFoundError(f"no {row.__tablename__} {short_id(row)}")


def short_id(row: Base) -> str:
    """The first 8 hex digits of a row's UUID, as lists show it."""
    return str(row.id)[:8]  # type: ignore[attr-defined]
