"""Setting an organisation up: its policy, users, sites and cameras."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from watchkeeper.errors import NotFoundError, PolicyError, SourceError
from watchkeeper.governance import audit
from watchkeeper.governance.access import Permission, require
from watchkeeper.store.crypto import KeyRing
from watchkeeper.store.models import (
    MAX_RETENTION_DAYS,
    Camera,
    Organisation,
    Role,
    Site,
    User,
)
from watchkeeper.video.sources import SourceKind, SourceSpec

MAX_WATCHLIST_CAP = 100_000
"""The highest watchlist cap per site a policy may set (far above any shop's need)."""
MAX_FALSE_MATCHES = 1_000
"""The highest false-match limit a policy may set."""


@dataclass(frozen=True)
class Policy:
    """An organisation's data-protection policy. Days are calendar days."""

    max_retention_days: int = MAX_RETENTION_DAYS
    """Longest life of a watchlist entry; never above 730 (24 months)."""
    default_retention_days: int = 365
    """Life of an entry when the enroller gives no expiry."""
    alert_retention_days: int = 30
    """Alerts (with their snapshots and reviews) are deleted this long after they happened."""
    watchlist_cap_per_site: int = 500
    """Most entries (pending or active) that may search one site."""
    false_matches_before_suspension: int = 3
    """Rejected alerts after which an entry is suspended for review."""
    approver_roles: str = "admin,manager"
    """Comma-separated roles whose members may approve entries (never their own)."""

    def check(self) -> None:
        if not 1 <= self.max_retention_days <= MAX_RETENTION_DAYS:
            raise PolicyError(
                f"maximum retention must be 1 to {MAX_RETENTION_DAYS} days, "
                f"not {self.max_retention_days}"
            )
        if not 1 <= self.default_retention_days <= self.max_retention_days:
            raise PolicyError("default retention must be between 1 day and the maximum")
        if not 1 <= self.alert_retention_days <= MAX_RETENTION_DAYS:
            raise PolicyError(f"alert retention must be 1 to {MAX_RETENTION_DAYS} days")
        if not 1 <= self.watchlist_cap_per_site <= MAX_WATCHLIST_CAP:
            raise PolicyError(f"the watchlist cap must be 1 to {MAX_WATCHLIST_CAP:,}")
        if not 1 <= self.false_matches_before_suspension <= MAX_FALSE_MATCHES:
            raise PolicyError(f"the false-match limit must be 1 to {MAX_FALSE_MATCHES}")
        roles = [name.strip() for name in self.approver_roles.split(",") if name.strip()]
        allowed = {Role.ADMIN.value, Role.MANAGER.value}
        if not roles or not set(roles) <= allowed:
            raise PolicyError(f"approver roles must be among {sorted(allowed)}, not {roles}")


def policy_of(organisation: Organisation) -> Policy:
    return Policy(
        max_retention_days=organisation.max_retention_days,
        default_retention_days=organisation.default_retention_days,
        alert_retention_days=organisation.alert_retention_days,
        watchlist_cap_per_site=organisation.watchlist_cap_per_site,
        false_matches_before_suspension=organisation.false_matches_before_suspension,
        approver_roles=organisation.approver_roles,
    )


def create_organisation(
    session: Session, keys: KeyRing, name: str, admin: str | None, policy: Policy | None = None
) -> tuple[Organisation, User | None]:
    """A new organisation, with its first administrator unless ``admin`` is None (then
    :func:`first_administrator` makes one later)."""
    policy = policy or Policy()
    policy.check()
    if session.scalars(select(Organisation).where(Organisation.name == name)).first():
        raise PolicyError(f"organisation {name!r} already exists")
    organisation = Organisation(name=name, key_check=keys.check_value(), **vars(policy))
    audit.seal_genesis(keys, organisation)
    session.add(organisation)
    session.flush()
    audit.record(
        session,
        keys,
        organisation.id,
        admin or CONSOLE,
        "organisation.create",
        "organisation",
        organisation.id,
        policy=vars(policy),
    )
    if admin is None:
        return organisation, None
    return organisation, first_administrator(session, keys, organisation, admin)


CONSOLE = "console"
"""The audit log's actor for what the machine's operator does before any user exists."""


def first_administrator(
    session: Session, keys: KeyRing, organisation: Organisation, name: str
) -> User:
    """The organisation's first administrator, made by whoever runs the machine; refused
    once an active administrator exists (then only an administrator adds users)."""
    if session.scalars(
        select(User).where(
            User.organisation_id == organisation.id, User.role == Role.ADMIN, User.active
        )
    ).first():
        raise PolicyError(
            f"{organisation.name!r} already has an administrator; they add users (--user ADMIN)"
        )
    if not name.strip():
        raise PolicyError("a user needs a name")
    administrator = User(organisation_id=organisation.id, name=name.strip(), role=Role.ADMIN)
    session.add(administrator)
    session.flush()
    audit.record(
        session,
        keys,
        organisation.id,
        CONSOLE,
        "user.create",
        "user",
        administrator.id,
        role=Role.ADMIN.value,
        first_administrator=True,
    )
    return administrator


def set_policy(
    session: Session, keys: KeyRing, organisation: Organisation, actor: User, policy: Policy
) -> None:
    """Change the policy. Entries that now outlive the maximum keep their expiry until
    renewed; the sweep removes them when they expire."""
    require(actor, Permission.MANAGE_ORGANISATION)
    policy.check()
    before = policy_of(organisation)
    for name, value in vars(policy).items():
        setattr(organisation, name, value)
    audit.record(
        session,
        keys,
        organisation.id,
        actor.name,
        "organisation.policy",
        "organisation",
        organisation.id,
        before=vars(before),
        after=vars(policy),
    )


def add_user(
    session: Session,
    keys: KeyRing,
    organisation: Organisation,
    actor: User,
    name: str,
    role: Role,
    sites: list[Site] | None = None,
) -> User:
    require(actor, Permission.MANAGE_ORGANISATION)
    if session.scalars(
        select(User).where(User.organisation_id == organisation.id, User.name == name)
    ).first():
        raise PolicyError(f"user {name!r} already exists")
    new = User(organisation_id=organisation.id, name=name, role=role, sites=list(sites or []))
    session.add(new)
    session.flush()
    audit.record(
        session,
        keys,
        organisation.id,
        actor.name,
        "user.create",
        "user",
        new.id,
        role=role.value,
        sites=[str(s.id) for s in new.sites],
    )
    return new


def add_site(
    session: Session, keys: KeyRing, organisation: Organisation, actor: User, name: str
) -> Site:
    require(actor, Permission.MANAGE_ORGANISATION)
    if session.scalars(
        select(Site).where(Site.organisation_id == organisation.id, Site.name == name)
    ).first():
        raise PolicyError(f"site {name!r} already exists")
    site = Site(organisation_id=organisation.id, name=name)
    session.add(site)
    session.flush()
    audit.record(session, keys, organisation.id, actor.name, "site.create", "site", site.id)
    return site


SECRET_PARAMETER = re.compile(r"pass|pwd|token|secret|key|auth|sig", re.IGNORECASE)
"""Query parameters that carry credentials in camera URLs (``?user=admin&pwd=...``)."""


def masked_url(url: str) -> str:
    """``url`` with any password (in the address or a query parameter such as ``pwd=``)
    replaced by ``***``, for pages, lists and logs."""
    try:
        parts = urlsplit(url)
        password, port = parts.password, parts.port
    except ValueError:  # it might still hold a password: never shown
        return "(a malformed URL)"
    if password is not None:
        host = parts.hostname or ""
        if port is not None:
            host += f":{port}"
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    if parts.query:
        fields = [field.partition("=") for field in parts.query.split("&")]
        parts = parts._replace(
            query="&".join(
                f"{name}{eq}{'***' if eq and SECRET_PARAMETER.search(name) else value}"
                for name, eq, value in fields
            )
        )
    return urlunsplit(parts)


URL_START = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")

MAX_SOURCE_LENGTH = 500
"""The longest camera source taken (a URL with its credentials, or a path): what the
camera list shows of it must fit its column."""


def check_source(source: str) -> str:
    """``source`` without surrounding spaces, if a camera can be read from it: a stream
    URL (``rtsp://``, ``http://``, ...) that names a host, a video file or webcam device
    on this machine, or a webcam index. Whether a URL answers is not checked: cameras
    go offline, and an unreachable one shows as failed with its error. Refusals say why."""
    text = source.strip()
    if not text:
        raise PolicyError("a camera needs a source: a stream URL, a video file or a webcam index")
    if len(text) > MAX_SOURCE_LENGTH:
        raise PolicyError(
            f"a camera source is at most {MAX_SOURCE_LENGTH} characters, not {len(text):,}"
        )
    if URL_START.match(text):
        scheme = text.split("://", 1)[0].lower()
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 (raises ValueError for a port that is no number)
        except ValueError as exc:  # its message names the fault, never the URL
            raise PolicyError(f"the camera URL is malformed: {exc}") from None
        try:
            kind = SourceSpec.parse(text).kind
        except SourceError:
            kind = None
        if kind is not SourceKind.STREAM:
            raise PolicyError(
                f"a camera URL needs a streaming scheme such as rtsp:// or http://, not {scheme}://"
            ) from None
        if not parts.hostname:
            raise PolicyError(f"the camera URL {masked_url(text)} names no host")
        return text
    try:
        kind = SourceSpec.parse(text).kind
    except SourceError:
        kind = None
    if kind not in {SourceKind.FILE, SourceKind.WEBCAM}:
        raise PolicyError(
            f"{text!r} is not a stream URL, a video file or webcam device on this machine, "
            "or a webcam index"
        )
    return text


def check_camera_name(name: str) -> str:
    """``name`` without surrounding spaces, if it can name a camera."""
    text = name.strip()
    if not text:
        raise PolicyError("a camera needs a name")
    if "/" in text:
        raise PolicyError("a camera name cannot contain '/' (it separates site and camera)")
    if len(text) > 200:
        raise PolicyError("a camera name has at most 200 characters")
    return text


def check_schedule(schedule: str) -> str | None:
    """A schedule's text (None when empty); it is kept and shown, not yet enforced."""
    text = schedule.strip()
    if len(text) > 200:
        raise PolicyError("a schedule has at most 200 characters")
    return text or None


def add_camera(
    session: Session,
    keys: KeyRing,
    organisation: Organisation,
    actor: User,
    site: Site,
    name: str,
    source: str,
    schedule: str | None = None,
    enabled: bool = True,
) -> Camera:
    """A camera whose source (URL with credentials, file or webcam index) is stored
    encrypted; refused, storing nothing, for a name the site already uses or a source
    no camera can be read from (:func:`check_source`)."""
    require(actor, Permission.MANAGE_ORGANISATION)
    if site.organisation_id != organisation.id:
        raise NotFoundError(f"no site {site.name!r}")
    name = check_camera_name(name)
    source = check_source(source)
    if session.scalars(
        select(Camera).where(Camera.site_id == site.id, Camera.name == name)
    ).first():
        raise PolicyError(f"site {site.name!r} already has a camera {name!r}")
    camera_id = uuid.uuid4()
    camera = Camera(
        id=camera_id,
        site=site,
        name=name,
        source_encrypted=keys.encrypt(source.encode(), f"camera:{camera_id}"),
        source_display=masked_url(source),
        schedule=check_schedule(schedule or ""),
        enabled=enabled,
    )
    session.add(camera)
    session.flush()
    audit.record(
        session,
        keys,
        organisation.id,
        actor.name,
        "camera.create",
        "camera",
        camera.id,
        site=str(site.id),
        enabled=enabled,
    )
    return camera


def update_camera(
    session: Session,
    keys: KeyRing,
    organisation: Organisation,
    actor: User,
    camera: Camera,
    enabled: bool | None = None,
    schedule: str | None = None,
    source: str | None = None,
) -> None:
    """Enable or disable a camera (a disabled one cannot be scanned), set its schedule
    ('' clears it) or give it a new source (checked as when added). None leaves a
    setting as it is."""
    require(actor, Permission.MANAGE_ORGANISATION)
    if camera.site.organisation_id != organisation.id:
        raise NotFoundError(f"no camera {camera.name!r}")
    changes: dict[str, bool | str] = {}
    if enabled is not None:
        camera.enabled = changes["enabled"] = enabled
    if schedule is not None:
        camera.schedule = check_schedule(schedule)
        changes["schedule"] = camera.schedule or ""
    if source is not None:
        source = check_source(source)
        if source != camera_source(keys, camera):
            camera.source_encrypted = keys.encrypt(source.encode(), f"camera:{camera.id}")
            camera.source_display = masked_url(source)
            changes["source_changed"] = True
    audit.record(
        session, keys, organisation.id, actor.name, "camera.update", "camera", camera.id, **changes
    )


def camera_source(keys: KeyRing, camera: Camera) -> str:
    """The camera's real source, credentials included."""
    return keys.decrypt(camera.source_encrypted, f"camera:{camera.id}").decode()
