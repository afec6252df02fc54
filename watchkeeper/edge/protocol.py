"""What a chain's core and its edges say to each other, and how an edge's audit
events are chained: the one definition both sides use.

    POST /api/edge/enrol   {code, name, version}          -> credential, audit key, site
    POST /api/edge/sync    ?since=R&wait=S&digest=1, body: the edge's status
                           -> the watchlist changes after revision R (a long poll:
                              the core answers at once when something changed, or
                              after S seconds), the site's cameras, the model
    POST /api/edge/alerts  one alert raised at the edge, with its snapshot
                           -> 201 stored, 200 already stored (the same id again),
                              410 its entry may no longer be searched (not stored)
    POST /api/edge/audit   the edge's audit events since the core's head

Every request after enrolment carries ``Authorization: Bearer <credential>``.

An edge's audit events form an HMAC chain of their own (the key is issued at
enrolment and kept encrypted on both sides): each event's MAC covers its fields and
the previous event's MAC. The core verifies each batch against the head it holds
and records the events in the organisation's audit log; an edited, missing or
reordered event breaks the chain and the batch is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import numpy as np

CREDENTIAL_PREFIX = "wke_"
CODE_PREFIX = "wkc_"
GENESIS = bytes(32)
"""The ``previous_mac`` of an edge's first audit event."""
MAX_AUDIT_BATCH = 500
"""The most audit events one request carries."""


def secret_hash(secret: str) -> str:
    """How the core keeps a credential or code: SHA-256, hex (they are random and long,
    so a plain hash suffices)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def event_mac(key: bytes, event: dict[str, Any], previous_mac: bytes) -> bytes:
    """The MAC of one edge audit event (its ``sequence``, ``at``, ``action``,
    ``object_type``, ``object_id`` and ``details``) chained to ``previous_mac``."""
    fields = {name: event.get(name) for name in AUDIT_FIELDS}
    body = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hmac.new(key, previous_mac + body.encode(), hashlib.sha256).digest()


AUDIT_FIELDS = ("sequence", "at", "action", "object_type", "object_id", "details")


def vector_text(vector: np.ndarray) -> str:
    """A template as sent: little-endian float32, base64."""
    return base64.b64encode(np.ascontiguousarray(vector, "<f4").tobytes()).decode("ascii")


def vector_of(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text, validate=True), "<f4").astype(np.float32)
