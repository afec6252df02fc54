"""Publishing alerts to an MQTT broker, for Home Assistant and NVRs.

Each notification (``alert.created``, ``alert.confirmed`` or ``alert.rejected``: the
payload's ``event`` says which) goes to ``<prefix>/<site slug>/alert`` (QoS 1, not
retained: an old alert is not news to a subscriber who joins later), with its delivery
id as ``delivery`` in the JSON, the same on every retry. ``<prefix>/status`` is retained and says
``online`` while the service is connected and ``offline`` after it stops or, through
the broker's last will, after it vanishes; Home Assistant's availability topic.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import paho.mqtt.client as mqtt

from watchkeeper.config import MqttConfig
from watchkeeper.governance.outbox import site_slug
from watchkeeper.notify.channels import DeliveryError

log = logging.getLogger(__name__)

ONLINE = "online"
OFFLINE = "offline"
RECONNECT_MAX_S = 60


def alert_topic(prefix: str, site: str) -> str:
    return f"{prefix}/{site_slug(site)}/alert"


def status_topic(prefix: str) -> str:
    return f"{prefix}/status"


class MqttPublisher:
    """A connection to the broker kept up by paho's network thread (reconnecting after
    1, 2, 4 ... seconds, at most a minute). A publish while it is down fails at once,
    and the notifier retries it later."""

    def __init__(self, config: MqttConfig, timeout_s: float) -> None:
        self.config = config
        self.timeout_s = timeout_s
        self.where = f"{config.host}:{config.port}"
        self.destination = config.destination
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=config.client_id)
        if config.username is not None:
            password = config.password.get_secret_value() if config.password else None
            client.username_pw_set(config.username, password)
        if config.tls:
            client.tls_set(ca_certs=str(config.ca_file) if config.ca_file else None)
        client.will_set(status_topic(config.topic_prefix), OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(1, RECONNECT_MAX_S)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self.client = client

    def start(self) -> None:
        """Connect in the background; returns at once, whether the broker is up or not."""
        self.client.connect_async(self.config.host, self.config.port, keepalive=60)
        self.client.loop_start()

    def stop(self) -> None:
        """Say ``offline`` (retained) and disconnect; a clean disconnect sends no last will."""
        if self.client.is_connected():
            info = self.client.publish(
                status_topic(self.config.topic_prefix), OFFLINE, qos=1, retain=True
            )
            try:
                info.wait_for_publish(self.timeout_s)
            except (RuntimeError, ValueError):
                log.warning("MQTT %s: could not say offline", self.where)
        self.client.disconnect()
        self.client.loop_stop()

    def send(self, event: str, delivery_id: str, payload: dict[str, Any]) -> None:
        """Publish one notification and wait for the broker's acknowledgement (QoS 1);
        raises :class:`DeliveryError` if not connected or not acknowledged in time."""
        if not self.client.is_connected():
            raise DeliveryError(f"not connected to the MQTT broker at {self.where}")
        body = json.dumps({**payload, "delivery": delivery_id}, separators=(",", ":"))
        info = self.client.publish(
            alert_topic(self.config.topic_prefix, payload["site"]), body, qos=1, retain=False
        )
        try:
            info.wait_for_publish(self.timeout_s)
        except (RuntimeError, ValueError) as exc:
            raise DeliveryError(f"MQTT {self.where}: {exc}") from None
        if not info.is_published():
            raise DeliveryError(
                f"MQTT broker at {self.where} did not acknowledge within {self.timeout_s:g} s"
            )

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _properties: Any
    ) -> None:
        if reason.is_failure:
            log.warning("MQTT broker at %s refused the connection: %s", self.where, reason)
            return
        log.info("connected to the MQTT broker at %s", self.where)
        client.publish(status_topic(self.config.topic_prefix), ONLINE, qos=1, retain=True)

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _properties: Any
    ) -> None:
        if reason.is_failure:
            log.warning("lost the MQTT broker at %s (%s); reconnecting", self.where, reason)
