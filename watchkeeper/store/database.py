"""Opening the store: the database (SQLite in WAL mode, or PostgreSQL), its schema
migrations, the encryption key and the folder of encrypted files."""

from __future__ import annotations

import errno
import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from watchkeeper.config import Settings
from watchkeeper.errors import DatabaseError, EncryptionKeyError, StorageError
from watchkeeper.store.crypto import KeyRing, decode_key, read_key_file
from watchkeeper.store.models import Organisation
from watchkeeper.store.sealed import attach_keys

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
DATABASE_FILE = "watchkeeper.db"
FILES_FOLDER = "files"


def database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    return f"sqlite:///{settings.data_dir / DATABASE_FILE}"


SQLITE_BUSY_TIMEOUT_S = 30.0
"""How long a writer waits for another process's transaction (a scan recording an
alert while staff review one) before giving up."""


def create_database_engine(url: str) -> Engine:
    """An engine with SQLite set up for a shop's box: WAL, enforced foreign keys, and
    transactions that take the write lock when they begin.

    SQLite's default (deferred) transactions fail at once, rather than wait, when
    a reader tries to write after another process committed; the audit chain
    reads its head and then appends, so every transaction begins IMMEDIATE.
    """
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(connection, _record) -> None:  # type: ignore[no-untyped-def]
        connection.isolation_level = None  # the driver's own BEGIN is replaced below
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # Deleted rows (an erased entry's label, reason, incidents) are overwritten with
        # zeros, not left in free pages, whatever the SQLite build's default.
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection) -> None:  # type: ignore[no-untyped-def]
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade_schema(engine: Engine) -> None:
    """Bring the schema to the newest migration. A database with rows to encrypt
    (migration 0010) needs the key attached to ``engine`` (``sealed.attach_keys``)."""
    command.upgrade(_alembic_config(engine), "head")


def schema_is_current(engine: Engine) -> bool:
    head = ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision() == head


def database_is_empty(settings: Settings) -> bool:
    """No database yet: no SQLite file, or a database without a single table. (One that
    cannot be reached is not called empty: opening it says why.)"""
    url = database_url(settings)
    if url.startswith("sqlite"):
        path = make_url(url).database
        if path and not Path(path).exists():
            return True
    engine = create_database_engine(url)
    try:
        return not inspect(engine).get_table_names()
    except OperationalError:
        return False
    finally:
        engine.dispose()


def load_key(settings: Settings) -> KeyRing:
    """The key ring from WATCHKEEPER_KEY or the key file."""
    if settings.key is not None:
        return KeyRing(decode_key(settings.key.get_secret_value(), "WATCHKEEPER_KEY"))
    return KeyRing(read_key_file(settings.key_file))


class EncryptedFiles:
    """Encrypted blobs in ``<data_dir>/files/<kind>/<id>``, written atomically.

    Each blob is bound to its kind, its id and its owner (the watchlist entry a
    photo or snapshot belongs to): a file copied over another, or a row moved to
    another entry, no longer decrypts.
    """

    def __init__(self, root: Path, keys: KeyRing) -> None:
        self.root = root
        self.keys = keys

    def path(self, kind: str, object_id: uuid.UUID) -> Path:
        return self.root / kind / str(object_id)

    @staticmethod
    def context(kind: str, object_id: uuid.UUID, owner: uuid.UUID) -> str:
        return f"{kind}:{object_id}:owner={owner}"

    def write(self, kind: str, object_id: uuid.UUID, data: bytes, owner: uuid.UUID) -> Path:
        path = self.path(kind, object_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.part")
        try:
            partial.write_bytes(self.keys.encrypt(data, self.context(kind, object_id, owner)))
            os.replace(partial, path)
        except OSError:
            partial.unlink(missing_ok=True)
            raise
        return path

    def read(self, kind: str, object_id: uuid.UUID, owner: uuid.UUID) -> bytes:
        blob = self.path(kind, object_id).read_bytes()
        return self.keys.decrypt(blob, self.context(kind, object_id, owner))

    def delete(self, kind: str, object_id: uuid.UUID) -> None:
        self.path(kind, object_id).unlink(missing_ok=True)

    def all_files(self) -> Iterator[Path]:
        """Every file held under the root, finished or not."""
        if self.root.is_dir():
            yield from sorted(p for p in self.root.rglob("*") if p.is_file())


DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


def storage_failure(exc: BaseException) -> StorageError | None:
    """``exc`` as a :class:`StorageError` when it says that storing failed: a full disk
    (the file system's ENOSPC or quota, SQLite's "database or disk is full",
    PostgreSQL's "could not extend file ...: No space left on device") or any other
    error of the database driver; None for anything else (a programming error stays
    one)."""
    if isinstance(exc, OSError):
        if exc.errno in DISK_FULL_ERRNOS:
            return StorageError(f"disk full: {exc.strerror or exc}", disk_full=True)
        return None
    if not isinstance(exc, DBAPIError):
        return None
    cause = exc.orig if exc.orig is not None else exc
    lines = str(cause).strip().splitlines()
    text = lines[0] if lines else type(cause).__name__
    full = getattr(cause, "errno", None) in DISK_FULL_ERRNOS or any(
        words in text.lower() for words in ("disk is full", "no space left")
    )
    if full:
        return StorageError(f"disk full: {text}", disk_full=True)
    return StorageError(f"the database refused the change: {text}", disk_full=False)


@dataclass
class FileChanges:
    """Files that follow a database transaction: written ones are deleted again if it
    rolls back; removed ones are deleted only once it has committed."""

    written: list[tuple[str, uuid.UUID]] = field(default_factory=list)
    removed: list[tuple[str, uuid.UUID]] = field(default_factory=list)


def file_changes(session: Session) -> FileChanges:
    changes = session.info.get("files")
    if not isinstance(changes, FileChanges):
        raise RuntimeError("file changes need a session from Store.session()")
    return changes


@dataclass
class Store:
    """Everything needed to read and write the watchlist and alerts."""

    engine: Engine
    sessions: sessionmaker[Session]
    keys: KeyRing
    files: EncryptedFiles

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back on any error.

        Encrypted files written through :meth:`write_file` are removed again when
        the transaction rolls back; files given to :meth:`remove_file` are deleted
        after it commits. A process killed between the two leaves only files
        with no row, which the retention sweep removes (never rows without files
        that they need).
        """
        changes = FileChanges()
        session = self.sessions(info={"files": changes})
        try:
            with session.begin():
                yield session
        except BaseException:
            for kind, object_id in changes.written:
                self.files.delete(kind, object_id)
            raise
        finally:
            session.close()
        for kind, object_id in changes.removed:
            try:
                self.files.delete(kind, object_id)
            except OSError as exc:
                log.warning(
                    "could not delete %s/%s (%s); the next purge retries", kind, object_id, exc
                )

    def write_file(
        self, session: Session, kind: str, object_id: uuid.UUID, data: bytes, owner: uuid.UUID
    ) -> None:
        """Encrypt ``data`` to ``files/<kind>/<object_id>`` as part of ``session``'s transaction."""
        changes = file_changes(session)
        changes.written.append((kind, object_id))
        self.files.write(kind, object_id, data, owner)

    def remove_file(self, session: Session, kind: str, object_id: uuid.UUID) -> None:
        """Delete ``files/<kind>/<object_id>`` once ``session``'s transaction commits."""
        file_changes(session).removed.append((kind, object_id))

    def close(self) -> None:
        self.engine.dispose()


def open_store(settings: Settings, create: bool = False) -> Store:
    """Open (or with ``create``, initialise) the store; check the key before anything else.

    A missing or wrong key raises :class:`EncryptionKeyError` without reading or
    changing any data.
    """
    keys = load_key(settings)
    url = database_url(settings)
    if url.startswith("sqlite"):
        # Owner only (when created here): user names, site and camera names and the
        # audit log are plain text in the database (see the README's Security section).
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    engine = create_database_engine(url)
    # Before the upgrade: migration 0010 encrypts the free text of an older database.
    attach_keys(engine, keys)
    try:
        if create:
            upgrade_schema(engine)
        elif not schema_is_current(engine):
            raise DatabaseError(
                f"the database at {_redacted(url)} is not initialised or is at an older "
                "schema; run `watchkeeper init`"
            )
        sessions = sessionmaker(engine, expire_on_commit=False)
        with sessions() as session:
            for organisation in session.scalars(select(Organisation)):
                keys.verify(organisation.key_check)
    except OperationalError as exc:
        engine.dispose()
        raise DatabaseError(f"cannot open the database at {_redacted(url)}: {exc.orig}") from None
    except (EncryptionKeyError, DatabaseError, SQLAlchemyError):
        engine.dispose()
        raise
    return Store(engine, sessions, keys, EncryptedFiles(settings.data_dir / FILES_FOLDER, keys))


def _redacted(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)
