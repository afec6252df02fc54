"""Passwords, throttled sign-in, and login sessions for the web app.

- Passwords are hashed with argon2id (argon2-cffi's defaults, RFC 9106's
  low-memory profile: 64 MiB, 3 passes); a hash made with older parameters is
  upgraded at the next successful sign-in.
- Failed sign-ins are throttled per name and address, per address and under a
  global ceiling, with growing delays (:mod:`watchkeeper.governance.throttle`);
  no account is ever locked everywhere. The answer to a failed sign-in never says
  which part was wrong; a delay is announced, and says nothing about whether the
  name exists (unknown names are delayed alike).
- A session is a random 256-bit token in an HttpOnly cookie; the database keeps
  only its SHA-256. Sessions end when signed out, after ``session_hours``, or
  after ``idle_minutes`` without a request.

- An API token (``wk_`` and 43 random characters) acts as one user, with that
  user's role; only administrators issue them, for at most
  :data:`MAX_TOKEN_DAYS`. Only the token's SHA-256 is stored.

Every sign-in, failure, delay, unlock, password change, sign-out and token issued or
revoked is in the audit log.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.orm import Session

from watchkeeper.config import WebConfig
from watchkeeper.errors import PolicyError, WatchkeeperError
from watchkeeper.governance import audit
from watchkeeper.governance.access import Permission, require
from watchkeeper.governance.throttle import Throttle, address_key
from watchkeeper.store.crypto import KeyRing
from watchkeeper.store.models import ApiToken, LoginSession, Organisation, User, utcnow

MIN_PASSWORD_LENGTH = 12
MAX_TOKEN_DAYS = 365
TOKEN_PREFIX = "wk_"
MAX_PASSWORD_LENGTH = 1024
"""Longer inputs are refused before hashing (argon2 would take them, slowly)."""

_hasher = PasswordHasher()
# Checked against when the name is unknown, so that a wrong name takes as long as a
# wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class SignInRefused(WatchkeeperError):
    """Wrong name or password, or an inactive account: deliberately one message."""

    def __init__(self) -> None:
        super().__init__("wrong user name or password")


class SignInDelayed(WatchkeeperError):
    """Too many failed sign-ins for this name from this address, from this address, or
    from everywhere (then only known addresses may try): the password was not looked at."""

    def __init__(self, seconds: int) -> None:
        minutes = max(1, math.ceil(seconds / 60))
        super().__init__(
            f"too many failed sign-ins; try again in {minutes} minute"
            f"{'s' if minutes > 1 else ''}, or ask an administrator to unlock your name"
        )
        self.seconds = seconds


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (a PHC string with salt and parameters)."""
    check_password_rules(password)
    return _hasher.hash(password)


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PolicyError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PolicyError(f"a password may have at most {MAX_PASSWORD_LENGTH} characters")


def set_password(session: Session, keys: KeyRing, actor: User, target: User, password: str) -> None:
    """Set ``target``'s password: administrators for anyone, anyone for themselves.
    Ends the target's open sessions."""
    if actor.id != target.id:
        require(actor, Permission.MANAGE_ORGANISATION)
    target.password_hash = hash_password(password)
    end_sessions(session, target)
    audit.record(
        session, keys, target.organisation_id, actor.name, "user.password", "user", target.id
    )


def sign_in(
    session: Session,
    keys: KeyRing,
    organisation: Organisation,
    name: str,
    password: str,
    config: WebConfig,
    address: str | None,
    now: dt.datetime | None = None,
) -> User:
    """The user whose ``name`` and ``password`` these are, signing in from ``address``
    (the client's IP address); else :class:`SignInRefused`, or :class:`SignInDelayed`
    while a throttling delay is in force for this name or address.

    Failures and delays are counted and audited in ``session``'s transaction: commit
    it whatever the outcome.
    """
    now = now or utcnow()
    throttle = Throttle(session, keys, organisation, config.sign_in, now)
    throttle.forget_old()
    where = address_key(address)
    user = session.scalars(
        select(User).where(User.organisation_id == organisation.id, User.name == name)
    ).one_or_none()
    delay = throttle.delay(name, where)
    if delay is not None:
        _verify(_DUMMY_HASH, password)  # as long as any other answer
        throttle.refused(name, where, delay, user)
        raise SignInDelayed(delay.seconds_left(now))
    if user is None or user.password_hash is None:
        _verify(_DUMMY_HASH, password)
        throttle.failed(name, where, user)
        raise SignInRefused
    if not _verify(user.password_hash, password) or not user.active:
        throttle.failed(name, where, user)
        raise SignInRefused
    throttle.succeeded(name, where)
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user


def _verify(password_hash: str, password: str) -> bool:
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class OpenedSession:
    token: str
    """For the cookie; never stored."""
    row: LoginSession


def open_session(
    session: Session, keys: KeyRing, user: User, config: WebConfig, now: dt.datetime | None = None
) -> OpenedSession:
    """A new login session for ``user`` (just signed in)."""
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    row = LoginSession(
        token_hash=token_hash(token),
        user_id=user.id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        last_seen_at=now,
        expires_at=now + dt.timedelta(hours=config.session_hours),
    )
    session.add(row)
    session.flush()
    audit.record(session, keys, user.organisation_id, user.name, "user.sign-in", "session", row.id)
    return OpenedSession(token, row)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def current_session(
    session: Session, token: str | None, config: WebConfig, now: dt.datetime | None = None
) -> LoginSession | None:
    """The open session ``token`` belongs to, its idle clock restarted; None when there
    is none, it ended, expired or sat idle too long, or its user was deactivated."""
    if not token:
        return None
    now = now or utcnow()
    row = session.scalars(
        select(LoginSession).where(LoginSession.token_hash == token_hash(token))
    ).one_or_none()
    if row is None or row.ended_at is not None or row.expires_at <= now:
        return None
    if now - row.last_seen_at > dt.timedelta(minutes=config.idle_minutes):
        row.ended_at = now
        return None
    if not row.user.active:
        return None
    row.last_seen_at = now
    return row


def sign_out(session: Session, keys: KeyRing, row: LoginSession) -> None:
    row.ended_at = utcnow()
    user = row.user
    audit.record(session, keys, user.organisation_id, user.name, "user.sign-out", "session", row.id)


def end_sessions(session: Session, user: User) -> int:
    """End every open session of ``user`` (password changed, account deactivated); how
    many were open."""
    now = utcnow()
    ended = 0
    for row in session.scalars(
        select(LoginSession).where(LoginSession.user_id == user.id, LoginSession.ended_at.is_(None))
    ):
        row.ended_at = now
        ended += 1
    return ended


@dataclass(frozen=True)
class Deactivated:
    sessions: int
    """Web sessions that were open and ended."""
    tokens: int
    """API tokens that were valid and are revoked."""


def deactivate(session: Session, keys: KeyRing, actor: User, target: User) -> Deactivated:
    """Deactivate ``target`` (administrators only; never oneself, so an administrator
    always remains): their open sessions end and their API tokens are revoked at once,
    and they can no longer sign in or act. The account and its history stay: incidents,
    entries, reviews and audit events keep naming them. Audited."""
    require(actor, Permission.MANAGE_ORGANISATION)
    if target.id == actor.id:
        raise PolicyError("administrators cannot deactivate themselves; ask another one")
    if not target.active:
        raise PolicyError(f"user {target.name!r} is already deactivated")
    target.active = False
    sessions = end_sessions(session, target)
    now = utcnow()
    tokens = 0
    for row in session.scalars(
        select(ApiToken).where(ApiToken.user_id == target.id, ApiToken.revoked_at.is_(None))
    ):
        row.revoked_at = now
        tokens += row.expires_at > now
    audit.record(
        session, keys, target.organisation_id, actor.name, "user.deactivate", "user", target.id,
        sessions=sessions, tokens=tokens,
    )  # fmt: skip
    return Deactivated(sessions, tokens)


@dataclass(frozen=True)
class IssuedToken:
    token: str
    """Shown once, to whoever issued it; never stored."""
    row: ApiToken


def issue_token(
    session: Session, keys: KeyRing, actor: User, owner: User, label: str, days: int
) -> IssuedToken:
    """An API token acting as ``owner`` for ``days`` days (administrators only)."""
    require(actor, Permission.MANAGE_ORGANISATION)
    if not 1 <= days <= MAX_TOKEN_DAYS:
        raise PolicyError(f"a token lasts between 1 and {MAX_TOKEN_DAYS} days")
    if not label.strip():
        raise PolicyError("give the token a label that says what uses it")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        token_hash=token_hash(token),
        prefix=token[:10],
        user_id=owner.id,
        label=label.strip(),
        expires_at=utcnow() + dt.timedelta(days=days),
    )
    session.add(row)
    session.flush()
    audit.record(
        session, keys, owner.organisation_id, actor.name, "token.issue", "api_token", row.id,
        owner=owner.name, label=row.label, days=days,
    )  # fmt: skip
    return IssuedToken(token, row)


def revoke_token(session: Session, keys: KeyRing, actor: User, row: ApiToken) -> None:
    require(actor, Permission.MANAGE_ORGANISATION)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        audit.record(
            session, keys, actor.organisation_id, actor.name, "token.revoke", "api_token", row.id
        )


def token_owner(session: Session, token: str, now: dt.datetime | None = None) -> User | None:
    """The active user an unrevoked, unexpired ``token`` acts as, else None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    now = now or utcnow()
    row = session.scalars(
        select(ApiToken).where(ApiToken.token_hash == token_hash(token))
    ).one_or_none()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    if not row.user.active:
        return None
    row.last_used_at = now
    return row.user
