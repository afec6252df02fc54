"""Where notifications go: the channel interface, and the channels a configuration opens.

A channel delivers one queued notification to one destination (a name in the outbox:
``webhook:<name>``, ``mqtt``) and raises :class:`DeliveryError` when it cannot; the
:class:`~watchkeeper.notify.notifier.Notifier` retries. Which events a destination is
sent is decided by its configuration (``destination`` and ``wants`` in
:mod:`watchkeeper.config`), in the transaction that stores the alert.

Adding a kind of channel: its settings (a model with ``destination`` and ``wants``,
listed by ``NotifyConfig.channels``), one module with a class that has the three
methods of :class:`Channel` and a ``from_config``, and one line in :data:`OPENERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from watchkeeper.config import MqttConfig, NotifyConfig, WebhookConfig


class DeliveryError(Exception):
    """A notification was not delivered (the reason in words); it is retried later."""


class Channel(Protocol):
    destination: str
    """The outbox's name for it."""

    def start(self) -> None:
        """Connect, where the channel keeps a connection (returns at once)."""

    def stop(self) -> None:
        """Disconnect and let go of what it holds."""

    def send(self, event: str, delivery_id: str, payload: dict[str, Any]) -> None:
        """Deliver one notification, or raise :class:`DeliveryError`. ``delivery_id``
        is the same for every attempt, so that a receiver can drop repeats."""


def _webhook(config: Any, notify: NotifyConfig) -> Channel:
    from watchkeeper.notify.webhook import Webhook

    return Webhook.from_config(config, notify.timeout_s)


def _mqtt(config: Any, notify: NotifyConfig) -> Channel:
    from watchkeeper.notify.mqtt import MqttPublisher

    return MqttPublisher(config, notify.timeout_s)


OPENERS: dict[type, Callable[[Any, NotifyConfig], Channel]] = {
    WebhookConfig: _webhook,
    MqttConfig: _mqtt,
}
"""How each kind of channel setting becomes a channel."""


def open_channels(config: NotifyConfig) -> dict[str, Channel]:
    """The channels of ``config``, by destination (not started)."""
    channels = [OPENERS[type(channel)](channel, config) for channel in config.channels]
    return {channel.destination: channel for channel in channels}
