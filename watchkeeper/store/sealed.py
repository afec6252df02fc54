"""Free text about people, encrypted in its column: the column types that do it.

An incident's description, a watchlist entry's label and reason, a reviewer's note
describe people as much as their photos do, so they are stored as AES-256-GCM
ciphertext (the key ring's text key), bound to the table and column they belong to:
a ciphertext copied into another column, or altered, is refused when read.

The encryption is a column type (:class:`EncryptedText`, :class:`EncryptedJSON`),
not code in the routes: every way of reading or writing the column (the ORM, a
``select()`` of the column, an ``update()``, a migration) passes through it. A type
sees values, not rows, so a ciphertext is not bound to its row: one entry's label
copied over another's in the same column still decrypts (photos and templates, which
are handled row by row, are bound to their rows).

The key travels with the engine: :func:`attach_keys` gives it to the engine's
dialect (the object every type is handed), which ``open_store`` does before anything
is read or migrated. An engine without the key reads and writes none of these
columns and says so, rather than storing plain text.

The database cannot compare or sort ciphertext (each one has its own nonce), so such
comparisons are refused when the query is built: filter and sort in Python after
reading. ``IS NULL`` still works.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine, LargeBinary, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import operators

from watchkeeper.errors import EncryptionKeyError
from watchkeeper.store.crypto import KeyRing

_DIALECT_ATTRIBUTE = "watchkeeper_keys"

_COMPARISONS_ALLOWED = {operators.is_, operators.is_not}
"""What the database may still ask of an encrypted column: whether it is NULL."""


def attach_keys(engine: Engine, keys: KeyRing) -> None:
    """Let ``engine`` (and every session and migration on it) read and write the
    encrypted columns with ``keys``."""
    setattr(engine.dialect, _DIALECT_ATTRIBUTE, keys)


def keys_of(dialect: Dialect) -> KeyRing | None:
    """The key ring attached to the engine of ``dialect``, if any."""
    keys = getattr(dialect, _DIALECT_ATTRIBUTE, None)
    return keys if isinstance(keys, KeyRing) else None


def _required_keys(dialect: Dialect, context: str) -> KeyRing:
    keys = keys_of(dialect)
    if keys is None:
        raise EncryptionKeyError(
            f"{context} is encrypted and this database connection has no encryption key"
        )
    return keys


def seal_text(keys: KeyRing, text: str, context: str) -> bytes:
    """What :class:`EncryptedText` stores for ``text`` in column ``context``."""
    return keys.encrypt_text(text, context)


def seal_json(keys: KeyRing, value: Any, context: str) -> bytes:
    """What :class:`EncryptedJSON` stores for ``value`` in column ``context``."""
    return keys.encrypt_text(json.dumps(value, ensure_ascii=False), context)


class _Sealed(TypeDecorator[Any]):
    """Ciphertext in a binary column; ``context`` (``table.column``) is its associated
    data."""

    impl = LargeBinary
    cache_ok = True

    class comparator_factory(TypeDecorator.Comparator[Any]):  # the name SQLAlchemy looks up
        def operate(self, op: Any, *other: Any, **kwargs: Any) -> Any:
            if op not in _COMPARISONS_ALLOWED:
                raise TypeError(
                    f"{self.type.context} is encrypted: the database cannot compare or "
                    "sort it; filter in Python after reading"
                )
            return super().operate(op, *other, **kwargs)

        def reverse_operate(self, op: Any, other: Any, **kwargs: Any) -> Any:
            return self.operate(op, other, **kwargs)

    def __init__(self, context: str, length: int | None = None) -> None:
        super().__init__()
        self.context = context
        self.length = length
        """The most characters of plain text (None: ``FREE_TEXT_LIMIT``)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.context!r}, length={self.length!r})"


class EncryptedText(_Sealed):
    """A string column stored encrypted (None stays NULL)."""

    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> bytes | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise TypeError(f"{self.context} takes text, not {type(value).__name__}")
        return seal_text(_required_keys(dialect, self.context), value, self.context)

    def process_result_value(self, value: bytes | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return _required_keys(dialect, self.context).decrypt_text(bytes(value), self.context)


class EncryptedJSON(_Sealed):
    """A JSON value (a list of references, a message's payload) stored encrypted."""

    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> bytes | None:
        if value is None:
            return None
        return seal_json(_required_keys(dialect, self.context), value, self.context)

    def process_result_value(self, value: bytes | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        keys = _required_keys(dialect, self.context)
        return json.loads(keys.decrypt_text(bytes(value), self.context))
