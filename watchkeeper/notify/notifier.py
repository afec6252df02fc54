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

from sqlalchemy import select

from watchkeeper.config import NotifyConfig, Settings
from watchkeeper.notify.mqtt import MqttPublisher
from watchkeeper.notify.outbox import MQTT, outbox_counts, webhook_destination
from watchkeeper.notify.webhook import DeliveryError, Webhook, webhook_secret
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
    retried after :func:`retry_delay`; the destination's later notifications wait
    behind it (a receiver that is down is tried once per retry, not once per
    notification). After ``max_attempts`` the notification is marked failed, kept and
    logged. :meth:`stop` waits briefly for the attempt under way; whatever is not yet
    delivered stays in the outbox for the next start. With nothing configured it starts
    no thread and connects nowhere.
    """

    def __init__(self, settings: Settings, store: Store) -> None:
        self.config = settings.notify
        self.store = store
        self.webhooks = {
            webhook_destination(hook.name): Webhook(
                hook.name,
                hook.url,
                webhook_secret(
                    hook.name,
                    hook.secret.get_secret_value() if hook.secret else None,
                    hook.secret_env,
                ),
                self.config.timeout_s,
            )
            for hook in self.config.webhooks
        }
        self.mqtt = (
            MqttPublisher(self.config.mqtt, self.config.timeout_s) if self.config.mqtt else None
        )
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._held: dict[str, dt.datetime] = {}
        """Destinations whose oldest notification failed: not tried again until then."""

    @property
    def configured(self) -> bool:
        return bool(self.webhooks) or self.mqtt is not None

    def start(self) -> Notifier:
        if self._thread is not None or not self.configured:
            return self
        self._stopping.clear()
        if self.mqtt is not None:
            self.mqtt.start()
        self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)
        self._thread.start()
        log.info(
            "notifications on: %s",
            ", ".join([*self.webhooks, *([MQTT] if self.mqtt else [])]),
        )
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
        if self.mqtt is not None:
            self.mqtt.stop()

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
        delivery_id = str(claimed.id)
        if claimed.destination == MQTT and self.mqtt is not None:
            self.mqtt.publish(delivery_id, claimed.payload)
        elif claimed.destination in self.webhooks:
            self.webhooks[claimed.destination].send(claimed.event, delivery_id, claimed.payload)
        else:
            raise DeliveryError(f"{claimed.destination} is no longer configured")

    def _record(self, claimed: _Claimed, error: str | None) -> None:
        now = utcnow()
        gave_up = error is not None and (
            claimed.attempts >= self.config.max_attempts
            or not (claimed.destination in self.webhooks or claimed.destination == MQTT)
        )
        with self.store.session() as session:
            message = session.get(OutboxMessage, claimed.id, with_for_update=True)
            if message is None:  # its alert was deleted meanwhile
                return
            message.last_error = error
            if error is None:
                message.delivered_at = now
                self._held.pop(claimed.destination, None)
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
                self._held[claimed.destination] = message.next_attempt_at
                log.warning(
                    "notification %s to %s failed (attempt %d of %d): %s; retrying in %.1f s",
                    claimed.id, claimed.destination, claimed.attempts,
                    self.config.max_attempts, error, delay,
                )  # fmt: skip
