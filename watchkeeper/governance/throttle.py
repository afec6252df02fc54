"""Sign-in throttling that slows guessing down and cannot be turned against users.

A lockout per account lets anyone who can reach the sign-in page keep any account out
by typing wrong passwords. Here failures are counted where they come from instead:

- per name and address: after ``free_per_name_and_address`` wrong passwords for one
  name from one address, each further one doubles a delay (``first_delay_s``, at most
  ``max_delay_minutes``) during which that name cannot sign in *from that address*;
  the same person signs in from the shop's own machine as usual. Unknown names are
  counted alike, so a delay says nothing about whether a name exists;
- per address: after ``free_per_address`` failures from one address, whatever the
  names, the same growing delay for every name from there (an address is an IPv4
  address, or an IPv6 /64 network, which one subscriber usually holds whole);
- a global ceiling: past ``ceiling`` failures from all addresses together in one
  window, only known addresses (where someone signed in successfully within
  ``known_address_days``) may try until the window ends: a guesser with many addresses
  cannot go on, and the shop's own machines are not stopped.

A counter with no failure for ``forget_hours`` starts again from nought; a successful
sign-in clears its name-and-address counter. An administrator lifts every delay on a
name at once (:func:`unlock`). Every delay that begins, every sign-in refused during
one and every unlock is in the audit log; the counters live in the database, so they
hold across restarts and the command line's unlock reaches the running service.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from watchkeeper.config import SignInLimits
from watchkeeper.governance import audit
from watchkeeper.governance.access import Permission, require
from watchkeeper.store.crypto import KeyRing
from watchkeeper.store.models import Organisation, SignInThrottle, User

GLOBAL = "global"


def address_key(address: str | None) -> str:
    """What failures from ``address`` are counted under: the IPv4 address, the /64
    network of an IPv6 one, or the text as given when it is no IP address (a test
    client's name, a Unix socket)."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "".join(address.split())[:100]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _pair(name: str, address: str) -> str:
    """The key of ``name`` at ``address`` (an address holds no space; a name may)."""
    return f"pair:{address} {name}"


def _name_of_pair(key: str) -> str:
    return key.partition(" ")[2]


def _address(address: str) -> str:
    return f"address:{address}"


def _known(address: str) -> str:
    return f"known:{address}"


@dataclass(frozen=True)
class Delay:
    """Why sign-ins are refused for now, and until when."""

    rule: str
    """'name and address', 'address' or 'ceiling'."""
    until: dt.datetime

    def seconds_left(self, now: dt.datetime) -> int:
        return max(1, math.ceil((self.until - now).total_seconds()))


class Throttle:
    """The counters of one organisation, read and changed in the caller's transaction."""

    def __init__(
        self,
        session: Session,
        keys: KeyRing,
        organisation: Organisation,
        limits: SignInLimits,
        now: dt.datetime,
    ) -> None:
        self.session = session
        self.keys = keys
        self.organisation = organisation
        self.limits = limits
        self.now = now

    def _row(self, key: str) -> SignInThrottle | None:
        return self.session.scalars(
            select(SignInThrottle).where(
                SignInThrottle.organisation_id == self.organisation.id, SignInThrottle.key == key
            )
        ).one_or_none()

    def _fresh(self, key: str) -> SignInThrottle:
        """The counter under ``key``, started again when it was forgotten."""
        row = self._row(key)
        if row is None:
            row = SignInThrottle(
                organisation_id=self.organisation.id, key=key, failures=0, last_at=self.now
            )
            self.session.add(row)
        elif self.now - row.last_at > dt.timedelta(hours=self.limits.forget_hours):
            row.failures, row.blocked_until = 0, None
        return row

    def forget_old(self) -> None:
        """Drop counters nobody failed on for ``forget_hours`` whose delay is over, and
        addresses no longer known: the table holds only what still matters."""
        forgotten = self.now - dt.timedelta(hours=self.limits.forget_hours)
        unknown = self.now - dt.timedelta(days=self.limits.known_address_days)
        of_organisation = SignInThrottle.organisation_id == self.organisation.id
        self.session.execute(
            delete(SignInThrottle).where(
                of_organisation,
                ~SignInThrottle.key.startswith("known:"),
                SignInThrottle.last_at < forgotten,
                (SignInThrottle.blocked_until.is_(None))
                | (SignInThrottle.blocked_until < self.now),
            )
        )
        self.session.execute(
            delete(SignInThrottle).where(
                of_organisation,
                SignInThrottle.key.startswith("known:"),
                SignInThrottle.last_at < unknown,
            )
        )

    def is_known(self, address: str) -> bool:
        row = self._row(_known(address))
        return row is not None and self.now - row.last_at <= dt.timedelta(
            days=self.limits.known_address_days
        )

    def _window(self) -> SignInThrottle:
        """The global counter, started again when its window is over."""
        row = self._row(GLOBAL)
        window = dt.timedelta(minutes=self.limits.ceiling_window_minutes)
        if row is None:
            row = SignInThrottle(
                organisation_id=self.organisation.id, key=GLOBAL, failures=0, last_at=self.now
            )
            self.session.add(row)
        elif self.now - row.last_at >= window:
            row.failures, row.last_at, row.blocked_until = 0, self.now, None
        return row

    def delay(self, name: str, address: str) -> Delay | None:
        """The delay in force for ``name`` signing in from ``address``, if any."""
        for rule, key in (
            ("name and address", _pair(name, address)),
            ("address", _address(address)),
        ):
            row = self._row(key)
            if row is not None and row.blocked_until is not None and row.blocked_until > self.now:
                return Delay(rule, row.blocked_until)
        window = self._row(GLOBAL)
        if (
            window is not None
            and window.blocked_until is not None
            and window.blocked_until > self.now
            and not self.is_known(address)
        ):
            return Delay("ceiling", window.blocked_until)
        return None

    def _growing_delay(self, failures: int, free: int) -> dt.timedelta | None:
        if failures < free:
            return None
        seconds = self.limits.first_delay_s * 2 ** min(failures - free, 30)
        return dt.timedelta(seconds=min(seconds, self.limits.max_delay_minutes * 60))

    def failed(self, name: str, address: str, user: User | None) -> None:
        """Count a failed sign-in of ``name`` from ``address``; audit it (when the name
        is an account's) and every delay it starts."""
        pair = self._fresh(_pair(name, address))
        by_address = self._fresh(_address(address))
        window = self._window()
        details: dict[str, object] = {"address": address}
        for row, free, rule in (
            (pair, self.limits.free_per_name_and_address, "name_and_address"),
            (by_address, self.limits.free_per_address, "address"),
        ):
            row.failures += 1
            row.last_at = self.now
            delay = self._growing_delay(row.failures, free)
            if delay is not None:
                row.blocked_until = self.now + delay
                details[f"{rule}_delay_s"] = int(delay.total_seconds())
        details["failures"] = pair.failures
        window.failures += 1
        ceiling_reached = window.failures == self.limits.ceiling
        if ceiling_reached:
            window.blocked_until = window.last_at + dt.timedelta(
                minutes=self.limits.ceiling_window_minutes
            )
        if user is not None:
            self._audit(name, "user.sign-in-failed", user.id, **details)
        elif len(details) > 2:  # an unknown name: audited once a delay begins
            self._audit(name, "sign-in.delayed", None, **details)
        if ceiling_reached:
            self._audit(
                "watchkeeper",
                "sign-in.ceiling-reached",
                None,
                failures=window.failures,
                until=window.blocked_until.isoformat() if window.blocked_until else None,
            )

    def refused(self, name: str, address: str, delay: Delay, user: User | None) -> None:
        """Audit a sign-in refused because of ``delay`` (the password was not looked at)."""
        self._audit(
            name,
            "user.sign-in-delayed" if user is not None else "sign-in.delayed",
            user.id if user is not None else None,
            address=address,
            rule=delay.rule,
            until=delay.until.isoformat(),
        )

    def succeeded(self, name: str, address: str) -> None:
        """Clear ``name``'s counter at ``address`` and remember the address as known.
        The address's own counter stays: signing in to one's own account must not
        reset the count of guesses at others from the same place."""
        pair = self._row(_pair(name, address))
        if pair is not None:
            self.session.delete(pair)
        known = self._row(_known(address))
        if known is None:
            self.session.add(
                SignInThrottle(
                    organisation_id=self.organisation.id,
                    key=_known(address),
                    failures=0,
                    last_at=self.now,
                )
            )
        else:
            known.last_at = self.now

    def _audit(self, actor: str, action: str, user_id: uuid.UUID | None, **details: object) -> None:
        audit.record(
            self.session,
            self.keys,
            self.organisation.id,
            actor,
            action,
            "user" if user_id is not None else None,
            user_id,
            **details,
        )


def unlock(
    session: Session, keys: KeyRing, organisation: Organisation, actor: User, target: User
) -> int:
    """Lift every delay on ``target``'s name, from every address (administrators only);
    audited. The number of addresses it was delayed at."""
    require(actor, Permission.MANAGE_ORGANISATION)
    pairs = session.scalars(
        select(SignInThrottle).where(
            SignInThrottle.organisation_id == organisation.id,
            SignInThrottle.key.startswith("pair:"),
        )
    )
    rows = [row for row in pairs if _name_of_pair(row.key) == target.name]
    for row in rows:
        session.delete(row)
    audit.record(
        session, keys, organisation.id, actor.name, "user.unlock", "user", target.id,
        addresses=len(rows),
    )  # fmt: skip
    return len(rows)
