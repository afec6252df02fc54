"""What an edge keeps on its own disk (``edge.sqlite`` in its data folder), encrypted
with its own key (the key file of the edge machine, never the organisation's):

- its enrolment: the core's address, its name and site, its credential and the key
  of its audit chain;
- its copy of the site's watchlist: each searchable entry's id, expiry and
  templates (no photo, label or reason), and the revision of the core's change
  journal it reflects, with the time of the last successful sync;
- the site's cameras (their sources hold passwords);
- its outbox: each alert raised here, with its snapshot, until the core has it;
- its audit chain: what happened here (cameras started and stopped, alerts, syncs,
  matching stopped or resumed), HMAC-chained, until the core has verified it.

Every change is one SQLite transaction (WAL, synchronous=FULL): an alert written
to the outbox survives ``kill -9`` and a power cut, and is delivered after restart.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    delete,
    event,
    func,
    insert,
    select,
    update,
)

from watchkeeper.edge.protocol import GENESIS, event_mac, vector_of
from watchkeeper.errors import EncryptionKeyError
from watchkeeper.matching.gallery import Gallery
from watchkeeper.store.crypto import KeyRing
from watchkeeper.store.database import create_database_engine

SCHEMA_VERSION = 1

metadata = MetaData()
meta = Table(
    "meta",
    metadata,
    Column("name", String(50), primary_key=True),
    Column("value", LargeBinary, nullable=False),
)
entry_template = Table(
    "entry_template",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("subject_id", String(36), nullable=False, index=True),
    Column("expires_at", String(40), nullable=False),
    Column("vector", LargeBinary, nullable=False),
)
outbox = Table(
    "outbox",
    metadata,
    Column("sequence", Integer, primary_key=True, autoincrement=True),
    Column("alert_id", String(36), nullable=False, unique=True),
    Column("body", LargeBinary, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
)
audit_chain = Table(
    "audit_chain",
    metadata,
    Column("sequence", Integer, primary_key=True),
    Column("event", Text, nullable=False),
    Column("previous_mac", LargeBinary, nullable=False),
    Column("mac", LargeBinary, nullable=False),
    Column("delivered", Integer, nullable=False, default=0),
)


@dataclass(frozen=True)
class Enrolment:
    core_url: str
    edge_id: str
    name: str
    site: str
    credential: str
    audit_key: bytes


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class EdgeState:
    """The edge's local store (see the module's story)."""

    def __init__(self, path: Path, keys: KeyRing) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.keys = keys
        self._enrolment: Enrolment | None = None
        self.engine = create_database_engine(f"sqlite:///{path}")

        @event.listens_for(self.engine, "connect")
        def _durable(connection, _record) -> None:  # type: ignore[no-untyped-def]
            connection.cursor().execute("PRAGMA synchronous=FULL")

        metadata.create_all(self.engine)
        check = self._meta("key_check", encrypted=False)
        if check is None:
            with self.engine.begin() as connection:
                self._put(connection, "key_check", keys.check_value(), encrypted=False)
                self._put(connection, "schema", str(SCHEMA_VERSION).encode(), encrypted=False)
        elif check != keys.check_value():
            raise EncryptionKeyError(
                f"the encryption key does not match the edge's store {path}; nothing was "
                "read or changed"
            )

    def close(self) -> None:
        self.engine.dispose()

    # meta values

    def _put(self, connection: Any, name: str, value: bytes, encrypted: bool = True) -> None:
        stored = self.keys.encrypt(value, f"edge-meta:{name}") if encrypted else value
        connection.execute(delete(meta).where(meta.c.name == name))
        connection.execute(insert(meta).values(name=name, value=stored))

    def _meta(self, name: str, encrypted: bool = True) -> bytes | None:
        with self.engine.connect() as connection:
            value = connection.scalar(select(meta.c.value).where(meta.c.name == name))
        if value is None or not encrypted:
            return value
        return self.keys.decrypt(value, f"edge-meta:{name}")

    def _json(self, name: str) -> Any:
        value = self._meta(name)
        return None if value is None else json.loads(value)

    # enrolment

    def enrolment(self) -> Enrolment | None:
        if self._enrolment is None:
            document = self._json("enrolment")
            if document is not None:
                document["audit_key"] = bytes.fromhex(document["audit_key"])
                self._enrolment = Enrolment(**document)
        return self._enrolment

    def save_enrolment(self, enrolment: Enrolment) -> None:
        document = {**enrolment.__dict__, "audit_key": enrolment.audit_key.hex()}
        with self.engine.begin() as connection:
            self._put(connection, "enrolment", json.dumps(document).encode())
        self._enrolment = enrolment

    # the watchlist copy

    @property
    def revision(self) -> int:
        value = self._meta("revision", encrypted=False)
        return int(value) if value else 0

    @property
    def last_sync(self) -> float | None:
        """``time.time()`` of the last successful sync with the core (kept across
        restarts: an edge restarted offline is as stale as it was)."""
        value = self._meta("last_sync", encrypted=False)
        return float(value) if value else None

    def staleness_s(self) -> float | None:
        last = self.last_sync
        return None if last is None else max(0.0, time.time() - last)

    def apply(self, changes: dict[str, Any]) -> int:
        """Apply one answer of the core's sync (see ``governance.edges.changes_for``) in
        one transaction; how many entries of the copy it added, replaced or dropped (the
        core sends every edge each change, so a removal of an entry this site never
        searched drops nothing)."""
        changed = len(changes["upserts"])
        with self.engine.begin() as connection:
            if changes["full"]:
                changed += connection.execute(
                    select(func.count(func.distinct(entry_template.c.subject_id)))
                ).scalar_one()
                connection.execute(delete(entry_template))
            replaced = {entry["id"] for entry in changes["upserts"]}
            if replaced:
                connection.execute(
                    delete(entry_template).where(entry_template.c.subject_id.in_(replaced))
                )
            dropped = set(changes["removals"])
            digest = changes.get("digest")
            for gone in (
                entry_template.c.subject_id.in_(dropped) if dropped else None,
                entry_template.c.subject_id.not_in(digest) if digest is not None else None,
            ):
                if gone is not None:
                    changed += connection.execute(
                        select(func.count(func.distinct(entry_template.c.subject_id))).where(gone)
                    ).scalar_one()
                    connection.execute(delete(entry_template).where(gone))
            for entry in changes["upserts"]:
                for template in entry["templates"]:
                    vector = vector_of(template["vector"])
                    connection.execute(
                        insert(entry_template).values(
                            id=template["id"],
                            subject_id=entry["id"],
                            expires_at=entry["expires_at"],
                            vector=self.keys.encrypt(
                                vector.tobytes(), f"edge-template:{template['id']}:{entry['id']}"
                            ),
                        )
                    )
            for name in ("model", "model_id", "site"):
                self._put(connection, name, str(changes[name]).encode())
            self._put(connection, "cameras", json.dumps(changes["cameras"]).encode())
            self._put(connection, "revision", str(changes["revision"]).encode(), encrypted=False)
            self._put(connection, "last_sync", repr(time.time()).encode(), encrypted=False)
        return changed

    def model(self) -> tuple[str, str] | None:
        """The registry name and model id the core's watchlist is searched with."""
        name, model_id = self._meta("model"), self._meta("model_id")
        return None if name is None or model_id is None else (name.decode(), model_id.decode())

    def cameras(self) -> list[dict[str, str]]:
        return self._json("cameras") or []

    def entries(self) -> int:
        with self.engine.connect() as connection:
            return (
                connection.scalar(select(func.count(func.distinct(entry_template.c.subject_id))))
                or 0
            )

    def gallery(self, model_id: str) -> Gallery:
        """The entries of the copy that have not expired, as a gallery (labels are
        entry ids)."""
        now = utcnow().isoformat()
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(entry_template).where(entry_template.c.expires_at > now)
            ).all()
        vectors = [
            np.frombuffer(
                self.keys.decrypt(row.vector, f"edge-template:{row.id}:{row.subject_id}"),
                np.float32,
            )
            for row in rows
        ]
        if not vectors:
            return Gallery(model_id, np.zeros((0, 0), np.float32), [])
        return Gallery(model_id, np.stack(vectors), [row.subject_id for row in rows])

    def holds(self, subject_id: str) -> bool:
        now = utcnow().isoformat()
        with self.engine.connect() as connection:
            return bool(
                connection.scalar(
                    select(func.count()).where(
                        entry_template.c.subject_id == subject_id,
                        entry_template.c.expires_at > now,
                    )
                )
            )

    # the audit chain

    def _append_audit(
        self,
        connection: Any,
        action: str,
        details: dict[str, Any],
        object_type: str | None = None,
        object_id: str | None = None,
    ) -> None:
        enrolment = self._enrolment  # read before any transaction: see enrolment()
        if enrolment is None:
            return
        last = connection.execute(
            select(audit_chain.c.sequence, audit_chain.c.mac)
            .order_by(audit_chain.c.sequence.desc())
            .limit(1)
        ).first()
        sequence, previous = (last.sequence + 1, last.mac) if last else (1, GENESIS)
        event_fields = {
            "sequence": sequence,
            "at": utcnow().isoformat(),
            "action": action,
            "object_type": object_type,
            "object_id": object_id,
            "details": details,
        }
        mac = event_mac(enrolment.audit_key, event_fields, previous)
        connection.execute(
            insert(audit_chain).values(
                sequence=sequence,
                event=json.dumps(event_fields),
                previous_mac=previous,
                mac=mac,
                delivered=0,
            )
        )

    def audit(self, action: str, object_type: str | None = None,
              object_id: str | None = None, **details: Any) -> None:  # fmt: skip
        with self.engine.begin() as connection:
            self._append_audit(connection, action, details, object_type, object_id)

    def undelivered_audit(self, limit: int) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(audit_chain)
                .where(audit_chain.c.delivered == 0)
                .order_by(audit_chain.c.sequence)
                .limit(limit)
            ).all()
        return [
            {**json.loads(row.event), "previous_mac": row.previous_mac.hex(), "mac": row.mac.hex()}
            for row in rows
        ]

    def audit_delivered(self, through: int) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(audit_chain).where(audit_chain.c.sequence <= through).values(delivered=1)
            )

    # the outbox

    def raise_alert(self, alert: dict[str, Any]) -> None:
        """Keep an alert for delivery, with its audit event, in one transaction."""
        body = self.keys.encrypt(json.dumps(alert).encode(), f"edge-alert:{alert['id']}")
        with self.engine.begin() as connection:
            connection.execute(insert(outbox).values(alert_id=alert["id"], body=body, attempts=0))
            details = {
                "camera": alert["camera_id"],
                "subject": alert["subject_id"],
                "score": alert["score"],
            }
            self._append_audit(connection, "alert.create", details, "alert", alert["id"])

    def next_alert(self) -> tuple[int, dict[str, Any]] | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(outbox).order_by(outbox.c.sequence).limit(1)).first()
        if row is None:
            return None
        return row.sequence, json.loads(self.keys.decrypt(row.body, f"edge-alert:{row.alert_id}"))

    def alert_done(self, sequence: int, outcome: str) -> None:
        """The core has the alert (or refused it for good): drop it, snapshot and all,
        and audit how it ended."""
        with self.engine.begin() as connection:
            alert_id = connection.scalar(
                select(outbox.c.alert_id).where(outbox.c.sequence == sequence)
            )
            connection.execute(delete(outbox).where(outbox.c.sequence == sequence))
            if alert_id is not None:
                self._append_audit(
                    connection, "alert.deliver", {"outcome": outcome}, "alert", alert_id
                )

    def alert_failed(self, sequence: int, error: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(outbox)
                .where(outbox.c.sequence == sequence)
                .values(attempts=outbox.c.attempts + 1, last_error=error[:300])
            )

    def outbox_size(self) -> int:
        with self.engine.connect() as connection:
            return connection.scalar(select(func.count()).select_from(outbox)) or 0


def new_alert_id() -> str:
    return str(uuid.uuid4())
