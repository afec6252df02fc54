"""Free text about people encrypted at rest

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 16:30:00

Incident descriptions, police references and evidence references, watchlist entries'
labels, reasons and status notes, review notes and queued notifications' payloads
(which name the entry) become AES-256-GCM ciphertext in binary columns
(``watchkeeper.store.sealed``). Existing rows are read, the columns' types changed and
the rows written back encrypted, in the migration's one transaction.

The key comes with the engine (``open_store`` attaches it before upgrading). A database
with rows to encrypt is refused without it, or with a key whose check value does not
match the organisation's: nothing would read the text back.
"""

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from alembic import op

from watchkeeper.errors import EncryptionKeyError
from watchkeeper.store.crypto import KeyRing
from watchkeeper.store.sealed import keys_of, seal_json, seal_text

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


@dataclass(frozen=True)
class _Column:
    table: str
    name: str
    plain_type: sa.types.TypeEngine[Any]
    nullable: bool

    @property
    def context(self) -> str:
        return f"{self.table}.{self.name}"

    @property
    def is_json(self) -> bool:
        return isinstance(self.plain_type, sa.JSON)


COLUMNS = [
    _Column("incident", "description", sa.Text(), nullable=False),
    _Column("incident", "police_reference", sa.String(length=100), nullable=True),
    _Column("incident", "evidence", sa.JSON(), nullable=False),
    _Column("subject", "label", sa.String(length=200), nullable=False),
    _Column("subject", "reason", sa.Text(), nullable=False),
    _Column("subject", "status_note", sa.Text(), nullable=True),
    _Column("review", "note", sa.Text(), nullable=True),
    _Column("notification_outbox", "payload", sa.JSON(), nullable=False),
]
"""Every column this migration encrypts, with its type before it."""


def _tables() -> dict[str, list[_Column]]:
    tables: dict[str, list[_Column]] = {}
    for column in COLUMNS:
        tables.setdefault(column.table, []).append(column)
    return tables


def _rows(table: str, columns: list[_Column], binary: bool) -> list[Any]:
    """Every row's id and values of ``columns``, as plain text (or JSON) or as bytes."""
    shape = sa.table(
        table,
        sa.column("id", sa.Uuid()),
        *(sa.column(c.name, sa.LargeBinary() if binary else c.plain_type) for c in columns),
    )
    return list(op.get_bind().execute(sa.select(*shape.columns)))


def _write(table: str, columns: list[_Column], rows: list[dict[str, Any]], binary: bool) -> None:
    shape = sa.table(
        table,
        sa.column("id", sa.Uuid()),
        *(sa.column(c.name, sa.LargeBinary() if binary else c.plain_type) for c in columns),
    )
    statement = (
        sa.update(shape)
        .where(shape.c.id == sa.bindparam("row_id"))
        .values({c.name: sa.bindparam(f"new_{c.name}") for c in columns})
    )
    if rows:
        op.get_bind().execute(statement, rows)


def _checked_keys() -> KeyRing | None:
    """The engine's key, checked against every organisation's check value (None: no key,
    and there must then be nothing to encrypt)."""
    keys = keys_of(op.get_bind().dialect)
    if keys is not None:
        organisation = sa.table("organisation", sa.column("key_check", sa.LargeBinary()))
        for (stored,) in op.get_bind().execute(sa.select(organisation.c.key_check)):
            keys.verify(bytes(stored))
    return keys


def _converted(
    keys: KeyRing | None,
    rows: list[Any],
    columns: list[_Column],
    convert: Callable[[KeyRing, _Column, Any], Any],
) -> list[dict[str, Any]]:
    """``rows`` as parameters of :func:`_write`, each value converted with the key."""
    if not rows:
        return []
    if keys is None:
        raise EncryptionKeyError(
            "migration 0010 encrypts incidents, entries and notes already stored and needs "
            "the encryption key: upgrade with `watchkeeper init`"
        )
    return [
        {"row_id": row.id}
        | {f"new_{c.name}": convert(keys, c, getattr(row, c.name)) for c in columns}
        for row in rows
    ]


def _seal(keys: KeyRing, column: _Column, value: Any) -> bytes | None:
    if value is None:
        return None
    if column.is_json:
        return seal_json(keys, value, column.context)
    return seal_text(keys, value, column.context)


def _open(keys: KeyRing, column: _Column, value: bytes | None) -> Any:
    if value is None:
        return None
    text = keys.decrypt_text(bytes(value), column.context)
    return json.loads(text) if column.is_json else text


def upgrade() -> None:
    keys = _checked_keys()
    for table, columns in _tables().items():
        sealed = _converted(keys, _rows(table, columns, binary=False), columns, _seal)
        with op.batch_alter_table(table) as batch:
            for column in columns:
                cast = f"{column.name}::text" if column.is_json else column.name
                batch.alter_column(
                    column.name,
                    type_=sa.LargeBinary(),
                    existing_type=column.plain_type,
                    existing_nullable=column.nullable,
                    postgresql_using=f"convert_to({cast}, 'UTF8')",
                )
        _write(table, columns, sealed, binary=True)


def downgrade() -> None:
    keys = _checked_keys()
    for table, columns in _tables().items():
        plain = _converted(keys, _rows(table, columns, binary=True), columns, _open)
        with op.batch_alter_table(table) as batch:
            for column in columns:
                # The old values are overwritten below; the cast only has to succeed.
                using = "'null'::json" if column.is_json else f"encode({column.name}, 'hex')"
                batch.alter_column(
                    column.name,
                    type_=column.plain_type,
                    existing_type=sa.LargeBinary(),
                    existing_nullable=column.nullable,
                    postgresql_using=using,
                )
        _write(table, columns, plain, binary=False)
