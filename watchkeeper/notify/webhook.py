"""Signed webhooks: each notification is POSTed as JSON with an HMAC-SHA256 signature.

A request carries these headers:

- ``X-Watchkeeper-Event``: the event, e.g. ``alert.created``;
- ``X-Watchkeeper-Delivery``: the notification's id, the same on every retry: a
  receiver that has seen it before should answer 2xx and do nothing again;
- ``X-Watchkeeper-Timestamp``: seconds since 1970 (UTC) when this attempt was signed;
- ``X-Watchkeeper-Signature``: ``sha256=`` and the hex HMAC-SHA256, keyed with the
  shared secret, of the timestamp, a dot and the raw body bytes.

To verify one, a receiver recomputes the HMAC over exactly the bytes it received
(before parsing the JSON), compares it in constant time, and refuses timestamps more
than a few minutes away from its own clock (so that a captured request cannot be
replayed later). :func:`verify_signature` does all three and has no dependency on
the rest of Watchkeeper: copy it.

Any 2xx answer counts as delivered; any other answer (a redirect too: none is
followed), a refused connection or no answer within ``notify.timeout_s`` is retried.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
import urllib.error
import urllib.request
from typing import Any

from watchkeeper.config import WebhookConfig
from watchkeeper.errors import ConfigError
from watchkeeper.notify.channels import DeliveryError

USER_AGENT = "Watchkeeper-Webhook/1"
SIGNATURE_TOLERANCE_S = 300


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Watchkeeper-Signature`` value for ``body`` signed at ``timestamp``."""
    digest = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify_signature(
    secret: str | bytes,
    timestamp: str,
    body: bytes,
    signature_header: str,
    tolerance_s: float = SIGNATURE_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """Whether a webhook request is genuine: ``signature_header`` (X-Watchkeeper-Signature)
    is the HMAC-SHA256 under ``secret`` of ``timestamp`` (X-Watchkeeper-Timestamp), a dot
    and the raw ``body``, and the timestamp is within ``tolerance_s`` seconds of ``now``
    (default: this machine's clock). Standard library only, for receivers to copy."""
    try:
        signed_at = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - signed_at) > tolerance_s:
        return False
    key = secret.encode() if isinstance(secret, str) else secret
    expected = "sha256=" + hmac.new(key, f"{signed_at}.".encode() + body, "sha256").hexdigest()
    return hmac.compare_digest(expected, signature_header)


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer other than 2xx: it fails the attempt (and is retried),
    rather than sending the notification somewhere nobody configured."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Webhook:
    """One configured receiver. Connects directly, ignoring any proxy set in the
    environment: a notification goes exactly where ``url`` says."""

    def __init__(self, name: str, url: str, secret: bytes, timeout_s: float) -> None:
        self.name = name
        self.destination = f"webhook:{name}"
        self.url = url
        self.secret = secret
        self.timeout_s = timeout_s
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), _RefuseRedirects()
        )

    @classmethod
    def from_config(cls, hook: WebhookConfig, timeout_s: float) -> Webhook:
        secret = hook.secret.get_secret_value() if hook.secret else None
        return cls(
            hook.name, hook.url, webhook_secret(hook.name, secret, hook.secret_env), timeout_s
        )

    def start(self) -> None:
        """Nothing to connect: each notification is one request."""

    def stop(self) -> None:
        """Nothing held between notifications."""

    def send(self, event: str, delivery_id: str, payload: dict[str, Any]) -> None:
        """POST ``payload``; raises :class:`DeliveryError` unless the answer is 2xx.
        ``timeout_s`` bounds connecting and each read (not the whole exchange)."""
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        timestamp = str(int(time.time()))
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "X-Watchkeeper-Event": event,
                "X-Watchkeeper-Delivery": delivery_id,
                "X-Watchkeeper-Timestamp": timestamp,
                "X-Watchkeeper-Signature": signature(self.secret, timestamp, body),
            },
        )
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                response.read(65536)
                status = response.status
        except urllib.error.HTTPError as exc:
            raise DeliveryError(f"HTTP {exc.code}") from None
        except urllib.error.URLError as exc:
            raise DeliveryError(f"cannot connect: {exc.reason}") from None
        except TimeoutError:
            raise DeliveryError(f"no answer within {self.timeout_s:g} s") from None
        except OSError as exc:
            raise DeliveryError(f"connection failed: {exc}") from None
        if not 200 <= status < 300:
            raise DeliveryError(f"HTTP {status}")


def webhook_secret(name: str, secret: str | None, secret_env: str | None) -> bytes:
    """The shared secret, from the setting or the environment variable it names."""
    value = secret if secret is not None else os.environ.get(secret_env or "")
    if not value:
        raise ConfigError(
            f"webhook {name!r}: the environment variable {secret_env} holding its secret is not set"
        )
    if len(value) < 16:
        raise ConfigError(f"webhook {name!r}: its secret needs at least 16 characters")
    return value.encode()
