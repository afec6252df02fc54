"""Delivering the outbox: a background thread that sends due notifications and retries
failed ones with exponential backoff, across restarts of the service."""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from watchkeeper.config import NotifyConfig, Settings
from watchkeeper.governance.outbox import outbox_counts
from watchkeeper.notify.channels import DeliveryError, open_channels
from watchkeeper.store.database import Store
from watchkeeper.store.models import OutboxMessage, utcnow

log = logging.getLogger(__name__)

LEASE_S = 60.0
"""A notification being sent is not due again for this long beyond the timeout, so that
another notifier on the same database leaves it alone; if this one dies meanwhile, it
is sent again after that (receivers drop repeats by their delivery id)."""

ERROR_MAX_CHARS = 500


@dataclass(frozen=True)
class _Claimed:
    id: uuid.UUID
    event: str
    destination: str
    payload: dict[str, Any]
    attempts: int
    """Including this one."""


def retry_delay(config: NotifyConfig, attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failure: ``retry_initial_s`` doubled for
    each failure before it, at most ``retry_max_s``, varied by up to 20% either way so
    that notifications queued together do not all retry at once."""
    base = min(config.retry_max_s, config.retry_initial_s * 2.0 ** min(attempts - 1, 60))
    return base * random.uniform(0.8, 1.2)


class Notifier:
    """Delivers the outbox of ``store`` to the destinations of ``settings.notify``.

    :meth:`start` returns at once; a thread then sends each due notification, oldest
    first, every ``poll_s`` seconds (or at once after :meth:`wake`). A failed attempt is
    retried after :func:`retry_delay`; meanwhile the destination rests for at most
    ``probe_s`` before its next notification is tried (a receiver that is down is tried
    about once per ``probe_s``, not once per notification, and one notification it
    refuses does not hold back the others). When one gets through after failures, the
    others that failed meanwhile are due at once. After ``max_attempts`` a notification
    is marked failed, kept and logged. :meth:`stop` waits briefly for the attempt under
    way; whatever is not yet delivered stays in the outbox for the next start. With
    nothing configured it starts
    no thread and connects nowhere.
    """

    def __init__(self, settings: Settings, store: Store) -> None:
        self.config = settings.notify
        self.store = store
        self.channels = open_channels(self.config)
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._held: dict[str, dt.datetime] = {}
        """Destinations whose last notification failed: not tried again until then."""
        self._failing: set[str] = set()
        """Destinations whose last attempt failed (until one gets through)."""

    @property
    def configured(self) -> bool:
        return bool(self.channels)

    def start(self) -> Notifier:
        if self._thread is not None or not self.configured:
            return self
        self._stopping.clear()
        for channel in self.channels.values():
            channel.start()
        self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)
        self._thread.start()
        log.info("notifications on: %s", ", ".join(self.channels))
        return self

    def wake(self) -> None:
        """Look for due notifications now rather than at the next poll."""
        self._wake.set()

    def stop(self, wait_s: float = 2.0) -> None:
        """Stop delivering: waits up to ``wait_s`` seconds for an attempt under way. One
        still under way after that finishes in the background, and is sent again by the
        next start if its outcome was not recorded."""
        if self._thread is None:
            return
        self._stopping.set()
        self._wake.set()
        self._thread.join(wait_s)
        if self._thread.is_alive():
            log.warning("a notification was still being sent at stop; it will be retried")
        self._thread = None
        for channel in self.channels.values():
            channel.stop()

    def counts(self) -> dict[str, int]:
        """Notifications pending, delivered and failed (given up), from the outbox."""
        with self.store.session() as session:
            return outbox_counts(session)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                while not self._stopping.is_set() and self._deliver_one():
                    pass
            except Exception:  # the database went away: a background thread must go on
                log.exception("could not read the notification outbox; trying again")
            self._wake.wait(self.config.poll_s)
            self._wake.clear()

    def _deliver_one(self) -> bool:
        """Send the oldest due notification; False when none is due."""
        claimed = self._claim()
        if claimed is None:
            return False
        error: str | None = None
        try:
            self._send(claimed)
        except DeliveryError as exc:
            error = str(exc)[:ERROR_MAX_CHARS]
        except Exception as exc:  # a bug must not retry one notification for ever
            log.exception(
                "notification %s to %s: unexpected error", claimed.id, claimed.destination
            )
            error = f"unexpected error: {exc!r}"[:ERROR_MAX_CHARS]
        self._record(claimed, error)
        return True

    def _claim(self) -> _Claimed | None:
        now = utcnow()
        self._held = {d: until for d, until in self._held.items() if until > now}
        with self.store.session() as session:
            query = (
                select(OutboxMessage)
                .where(
                    OutboxMessage.delivered_at.is_(None),
                    OutboxMessage.failed_at.is_(None),
                    OutboxMessage.next_attempt_at <= now,
                )
                .order_by(OutboxMessage.created_at, OutboxMessage.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if self._held:
                query = query.where(OutboxMessage.destination.not_in(list(self._held)))
            message = session.scalars(query).first()
            if message is None:
                return None
            message.attempts += 1
            message.next_attempt_at = now + dt.timedelta(seconds=self.config.timeout_s + LEASE_S)
            return _Claimed(
                message.id, message.event, message.destination, message.payload, message.attempts
            )

    def _send(self, claimed: _Claimed) -> None:
        channel = self.channels.get(claimed.destination)
        if channel is None:
            raise DeliveryError(f"{claimed.destination} is no longer configured")
        channel.send(claimed.event, str(claimed.id), claimed.payload)

    def _record(self, claimed: _Claimed, error: str | None) -> None:
        now = utcnow()
        gave_up = error is not None and (
            claimed.attempts >= self.config.max_attempts or claimed.destination not in self.channels
        )
        with self.store.session() as session:
            message = session.get(OutboxMessage, claimed.id, with_for_update=True)
            if message is None:  # its alert was deleted meanwhile
                return
            message.last_error = error
            if error is None:
                message.delivered_at = now
                self._held.pop(claimed.destination, None)
                if claimed.destination in self._failing or claimed.attempts > 1:
                    self._failing.discard(claimed.destination)
                    self._receiver_back(session, claimed.destination, now)
                log.info("notification %s delivered to %s", claimed.id, claimed.destination)
            elif gave_up:
                message.failed_at = now
                log.warning(
                    "notification %s to %s failed after %d attempts, given up: %s",
                    claimed.id, claimed.destination, claimed.attempts, error,
                )  # fmt: skip
            else:
                delay = retry_delay(self.config, claimed.attempts)
                message.next_attempt_at = now + dt.timedelta(seconds=delay)
                # The destination rests, but not behind this notification's own backoff:
                # another of its notifications is tried after at most probe_s.
                probe = now + dt.timedelta(seconds=self.config.probe_s)
                self._held[claimed.destination] = min(message.next_attempt_at, probe)
                self._failing.add(claimed.destination)
                log.warning(
                    "notification %s to %s failed (attempt %d of %d): %s; retrying in %.1f s",
                    claimed.id, claimed.destination, claimed.attempts,
                    self.config.max_attempts, error, delay,
                )  # fmt: skip

    def _receiver_back(self, session: Session, destination: str, now: dt.datetime) -> None:
        """A notification got through to ``destination`` after failures: the others that
        failed while it was down are due now, not at the end of their backoff."""
        session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.destination == destination,
                OutboxMessage.delivered_at.is_(None),
                OutboxMessage.failed_at.is_(None),
                OutboxMessage.last_error.is_not(None),
                OutboxMessage.next_attempt_at > now,
            )
            .values(next_attempt_at=now)
        )
