"""Free text about people encrypted at rest: no plain text in the database, the same text
read back through the app, tampering refused, and an older database's rows encrypted by
migration 0010."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from tests.support.shop import PostgresServer, Shop
from watchkeeper.config import Settings
from watchkeeper.errors import EncryptionKeyError, PolicyError
from watchkeeper.governance.organisation import add_camera, add_site, add_user, create_organisation
from watchkeeper.store.crypto import KeyRing, decode_key, generate_key
from watchkeeper.store.database import (
    Store,
    _alembic_config,
    create_database_engine,
    database_url,
    open_store,
)
from watchkeeper.store.models import (
    FREE_TEXT_LIMIT,
    Alert,
    Base,
    Decision,
    Incident,
    OutboxMessage,
    Review,
    Role,
    Subject,
    SubjectStatus,
    UTCDateTime,
    utcnow,
)
from watchkeeper.store.sealed import EncryptedJSON, EncryptedText, _Sealed, attach_keys

ENCRYPTED = {
    "incident.description": EncryptedText,
    "incident.police_reference": EncryptedText,
    "incident.evidence": EncryptedJSON,
    "subject.label": EncryptedText,
    "subject.reason": EncryptedText,
    "subject.status_note": EncryptedText,
    "review.note": EncryptedText,
    "notification_outbox.payload": EncryptedJSON,
}
"""Every column held encrypted, and its type."""

UNICODE = 'Zoë Ångström — 雪 🙂 "tall", <b>red coat</b> & hat\nsecond line'


def _longest(column: str) -> str:
    """The longest text the column takes, in two-byte characters."""
    limit = {"subject.label": 200, "incident.police_reference": 100}.get(column, FREE_TEXT_LIMIT)
    return "é" * limit


VALUES: dict[str, dict[str, Any]] = {
    "unicode": {
        "incident.description": UNICODE,
        "incident.police_reference": "13/999/26 ✓",
        "incident.evidence": ["CCTV export door-0105.mp4", UNICODE],
        "subject.label": UNICODE[:60],
        "subject.reason": UNICODE,
        "subject.status_note": UNICODE,
        "review.note": UNICODE,
        "notification_outbox.payload": {"entry": UNICODE, "score": 0.91},
    },
    "empty": {
        "incident.description": "",
        "incident.police_reference": "",
        "incident.evidence": [],
        "subject.label": "",
        "subject.reason": "",
        "subject.status_note": "",
        "review.note": "",
        "notification_outbox.payload": {},
    },
    "absent": {
        "incident.description": "a description is always there",
        "incident.police_reference": None,
        "incident.evidence": [],
        "subject.label": "a label is always there",
        "subject.reason": "a reason is always there",
        "subject.status_note": None,
        "review.note": None,
        "notification_outbox.payload": {"entry": "x"},
    },
    "longest": {
        column: _longest(column) for column in ENCRYPTED if ENCRYPTED[column] is EncryptedText
    }
    | {
        "incident.evidence": [_longest("incident.evidence")],
        "notification_outbox.payload": {"entry": _longest("subject.label")},
    },
}
"""What each case writes to every encrypted column (None: NULL)."""


@dataclass
class Records:
    """One row of each table with encrypted columns."""

    incident: uuid.UUID
    subject: uuid.UUID
    review: uuid.UUID
    outbox: uuid.UUID

    def rows(self, session: Session) -> dict[str, Any]:
        """The ORM rows by table name, read in ``session``."""
        return {
            "incident": session.get_one(Incident, self.incident),
            "subject": session.get_one(Subject, self.subject),
            "review": session.get_one(Review, self.review),
            "notification_outbox": session.get_one(OutboxMessage, self.outbox),
        }

    def row_id(self, table: str) -> uuid.UUID:
        return {"notification_outbox": self.outbox}.get(table) or getattr(self, table)


def write_records(shop: Shop, values: dict[str, Any]) -> Records:
    """Store ``values`` through the ORM: the shop's incident, and a new entry, alert,
    review and queued notification."""
    with shop.tx() as tx:
        subject = Subject(
            organisation_id=tx.organisation.id,
            label="placeholder",
            reason="placeholder",
            status=SubjectStatus.ACTIVE,
            not_child_or_vulnerable=True,
            created_by_id=tx.user("bob").id,
            expires_at=utcnow() + dt.timedelta(days=30),
        )
        tx.session.add(subject)
        tx.session.flush()
        alert = Alert(
            organisation_id=tx.organisation.id,
            camera_id=tx.camera.id,
            subject_id=subject.id,
            occurred_at=utcnow(),
            score=0.9,
            threshold=0.5,
            model_id="test",
            probe_vector_encrypted=bytes(16),
        )
        tx.session.add(alert)
        tx.session.flush()
        review = Review(alert_id=alert.id, user_id=tx.user("dave").id, decision=Decision.CONFIRM)
        outbox = OutboxMessage(
            alert_id=alert.id,
            event="alert.new",
            destination="mqtt",
            payload={},
            next_attempt_at=utcnow(),
        )
        tx.session.add_all([review, outbox])
        tx.session.flush()
        records = Records(tx.incident.id, subject.id, review.id, outbox.id)
        rows = records.rows(tx.session)
        for column, value in values.items():
            table, name = column.split(".")
            setattr(rows[table], name, value)
    return records


def raw_value(store: Store, column: str, row_id: uuid.UUID) -> bytes | None:
    """What the database holds in ``column`` of the row, read with plain SQL."""
    table, name = column.split(".")
    with store.engine.connect() as connection:
        for found_id, value in connection.execute(text(f"SELECT id, {name} FROM {table}")):
            if uuid.UUID(str(found_id)) == row_id:
                return None if value is None else bytes(value)
    raise AssertionError(f"no row {row_id} in {table}")


def as_bytes(value: Any) -> bytes:
    return (value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)).encode()


@pytest.mark.parametrize("case", VALUES)
def test_free_text_is_ciphertext_in_the_database_and_reads_back_the_same(
    shop: Shop, case: str
) -> None:
    values = VALUES[case]
    records = write_records(shop, values)
    with shop.tx() as tx:
        rows = records.rows(tx.session)
        read = {
            column: getattr(rows[column.split(".")[0]], column.split(".")[1]) for column in values
        }
    assert read == values

    for column, value in values.items():
        raw = raw_value(shop.store, column, records.row_id(column.split(".")[0]))
        if value is None:
            assert raw is None, column
            continue
        assert raw is not None, column
        plain = as_bytes(value)
        # nonce (12) + ciphertext + tag (16): the text itself is nowhere in the column
        assert len(raw) == 12 + len(plain) + 16, column
        if plain:
            assert plain not in raw, column
            assert plain[:8] not in raw, column


@pytest.mark.parametrize("database_url", [None], ids=["sqlite"])
def test_the_database_file_holds_none_of_the_text(shop: Shop) -> None:
    """SQLite's whole file (the write-ahead log included), not only the columns."""
    write_records(shop, VALUES["unicode"])
    database = shop.store.engine.url.database
    assert database is not None
    files = [Path(database + suffix) for suffix in ("", "-wal")]
    held = b"".join(path.read_bytes() for path in files if path.exists())
    for value in VALUES["unicode"].values():
        assert as_bytes(value)[:20] not in held
    assert b"took razor blades" not in held, "the shop's own incident, written by record_incident"


def _move_reason_into_label(store: Store, records: Records) -> None:
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE subject SET label = reason"))


def _alter_label(store: Store, records: Records) -> None:
    blob = bytearray(raw_value(store, "subject.label", records.subject) or b"")
    blob[-1] ^= 0x01
    with store.engine.begin() as connection:
        connection.execute(
            text("UPDATE subject SET label = :blob").bindparams(
                sa.bindparam("blob", type_=sa.LargeBinary())
            ),
            {"blob": bytes(blob)},
        )


def _use_another_key(store: Store, records: Records) -> None:
    attach_keys(store.engine, KeyRing(generate_key()))


@pytest.mark.parametrize(
    "tamper",
    [_move_reason_into_label, _alter_label, _use_another_key],
    ids=["moved-from-another-column", "altered", "wrong-key"],
)
def test_a_wrong_or_moved_ciphertext_is_refused(shop: Shop, tamper: Any) -> None:
    records = write_records(shop, VALUES["unicode"])
    tamper(shop.store, records)
    refused = pytest.raises(EncryptionKeyError, match=r"cannot decrypt subject\.label: wrong key")
    with refused, shop.store.session() as session:
        session.get_one(Subject, records.subject)


def test_an_engine_without_the_key_reads_and_writes_no_free_text(
    shop: Shop, store_settings: Settings
) -> None:
    records = write_records(shop, VALUES["unicode"])
    engine = create_database_engine(database_url(store_settings))
    try:
        with (
            Session(engine) as session,
            pytest.raises(EncryptionKeyError, match="no encryption key"),
        ):
            session.get_one(Subject, records.subject)
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "condition",
    [
        lambda: Subject.label == "Joe",
        lambda: Subject.reason.contains("theft"),
        lambda: Incident.police_reference.in_(["13/999/26"]),
        lambda: Review.note.like("%x%"),
        lambda: Subject.label.desc(),
    ],
    ids=["equals", "contains", "in", "like", "sort"],
)
def test_the_database_is_never_asked_to_compare_ciphertext(condition: Any) -> None:
    """A comparison would match nothing, silently (every ciphertext has its own nonce)."""
    with pytest.raises(TypeError, match="is encrypted: the database cannot compare or sort"):
        condition()


def test_null_checks_still_work_in_sql(shop: Shop) -> None:
    records = write_records(shop, VALUES["absent"])
    with shop.tx() as tx:
        unnoted = tx.session.scalars(select(Subject.id).where(Subject.status_note.is_(None)))
        assert list(unnoted) == [records.subject]


@pytest.mark.parametrize(
    ("column", "limit"),
    [("subject.label", 200), ("incident.police_reference", 100), ("review.note", FREE_TEXT_LIMIT)],
)
def test_the_length_limits_apply_to_the_plain_text(shop: Shop, column: str, limit: int) -> None:
    table, name = column.split(".")
    with pytest.raises(PolicyError, match=rf"{table} {name.replace('_', ' ')} is too long"):
        write_records(shop, {column: "x" * (limit + 1)})


def test_every_encrypted_column_is_bound_to_its_own_table_and_column() -> None:
    found = {
        f"{table.name}.{column.name}": type(column.type)
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if isinstance(column.type, _Sealed)
    }
    assert found == ENCRYPTED
    for table in Base.metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.type, _Sealed):
                assert column.type.context == f"{table.name}.{column.name}"


# Migration 0010 ---------------------------------------------------------------------------


@pytest.fixture
def old_settings(request: pytest.FixtureRequest, store_settings: Settings) -> Settings:
    """``store_settings`` over an empty database (PostgreSQL's test databases are copies
    of one already migrated to the newest schema)."""
    if store_settings.database_url is None:
        return store_settings
    server: PostgresServer = request.getfixturevalue("postgres")
    return store_settings.model_copy(update={"database_url": server.new_database(migrated=False)})


OLD_VALUES = VALUES["unicode"]


def _shapes() -> dict[str, sa.TableClause]:
    """The tables with free text as they were at 0008 (plain text and JSON)."""
    ids = sa.Uuid()
    return {
        "incident": sa.table(
            "incident",
            *(sa.column(n, ids) for n in ("id", "organisation_id", "site_id", "reporter_id")),
            sa.column("occurred_at", UTCDateTime()),
            sa.column("created_at", UTCDateTime()),
            sa.column("category", sa.String()),
            sa.column("description", sa.Text()),
            sa.column("police_reference", sa.String()),
            sa.column("evidence", sa.JSON()),
        ),
        "subject": sa.table(
            "subject",
            *(sa.column(n, ids) for n in ("id", "organisation_id", "created_by_id")),
            sa.column("created_at", UTCDateTime()),
            sa.column("expires_at", UTCDateTime()),
            sa.column("status", sa.String()),
            sa.column("restricted", sa.Boolean()),
            sa.column("not_child_or_vulnerable", sa.Boolean()),
            sa.column("false_matches", sa.Integer()),
            sa.column("label", sa.String()),
            sa.column("reason", sa.Text()),
            sa.column("status_note", sa.Text()),
        ),
        "review": sa.table(
            "review",
            *(sa.column(n, ids) for n in ("id", "alert_id", "user_id")),
            sa.column("created_at", UTCDateTime()),
            sa.column("decision", sa.String()),
            sa.column("note", sa.Text()),
        ),
        "notification_outbox": sa.table(
            "notification_outbox",
            *(sa.column(n, ids) for n in ("id", "alert_id")),
            sa.column("created_at", UTCDateTime()),
            sa.column("next_attempt_at", UTCDateTime()),
            sa.column("event", sa.String()),
            sa.column("destination", sa.String()),
            sa.column("attempts", sa.Integer()),
            sa.column("payload", sa.JSON()),
        ),
    }


def build_old_database(settings: Settings) -> Records:
    """A database migrated to 0008, holding an incident, an entry, an alert with a review
    and a queued notification, all in plain text."""
    keys = KeyRing(decode_key(settings.key.get_secret_value(), "test"))  # type: ignore[union-attr]
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_database_engine(database_url(settings))
    try:
        command.upgrade(_alembic_config(engine), "0008")
        shapes = _shapes()
        now = utcnow()
        records = Records(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4())
        with Session(engine) as session, session.begin():
            organisation, admin = create_organisation(session, keys, "Old Shops", "alice")
            assert admin is not None
            site = add_site(session, keys, organisation, admin, "Leeds")
            dave = add_user(session, keys, organisation, admin, "dave", Role.REVIEWER, [site])
            camera = add_camera(session, keys, organisation, admin, site, "door", "rtsp://cam/s")
            session.execute(
                sa.insert(shapes["incident"]).values(
                    id=records.incident,
                    organisation_id=organisation.id,
                    site_id=site.id,
                    reporter_id=admin.id,
                    occurred_at=now,
                    created_at=now,
                    category="theft",
                    description=OLD_VALUES["incident.description"],
                    police_reference=OLD_VALUES["incident.police_reference"],
                    evidence=OLD_VALUES["incident.evidence"],
                )
            )
            session.execute(
                sa.insert(shapes["subject"]).values(
                    id=records.subject,
                    organisation_id=organisation.id,
                    created_by_id=admin.id,
                    created_at=now,
                    expires_at=now + dt.timedelta(days=30),
                    status="active",
                    restricted=False,
                    not_child_or_vulnerable=True,
                    false_matches=0,
                    label=OLD_VALUES["subject.label"],
                    reason=OLD_VALUES["subject.reason"],
                    status_note=OLD_VALUES["subject.status_note"],
                )
            )
            alert = Alert(
                organisation_id=organisation.id,
                camera_id=camera.id,
                subject_id=records.subject,
                occurred_at=now,
                score=0.9,
                threshold=0.5,
                model_id="test",
                probe_vector_encrypted=bytes(16),
            )
            session.add(alert)
            session.flush()
            session.execute(
                sa.insert(shapes["review"]).values(
                    id=records.review,
                    alert_id=alert.id,
                    user_id=dave.id,
                    created_at=now,
                    decision="confirm",
                    note=OLD_VALUES["review.note"],
                )
            )
            session.execute(
                sa.insert(shapes["notification_outbox"]).values(
                    id=records.outbox,
                    alert_id=alert.id,
                    created_at=now,
                    next_attempt_at=now,
                    event="alert.new",
                    destination="mqtt",
                    attempts=0,
                    payload=OLD_VALUES["notification_outbox.payload"],
                )
            )
    finally:
        engine.dispose()
    return records


def read_through_app(store: Store, records: Records) -> dict[str, Any]:
    with store.session() as session:
        rows = records.rows(session)
        return {
            column: getattr(rows[column.split(".")[0]], column.split(".")[1])
            for column in OLD_VALUES
        }


def test_upgrading_an_older_database_encrypts_its_text_and_reads_back_the_same(
    old_settings: Settings,
) -> None:
    records = build_old_database(old_settings)
    store = open_store(old_settings, create=True)  # what `watchkeeper init` does
    try:
        assert read_through_app(store, records) == OLD_VALUES
        for column, value in OLD_VALUES.items():
            raw = raw_value(store, column, records.row_id(column.split(".")[0]))
            assert raw is not None
            assert as_bytes(value)[:8] not in raw, column

        # ... and back: 0008's plain columns hold the same text again.
        command.downgrade(_alembic_config(store.engine), "0008")
        with store.engine.connect() as connection:
            shapes = _shapes()
            subject = connection.execute(select(shapes["subject"])).one()
            incident = connection.execute(select(shapes["incident"])).one()
        assert (subject.label, subject.reason) == (
            OLD_VALUES["subject.label"],
            OLD_VALUES["subject.reason"],
        )
        assert incident.evidence == OLD_VALUES["incident.evidence"]
        command.upgrade(_alembic_config(store.engine), "head")
        assert read_through_app(store, records) == OLD_VALUES
    finally:
        store.close()


@pytest.mark.parametrize("key", [None, "another"], ids=["no-key", "wrong-key"])
def test_an_older_database_is_not_upgraded_without_its_key(
    old_settings: Settings, key: str | None
) -> None:
    """Nothing is encrypted with a key that could not read it back, and nothing changes."""
    records = build_old_database(old_settings)
    engine = create_database_engine(database_url(old_settings))
    try:
        if key is not None:
            attach_keys(engine, KeyRing(generate_key()))
        with pytest.raises(EncryptionKeyError):
            command.upgrade(_alembic_config(engine), "head")
        with engine.connect() as connection:
            revision = connection.scalar(text("SELECT version_num FROM alembic_version"))
            label = connection.execute(select(_shapes()["subject"].c.label)).scalar_one()
        assert (revision, label) == ("0008", OLD_VALUES["subject.label"])
    finally:
        engine.dispose()
    store = open_store(old_settings, create=True)
    try:
        assert read_through_app(store, records) == OLD_VALUES
    finally:
        store.close()


@pytest.mark.parametrize("database_url", [None], ids=["sqlite"])
def test_an_upgraded_sqlite_file_keeps_no_plain_copy_of_the_text(old_settings: Settings) -> None:
    """The tables rebuilt by the upgrade leave no old pages with the text behind
    (SQLite's secure_delete), in the file or its write-ahead log."""
    database = old_settings.data_dir / "watchkeeper.db"

    def held() -> bytes:
        files = [database, database.with_name(database.name + "-wal")]
        return b"".join(path.read_bytes() for path in files if path.exists())

    build_old_database(old_settings)
    assert as_bytes(OLD_VALUES["subject.reason"]) in held(), "the old database holds the text"
    open_store(old_settings, create=True).close()
    for column, value in OLD_VALUES.items():
        assert as_bytes(value)[:12] not in held(), column
