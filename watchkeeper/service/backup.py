"""Backups that restore: the database and the encrypted files, consistent with each
other while the service runs, in one tar archive that never holds the key.

Consistency. A file is written before its row commits and deleted only after its
row's deletion commits (see :class:`~watchkeeper.store.database.Store`). So the
database is copied first, as one snapshot (SQLite's online backup API in a single
step, or ``pg_dump`` of a snapshot exported from a transaction that also reads the
row counts and file owners), and only then are the files that the snapshot's rows
refer to copied. Every such file existed when the snapshot was taken; one that has
gone since was deleted with its row after the snapshot, and the whole backup is
taken again (once) rather than written without it. Files with no row in the
snapshot (an alert still being stored, a file left by a killed process) are not
copied.

The archive is an uncompressed tar (the files are ciphertext and do not compress;
an uncompressed tar can be read member by member): the database, ``files/<kind>/<id>``
and ``manifest.json`` (when, which schema, rows per table, every file with its owner,
size and SHA-256, the key's check value, and a MAC over all of it made with a key
derived from the encryption key). It is written in a temporary folder beside the
destination and linked into place when complete; an existing file is never
overwritten.

The key is never in the archive: only its check value, so that ``restore`` tells the
user the key they hold is the wrong one before anything is written (exit 8).

Audit. ``backup.create`` is recorded in the live database after the copy is complete
and before the archive appears under its name: the event states what the archive
holds (counts, its id), a failed backup leaves neither event nor archive, and no
archive exists without its event. The archive therefore does not hold its own event;
``restore`` appends ``backup.restore`` (the backup's id, date and counts) to each
restored organisation's chain instead.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import hmac
import io
import json
import logging
import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, create_engine, func, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from watchkeeper.config import Settings
from watchkeeper.errors import (
    AlreadyRunningError,
    AuditError,
    BackupError,
    DatabaseError,
    EncryptionKeyError,
)
from watchkeeper.governance import access, audit
from watchkeeper.governance.access import Permission, require
from watchkeeper.governance.organisation import CONSOLE
from watchkeeper.governance.subjects import ALERT_CROP, FACE_IMAGE
from watchkeeper.store.crypto import KeyRing
from watchkeeper.store.database import (
    FILES_FOLDER,
    MIGRATIONS,
    EncryptedFiles,
    Store,
    create_database_engine,
    database_url,
    load_key,
    open_store,
)
from watchkeeper.store.lock import LOCK_FILE, DataFolderLock
from watchkeeper.store.models import Alert, Base, FaceImage, Organisation, Role, User

log = logging.getLogger(__name__)

FORMAT = "watchkeeper-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DATABASE_MEMBERS = {"sqlite": "database.sqlite", "postgresql": "database.pgdump"}
FILE_KINDS = (FACE_IMAGE, ALERT_CROP)
"""The kinds of encrypted file, each owned by a row (``face_image``, ``alert``)."""
SERVE_LOCK = LOCK_FILE
"""The file in the data folder that ``watchkeeper serve`` (or a restore) holds locked."""
ATTEMPTS = 2
"""A backup is taken again once when a file was deleted while it was being made."""
CHUNK = 1 << 20


# -- the manifest ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BackedUpFile:
    """One encrypted file in the archive, and the row that owns it."""

    kind: str
    id: uuid.UUID
    owner: uuid.UUID
    """The watchlist entry it is bound to (its encryption context)."""
    size: int
    sha256: str

    @property
    def member(self) -> str:
        return f"{FILES_FOLDER}/{self.kind}/{self.id}"


@dataclass
class BackupManifest:
    """What an archive holds: the database, its row counts and every file."""

    backup_id: uuid.UUID
    created_at: dt.datetime
    created_by: str
    watchkeeper_version: str
    database_kind: str
    database_size: int
    database_sha256: str
    schema_revision: str | None
    tables: dict[str, int]
    """Rows per table in the backed-up database."""
    organisations: list[dict[str, Any]]
    """Each organisation's id, name, audit event count and active administrators."""
    key_check: bytes
    files: list[BackedUpFile]
    tool: str | None = None
    """The ``pg_dump`` that made a PostgreSQL dump, with its version."""

    @property
    def database_member(self) -> str:
        return DATABASE_MEMBERS[self.database_kind]

    @property
    def file_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def counts(self) -> dict[str, int]:
        """What the audit log records about a backup: numbers only."""
        return {
            "organisations": len(self.organisations),
            "subjects": self.tables.get("subject", 0),
            "face_images": self.tables.get("face_image", 0),
            "alerts": self.tables.get("alert", 0),
            "audit_events": self.tables.get("audit_event", 0),
            "files": len(self.files),
            "file_bytes": self.file_bytes,
            "database_bytes": self.database_size,
        }

    def document(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "backup_id": str(self.backup_id),
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "watchkeeper_version": self.watchkeeper_version,
            "database": {
                "kind": self.database_kind,
                "member": self.database_member,
                "size": self.database_size,
                "sha256": self.database_sha256,
                "schema_revision": self.schema_revision,
                "tool": self.tool,
                "tables": self.tables,
            },
            "organisations": self.organisations,
            "key_check": self.key_check.hex(),
            "files": [
                {
                    "member": f.member,
                    "kind": f.kind,
                    "id": str(f.id),
                    "owner": str(f.owner),
                    "size": f.size,
                    "sha256": f.sha256,
                }
                for f in self.files
            ],
        }

    def to_json(self, keys: KeyRing) -> bytes:
        document = self.document()
        document["mac"] = keys.backup_mac(_canonical(document)).hex()
        return json.dumps(document, indent=1).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes, keys: KeyRing) -> BackupManifest:
        """Parse and authenticate a manifest: the key check first (a wrong key is
        :class:`EncryptionKeyError`), then the MAC (an altered manifest is refused)."""
        try:
            document = json.loads(data)
            if document.get("format") != FORMAT:
                raise BackupError("this is not a Watchkeeper backup (no Watchkeeper manifest)")
            if document["format_version"] > FORMAT_VERSION:
                raise BackupError(
                    f"the backup is in format {document['format_version']}, newer than this "
                    f"Watchkeeper reads ({FORMAT_VERSION}); restore with a newer Watchkeeper"
                )
            if not hmac.compare_digest(bytes.fromhex(document["key_check"]), keys.check_value()):
                raise EncryptionKeyError(
                    "the encryption key is not the one this backup was made with; nothing "
                    "was written (restore needs the key the data was made with)"
                )
            mac = bytes.fromhex(document.pop("mac"))
            if not hmac.compare_digest(mac, keys.backup_mac(_canonical(document))):
                raise BackupError(
                    "the backup's manifest was altered (its MAC does not match); nothing "
                    "was written"
                )
            database = document["database"]
            if not all(re.fullmatch(r"[a-z_][a-z0-9_]*", name) for name in database["tables"]):
                raise BackupError("the backup's manifest names an unknown table")
            kind = database["kind"]
            if kind not in DATABASE_MEMBERS or database["member"] != DATABASE_MEMBERS[kind]:
                raise BackupError(f"the backup's database is of an unknown kind {kind!r}")
            files = [
                BackedUpFile(
                    kind=f["kind"],
                    id=uuid.UUID(f["id"]),
                    owner=uuid.UUID(f["owner"]),
                    size=int(f["size"]),
                    sha256=f["sha256"],
                )
                for f in document["files"]
            ]
            for f, listed in zip(files, document["files"], strict=True):
                if f.kind not in FILE_KINDS or f.member != listed["member"]:
                    raise BackupError(f"the backup lists an unknown file {listed['member']!r}")
            return cls(
                backup_id=uuid.UUID(document["backup_id"]),
                created_at=dt.datetime.fromisoformat(document["created_at"]),
                created_by=document["created_by"],
                watchkeeper_version=document["watchkeeper_version"],
                database_kind=kind,
                database_size=int(database["size"]),
                database_sha256=database["sha256"],
                schema_revision=database["schema_revision"],
                tables={str(k): int(v) for k, v in database["tables"].items()},
                organisations=document["organisations"],
                key_check=bytes.fromhex(document["key_check"]),
                files=files,
                tool=database.get("tool"),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BackupError(f"the backup's manifest is damaged ({exc!r})") from None


def _canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def watchkeeper_version() -> str:
    try:
        return metadata.version("watchkeeper")
    except metadata.PackageNotFoundError:
        return "unknown"


# -- what a database snapshot holds -------------------------------------------------------


@dataclass
class Contents:
    """Read from one snapshot of the database: what the manifest says about it."""

    revision: str | None
    tables: dict[str, int]
    references: list[tuple[str, uuid.UUID, uuid.UUID]]
    """(kind, id, owner) of every encrypted file a row refers to."""
    organisations: list[dict[str, Any]]


def read_contents(connection: Connection) -> Contents:
    """Row counts, file owners and organisations, all in ``connection``'s transaction."""
    tables = {
        table.name: int(connection.scalar(select(func.count()).select_from(table)) or 0)
        for table in Base.metadata.sorted_tables
    }
    revisions = list(connection.scalars(text("SELECT version_num FROM alembic_version")))
    tables["alembic_version"] = len(revisions)
    references = [
        (FACE_IMAGE, image_id, owner)
        for image_id, owner in connection.execute(
            select(FaceImage.id, FaceImage.subject_id).order_by(FaceImage.id)
        )
    ]
    references += [
        (ALERT_CROP, alert_id, owner)
        for alert_id, owner in connection.execute(
            select(Alert.id, Alert.subject_id).order_by(Alert.id)
        )
    ]
    organisations = []
    for organisation_id, name, events in connection.execute(
        select(Organisation.id, Organisation.name, Organisation.audit_count).order_by(
            Organisation.name
        )
    ):
        administrators = connection.scalars(
            select(User.name)
            .where(
                User.organisation_id == organisation_id,
                User.role == Role.ADMIN,
                User.active.is_(True),
            )
            .order_by(User.name)
        )
        organisations.append(
            {
                "id": str(organisation_id),
                "name": name,
                "audit_events": events,
                "administrators": list(administrators),
            }
        )
    return Contents(revisions[0] if revisions else None, tables, references, organisations)


def _plain_engine(url: str) -> Engine:
    """An engine that reads a database as it is (no WAL switch for a SQLite copy)."""
    return create_engine(url, poolclass=NullPool)


# -- making a backup --------------------------------------------------------------------------


class _FileVanished(Exception):
    """A file the snapshot's rows refer to was gone when it was to be copied."""

    def __init__(self, relative: str) -> None:
        super().__init__(relative)
        self.relative = relative


def backup(store: Store, out: Path, actor: str, organisation: str | None = None) -> BackupManifest:
    """Write a backup of ``store`` (every organisation in its database) to ``out``, as
    ``actor`` (an active administrator of ``organisation``, or of the only one); record
    ``backup.create`` in that organisation's audit log. Refuses an existing ``out``."""
    out = out.absolute()
    if out.exists() or out.is_symlink():
        raise BackupError(f"{out} already exists; a backup never overwrites a file")
    if not out.parent.is_dir():
        raise BackupError(f"cannot write {out}: the folder {out.parent} does not exist")
    with store.session() as session:
        # Who may copy everything out: checked before anything is copied.
        found = access.organisation(session, organisation)
        require(access.user(session, found.id, actor), Permission.MANAGE_ORGANISATION)
        organisation_id = found.id
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        for attempt in range(1, ATTEMPTS + 1):
            archive = work / f"attempt-{attempt}.tar"
            try:
                manifest = _write_archive(store, work, archive, actor)
                break
            except _FileVanished as vanished:
                archive.unlink(missing_ok=True)
                if attempt == ATTEMPTS:
                    raise BackupError(
                        f"{vanished.relative}, which the database refers to, was missing "
                        f"in {ATTEMPTS} attempts (deleted while the backup ran, or lost); "
                        "no backup was written"
                    ) from None
                log.info("%s was deleted during the backup; taking it again", vanished.relative)
        with store.session() as session:
            user = access.user(session, organisation_id, actor)
            require(user, Permission.MANAGE_ORGANISATION)
            audit.record(
                session,
                store.keys,
                organisation_id,
                user.name,
                "backup.create",
                "backup",
                manifest.backup_id,
                database=manifest.database_kind,
                **manifest.counts(),
            )
        _publish(archive, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return manifest


def _write_archive(store: Store, work: Path, archive: Path, actor: str) -> BackupManifest:
    kind = store.engine.dialect.name
    if kind not in DATABASE_MEMBERS:
        raise BackupError(f"cannot back up a {kind} database (SQLite and PostgreSQL only)")
    copy = work / DATABASE_MEMBERS[kind]
    copy.unlink(missing_ok=True)
    tool = None
    if kind == "sqlite":
        _copy_sqlite(Path(store.engine.url.database or ""), copy)
        engine = _plain_engine(f"sqlite:///{copy}")
        try:
            with engine.connect() as connection:
                contents = read_contents(connection)
        finally:
            engine.dispose()
    else:
        contents, tool = _dump_postgres(store.engine, copy)
    after_snapshot(store)
    database_sha256, database_size = _digest(copy)
    files = []
    descriptor = os.open(archive, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as raw:
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.add(copy, DATABASE_MEMBERS[kind], filter=_private)
            for file_kind, object_id, owner in contents.references:
                path = store.files.path(file_kind, object_id)
                try:
                    data = path.read_bytes()
                except FileNotFoundError:
                    raise _FileVanished(f"{FILES_FOLDER}/{file_kind}/{object_id}") from None
                entry = BackedUpFile(
                    file_kind, object_id, owner, len(data), hashlib.sha256(data).hexdigest()
                )
                _add_bytes(tar, entry.member, data)
                files.append(entry)
            manifest = BackupManifest(
                backup_id=uuid.uuid4(),
                created_at=dt.datetime.now(dt.UTC),
                created_by=actor,
                watchkeeper_version=watchkeeper_version(),
                database_kind=kind,
                database_size=database_size,
                database_sha256=database_sha256,
                schema_revision=contents.revision,
                tables=contents.tables,
                organisations=contents.organisations,
                key_check=store.keys.check_value(),
                files=files,
                tool=tool,
            )
            _add_bytes(tar, MANIFEST, manifest.to_json(store.keys))
        raw.flush()
        os.fsync(raw.fileno())
    copy.unlink()
    return manifest


def after_snapshot(store: Store) -> None:
    """Called between the database snapshot and the file copy (a seam for tests that
    delete rows and files exactly there)."""


def _copy_sqlite(live: Path, copy: Path) -> None:
    """One consistent copy of a live SQLite database (WAL mode, writers running): the
    online backup API in a single step reads one snapshot."""
    if not live.is_file():
        raise DatabaseError(f"no database at {live}; nothing to back up")
    try:
        with (
            closing(sqlite3.connect(live, timeout=30)) as source,
            closing(sqlite3.connect(copy)) as target,
        ):
            source.backup(target)
            # A self-contained file: no -wal beside it when it is read back.
            target.execute("PRAGMA journal_mode=DELETE")
            [check] = target.execute("PRAGMA quick_check").fetchone()
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot copy the database at {live}: {exc}") from None
    if check != "ok":
        raise DatabaseError(f"the copy of {live} does not pass SQLite's check: {check}")


def _dump_postgres(engine: Engine, dump: Path) -> tuple[Contents, str]:
    """``pg_dump`` of a snapshot exported by a transaction that reads the counts and file
    owners from that same snapshot."""
    with engine.connect() as probe:
        server = _server_major(probe)
    pg_dump, version = postgres_tool("pg_dump", server)
    connection = engine.connect().execution_options(isolation_level="REPEATABLE READ")
    with connection, connection.begin():
        snapshot = connection.scalar(text("SELECT pg_export_snapshot()"))
        _run_tool(
            [
                str(pg_dump),
                "--format=custom",
                "--no-owner",
                "--no-privileges",
                f"--snapshot={snapshot}",
                f"--file={dump}",
                f"--dbname={_libpq_url(engine)}",
            ],
            engine,
        )
        contents = read_contents(connection)
    return contents, f"pg_dump {version}"


def _server_major(connection: Connection) -> int:
    return int(connection.scalar(text("SHOW server_version_num")) or 0) // 10000


def _libpq_url(engine: Engine) -> str:
    """The database's URL for libpq tools, without the password (given in the
    environment instead, never on a command line others can see)."""
    url = engine.url.set(drivername="postgresql", password=None)
    return url.render_as_string(hide_password=False)


def _run_tool(command: list[str], engine: Engine) -> None:
    env = dict(os.environ)
    if engine.url.password:
        env["PGPASSWORD"] = str(engine.url.password)
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {done.returncode}"
        raise BackupError(f"{Path(command[0]).name} failed: {reason}")


def postgres_tool(name: str, server_major: int) -> tuple[Path, str]:
    """The newest ``pg_dump`` or ``pg_restore`` found (on PATH, in Debian's
    /usr/lib/postgresql/*/bin, beside pgserver's server), refused if older than
    ``server_major``."""
    candidates: list[Path] = []
    if found := shutil.which(name):
        candidates.append(Path(found))
    candidates += sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    try:
        import pgserver  # the server wheel the tests (and small installs) run

        candidates.append(Path(pgserver.__file__).parent / "pginstall" / "bin" / name)
    except ImportError:
        pass
    versions: list[tuple[tuple[int, ...], Path, str]] = []
    for candidate in dict.fromkeys(candidates):
        if not os.access(candidate, os.X_OK):
            continue
        try:
            said = subprocess.run(
                [str(candidate), "--version"], capture_output=True, text=True, timeout=30
            ).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        if match := re.search(r"(\d+)(?:\.(\d+))?", said):
            number = tuple(int(part) for part in match.groups() if part is not None)
            versions.append((number, candidate, ".".join(map(str, number))))
    if not versions:
        raise BackupError(
            f"{name} was not found (on PATH, in /usr/lib/postgresql/*/bin or beside "
            f"pgserver's server): install the PostgreSQL client tools, version "
            f"{server_major} or newer"
        )
    number, path, text_version = max(versions)
    if number[0] < server_major:
        raise BackupError(
            f"{name} {text_version} ({path}) is older than the PostgreSQL {server_major} "
            f"server; install the PostgreSQL {server_major} client tools"
        )
    return path, text_version


def _digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _private(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mode = 0o600
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = _private(tarfile.TarInfo(name))
    info.size = len(data)
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _publish(archive: Path, out: Path) -> None:
    """Give the finished archive its name; never replace a file that appeared meanwhile."""
    try:
        os.link(archive, out)
    except FileExistsError:
        raise BackupError(f"{out} already exists; a backup never overwrites a file") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise BackupError(f"cannot write {out}: {exc.strerror}") from None
        # No hard links here (some network or FAT mounts): the narrow check-then-move.
        if out.exists():
            raise BackupError(f"{out} already exists; a backup never overwrites a file") from None
        os.replace(archive, out)
    _fsync_folder(out.parent)


def _fsync_folder(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


# -- restoring --------------------------------------------------------------------------------


@dataclass
class RestoreReport:
    """What a restore wrote and found."""

    manifest: BackupManifest
    tables: dict[str, int]
    """Rows per table after the restore (with its own audit events)."""
    files: int
    audit: list[audit.AuditReport] = field(default_factory=list)


@contextmanager
def service_stopped(data_dir: Path) -> Iterator[None]:
    """Hold the data folder's lock for the restore; refuse while ``serve`` holds it."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = DataFolderLock(data_dir)
    try:
        lock.acquire()
    except AlreadyRunningError:
        raise BackupError(
            f"`watchkeeper serve` is running on {data_dir} (it holds {lock.path}); stop it "
            "before restoring; nothing was written"
        ) from None
    try:
        yield
    finally:
        lock.release()


def restore(
    archive: Path, settings: Settings, actor: str | None = None, force: bool = False
) -> RestoreReport:
    """Restore ``archive`` into the database and data folder of ``settings``.

    Before anything is written: the key is checked against the backup's (a wrong
    one is :class:`EncryptionKeyError`), the manifest's MAC, every member's size and
    SHA-256, every file's decryption for its row, the schema revision, ``actor`` (an
    active administrator in the backup; None: recorded as the console) and the target
    (refused if it holds data, unless ``force``; refused while ``serve`` runs on it).
    Files are put in place before the database, so that an interrupted restore leaves
    files with no row (swept as unowned), never rows without their files.
    Afterwards the row counts and files are checked against the manifest,
    ``backup.restore`` is recorded in every organisation's audit log, and every chain
    is verified (:class:`AuditError` if one is broken).
    """
    keys = load_key(settings)
    url = database_url(settings)
    kind = "sqlite" if url.startswith("sqlite") else "postgresql"
    with _opened(archive) as tar:
        manifest = _read_manifest(tar, keys)
        _check_restorable(manifest, kind, actor)
        with service_stopped(settings.data_dir):
            where = _holds_data(settings, url)
            if where and not force:
                raise BackupError(
                    f"the target already holds data ({where}); restore into an empty data "
                    "folder and database, or give --force to replace it; nothing was written"
                )
            work = Path(tempfile.mkdtemp(prefix=".restore-", dir=settings.data_dir))
            try:
                staged = _stage(tar, manifest, keys, work)
                _place(staged, manifest, settings, url, keys)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            return _after_restore(manifest, settings, url, keys, actor)


@contextmanager
def _opened(archive: Path) -> Iterator[tarfile.TarFile]:
    try:
        tar = tarfile.open(archive, mode="r:")  # noqa: SIM115 (closed below; its own errors)
    except FileNotFoundError:
        raise BackupError(f"no backup at {archive}") from None
    except (tarfile.TarError, OSError) as exc:
        raise BackupError(f"{archive} is not a readable backup archive: {exc}") from None
    with tar:
        yield tar


def _read_manifest(tar: tarfile.TarFile, keys: KeyRing) -> BackupManifest:
    try:
        member = tar.getmember(MANIFEST)
        handle = tar.extractfile(member) if member.isfile() else None
        if handle is None:
            raise KeyError(MANIFEST)
        data = handle.read()
    except KeyError:
        raise BackupError("the archive has no manifest: not a Watchkeeper backup") from None
    except (tarfile.TarError, OSError) as exc:
        raise BackupError(f"the archive is damaged: {exc}") from None
    return BackupManifest.from_json(data, keys)


def _check_restorable(manifest: BackupManifest, kind: str, actor: str | None) -> None:
    if manifest.database_kind != kind:
        raise BackupError(
            f"the backup holds a {manifest.database_kind} database but the settings name a "
            f"{kind} one; restore into the same kind of database"
        )
    try:
        known = manifest.schema_revision is not None and (
            ScriptDirectory(str(MIGRATIONS)).get_revision(manifest.schema_revision) is not None
        )
    except CommandError:
        known = False
    if not known:
        raise DatabaseError(
            f"the backup's schema ({manifest.schema_revision}) is unknown to this Watchkeeper "
            f"({watchkeeper_version()}); restore with the version that made it "
            f"({manifest.watchkeeper_version}) or a newer one"
        )
    if actor is not None and not any(
        actor in organisation["administrators"] for organisation in manifest.organisations
    ):
        raise BackupError(
            f"{actor!r} is not an active administrator in the backup; name one with --user "
            "(or leave it out: the restore is then recorded as done at the console)"
        )


def _holds_data(settings: Settings, url: str) -> str | None:
    """What the target already holds (None: nothing), without changing it."""
    files_root = settings.data_dir / FILES_FOLDER
    if files_root.is_dir() and any(p.is_file() for p in files_root.rglob("*")):
        return f"files in {files_root}"
    if url.startswith("sqlite"):
        path = Path(make_url(url).database or "")
        if not path.exists():
            return None
        uri = f"{path.absolute().as_uri()}?mode=ro"
        try:
            with closing(sqlite3.connect(uri, uri=True, timeout=30)) as connection:
                names = [
                    name
                    for (name,) in connection.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'table' "
                        "AND name NOT LIKE 'sqlite_%' AND name != 'alembic_version'"
                    )
                ]
                full = [
                    n
                    for n in names
                    if connection.execute(f'SELECT 1 FROM "{n}" LIMIT 1').fetchone()
                ]
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot read the database at {path}: {exc}") from None
        return f"rows in {', '.join(full)} of {path}" if full else None
    engine = _plain_engine(url)
    try:
        with engine.connect() as connection:
            names = [n for n in inspect(connection).get_table_names() if n != "alembic_version"]
            full = [
                n
                for n in names
                if connection.execute(text(f'SELECT 1 FROM "{n}" LIMIT 1')).first() is not None
            ]
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot read the target database: {exc}") from None
    finally:
        engine.dispose()
    return f"rows in {', '.join(full)}" if full else None


@dataclass
class _Staged:
    database: Path
    files: list[tuple[BackedUpFile, Path]]


def _stage(tar: tarfile.TarFile, manifest: BackupManifest, keys: KeyRing, work: Path) -> _Staged:
    """Extract every member to ``work``, checking its size, SHA-256 and (files) that it
    decrypts for its row; the archive must hold nothing else."""
    expected = {MANIFEST, manifest.database_member} | {f.member for f in manifest.files}
    try:
        members = tar.getmembers()
    except (tarfile.TarError, OSError) as exc:
        raise BackupError(f"the archive is damaged: {exc}; nothing was written") from None
    names = [m.name for m in members]
    if len(names) != len(set(names)) or set(names) != expected:
        extra = sorted(set(names) - expected)[:3]
        missing = sorted(expected - set(names))[:3]
        raise BackupError(
            "the archive does not hold what its manifest lists"
            + (f" (not listed: {', '.join(extra)})" if extra else "")
            + (f" (missing: {', '.join(missing)})" if missing else "")
            + "; nothing was written"
        )
    by_name = {m.name: m for m in members}
    database = work / manifest.database_member
    _extract_checked(
        tar, by_name[manifest.database_member], database, manifest.database_size,
        manifest.database_sha256,
    )  # fmt: skip
    files = []
    for number, entry in enumerate(manifest.files):
        target = work / f"file-{number}"
        _extract_checked(tar, by_name[entry.member], target, entry.size, entry.sha256)
        try:
            keys.decrypt(
                target.read_bytes(), EncryptedFiles.context(entry.kind, entry.id, entry.owner)
            )
        except EncryptionKeyError:
            raise BackupError(
                f"{entry.member} in the backup does not decrypt for its row; nothing was written"
            ) from None
        files.append((entry, target))
    return _Staged(database, files)


def _extract_checked(
    tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, size: int, sha256: str
) -> None:
    if not member.isfile():
        raise BackupError(f"{member.name} in the archive is not a file; nothing was written")
    digest = hashlib.sha256()
    written = 0
    try:
        source = tar.extractfile(member)
        assert source is not None
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with source, os.fdopen(descriptor, "wb") as handle:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                written += len(chunk)
                handle.write(chunk)
    except (tarfile.TarError, OSError) as exc:
        raise BackupError(f"cannot read {member.name} from the archive: {exc}") from None
    if written != size or not hmac.compare_digest(digest.hexdigest(), sha256):
        raise BackupError(
            f"{member.name} in the archive does not match its checksum (the archive is "
            "damaged or was altered); nothing was written"
        )


def _place(
    staged: _Staged, manifest: BackupManifest, settings: Settings, url: str, keys: KeyRing
) -> None:
    """Files first, then the database in one step; files the restore added are removed
    again if the database cannot be put in place."""
    files = EncryptedFiles(settings.data_dir / FILES_FOLDER, keys)
    added: list[Path] = []
    try:
        for entry, source in staged.files:
            path = files.path(entry.kind, entry.id)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not path.exists():
                added.append(path)
            os.replace(source, path)
        if manifest.database_kind == "sqlite":
            _place_sqlite(staged.database, Path(make_url(url).database or ""))
        else:
            _place_postgres(staged.database, manifest, url)
    except BaseException:
        for path in added:
            path.unlink(missing_ok=True)
        raise
    # With --force: files of the replaced data that no restored row owns.
    keep = {files.path(entry.kind, entry.id) for entry, _ in staged.files}
    for path in files.all_files():
        if path not in keep:
            path.unlink(missing_ok=True)


def _place_sqlite(database: Path, target: Path) -> None:
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    staged = target.with_name(f".{target.name}.restore-{uuid.uuid4().hex[:8]}")
    shutil.move(database, staged)
    try:
        # A log of the replaced database would be replayed onto the restored one.
        for suffix in ("-wal", "-shm", "-journal"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        os.replace(staged, target)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    _fsync_folder(target.parent)


def _place_postgres(dump: Path, manifest: BackupManifest, url: str) -> None:
    engine = _plain_engine(url)
    try:
        with engine.connect() as connection:
            server = _server_major(connection)
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot reach the target database: {exc}") from None
    made_with = re.search(r"(\d+)", manifest.tool or "")
    needed = max(server, int(made_with.group(1)) if made_with else 0)
    pg_restore, _ = postgres_tool("pg_restore", needed)
    try:
        _run_tool(
            [
                str(pg_restore),
                "--clean",
                "--if-exists",
                "--single-transaction",
                "--exit-on-error",
                "--no-owner",
                "--no-privileges",
                f"--dbname={_libpq_url(engine)}",
                str(dump),
            ],
            engine,
        )
    finally:
        engine.dispose()


def _after_restore(
    manifest: BackupManifest, settings: Settings, url: str, keys: KeyRing, actor: str | None
) -> RestoreReport:
    # The tables the backup counted (at its schema, before any upgrade below).
    engine = create_database_engine(url)
    try:
        with engine.connect() as connection:
            counted = {
                name: int(connection.scalar(text(f'SELECT count(*) FROM "{name}"')) or 0)
                for name in manifest.tables
            }
    except SQLAlchemyError as exc:
        raise BackupError(f"the restored database cannot be read: {exc}") from None
    finally:
        engine.dispose()
    if counted != manifest.tables:
        differ = sorted(name for name in counted if counted[name] != manifest.tables[name])
        raise BackupError(f"the restored database's row counts differ from the backup's: {differ}")
    store = open_store(settings, create=True)  # upgrades a backup of an older schema
    try:
        with store.engine.connect() as connection:
            references = read_contents(connection).references
        if set(references) != {(f.kind, f.id, f.owner) for f in manifest.files}:
            raise BackupError("the restored database's files differ from the backup's manifest")
        for kind, object_id, _ in references:
            if not store.files.path(kind, object_id).is_file():
                raise BackupError(f"{FILES_FOLDER}/{kind}/{object_id} was not restored")
        with store.session() as session:
            organisations = list(session.scalars(select(Organisation).order_by(Organisation.name)))
            for organisation in organisations:
                audit.record(
                    session,
                    keys,
                    organisation.id,
                    actor or CONSOLE,
                    "backup.restore",
                    "backup",
                    manifest.backup_id,
                    backup_created_at=manifest.created_at.isoformat(),
                    **manifest.counts(),
                )
        with store.session() as session:
            reports = [
                audit.verify(session, keys, organisation)
                for organisation in session.scalars(
                    select(Organisation).order_by(Organisation.name)
                )
            ]
        with store.engine.connect() as connection:
            tables = read_contents(connection).tables
    finally:
        store.close()
    broken = [r for r in reports if not r.intact]
    if broken:
        raise AuditError(
            "the data was restored, but the audit log of "
            + ", ".join(f"{r.organisation!r} ({r.problems[0]})" for r in broken)
            + " does not verify"
        )
    return RestoreReport(manifest, tables, len(manifest.files), reports)


__all__ = [
    "BackedUpFile",
    "BackupManifest",
    "RestoreReport",
    "backup",
    "restore",
]
