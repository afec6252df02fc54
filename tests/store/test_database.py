"""Opening the store: SQLite set up for a shop's box, the key checked before any data is
touched, and biometric data and camera credentials never stored in the clear."""

from __future__ import annotations

import base64
import errno
import json
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pydantic import SecretStr
from sqlalchemy import Engine, inspect, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from tests.support.data import MODELS
from tests.support.shop import PostgresServer, Shop, enrol_subject, set_up_shop
from watchkeeper.config import Settings, load_settings
from watchkeeper.errors import DatabaseError, EncryptionKeyError, PolicyError
from watchkeeper.governance import audit
from watchkeeper.governance.alerts import probe_vector, record_alert
from watchkeeper.governance.organisation import add_camera, camera_source
from watchkeeper.governance.subjects import (
    ALERT_CROP,
    FACE_IMAGE,
    searchable_gallery,
    template_vector,
)
from watchkeeper.pipeline import FaceModels
from watchkeeper.store.crypto import encode_key, generate_key, write_key_file
from watchkeeper.store.database import (
    DATABASE_FILE,
    FILES_FOLDER,
    Store,
    create_database_engine,
    database_url,
    file_changes,
    open_store,
    storage_failure,
)
from watchkeeper.store.models import (
    Alert,
    Base,
    Camera,
    FaceImage,
    Organisation,
    Site,
    Template,
)

SQLITE_ONLY = pytest.mark.parametrize("database_url", [None], ids=["sqlite"])
"""Overrides the conftest's parametrised ``database_url`` for SQLite-only checks."""

CAMERA_PASSWORD = "Kx9-very-secret-camera-password-4417"
CAMERA_URL = f"rtsp://admin:{CAMERA_PASSWORD}@10.20.30.40:554/Streaming/Channels/101"

JPEG_MAGIC = b"\xff\xd8\xff"


def dump_rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (the migration record included), in a stable order."""
    dump: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as connection:
        for table in sorted(inspect(connection).get_table_names()):
            rows = connection.execute(text(f'SELECT * FROM "{table}"')).all()
            dump[table] = sorted((tuple(row) for row in rows), key=repr)
    return dump


def dump_of(settings: Settings) -> dict[str, list[tuple[Any, ...]]]:
    """The rows as read through a fresh engine (no key involved)."""
    engine = create_database_engine(database_url(settings))
    try:
        return dump_rows(engine)
    finally:
        engine.dispose()


def stored_values(engine: Engine) -> list[bytes]:
    """Every non-null cell of every table as bytes (text as UTF-8, JSON as its text)."""
    values: list[bytes] = []
    for rows in dump_rows(engine).values():
        for row in rows:
            for value in row:
                if value is None:
                    continue
                if isinstance(value, bytes | bytearray | memoryview):
                    values.append(bytes(value))
                elif isinstance(value, dict | list):
                    values.append(json.dumps(value).encode())
                else:
                    values.append(str(value).encode())
    return values


def file_states(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Each file under ``folder``: its bytes and modification time."""
    return {
        str(path.relative_to(folder)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def database_bytes(settings: Settings) -> bytes:
    """The SQLite database and its WAL and shared-memory files, as they are on disk."""
    return b"".join(
        path.read_bytes()
        for path in sorted(settings.data_dir.glob(f"{DATABASE_FILE}*"))
        if path.is_file()
    )


def populate(shop: Shop, face_models: FaceModels) -> uuid.UUID:
    """An approved entry (two photos) and one alert on it; return the entry's id."""
    subject_id = enrol_subject(shop, face_models, "Joseph_Biden", photos=2)
    with shop.tx() as tx:
        record_alert(
            tx.session,
            shop.store,
            tx.camera,
            subject_id,
            score=0.71,
            threshold=0.6,
            model_id=face_models.embedder.model_id,
            probe=unit_vector(seed=3),
            crop=np.full((96, 96, 3), 120, np.uint8),
        )
    return subject_id


def unit_vector(seed: int, dim: int = 128) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


# --- SQLite set-up ----------------------------------------------------------------------


@SQLITE_ONLY
def test_sqlite_runs_in_wal_mode_with_foreign_keys_enforced(
    store: Store, store_settings: Settings
) -> None:
    """WAL lets a scan write alerts while staff read; foreign keys are off by default in
    SQLite and must be switched on for every connection."""
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    # WAL is a property of the file: any other process opening it sees it too.
    raw = sqlite3.connect(store_settings.data_dir / DATABASE_FILE)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()


def add_site_of_no_organisation(store: Store) -> None:
    with store.session() as session:
        session.add(Site(organisation_id=uuid.uuid4(), name="Nowhere"))
        session.flush()


def test_foreign_keys_are_enforced(store: Store) -> None:
    """A row pointing at a missing organisation is refused on both databases."""
    with pytest.raises(IntegrityError):
        add_site_of_no_organisation(store)
    with store.session() as session:
        assert session.scalars(select(Site)).all() == []


# --- the key ----------------------------------------------------------------------------


@pytest.mark.parametrize("create", [False, True], ids=["open", "init-again"])
def test_a_wrong_key_is_refused_before_any_data_is_touched(
    store: Store, store_settings: Settings, face_models: FaceModels, create: bool
) -> None:
    """Neither opening nor re-initialising with another key reads or changes anything:
    every row and (on SQLite) every file in the data folder is as it was."""
    populate(set_up_shop(store), face_models)
    store.close()
    rows_before = dump_of(store_settings)
    files_before = file_states(store_settings.data_dir)
    assert any(name.startswith(FILES_FOLDER) for name in files_before)

    wrong = store_settings.model_copy(update={"key": SecretStr(encode_key(generate_key()))})
    with pytest.raises(EncryptionKeyError, match=r"does not match this database"):
        open_store(wrong, create=create)

    assert file_states(store_settings.data_dir) == files_before
    assert dump_of(store_settings) == rows_before
    reopened = open_store(store_settings)
    try:
        with reopened.session() as session:
            organisation = session.scalars(select(Organisation)).one()
            assert audit.verify(session, reopened.keys, organisation).intact
    finally:
        reopened.close()


def test_a_wrong_key_in_the_key_file_is_refused(
    store: Store, store_settings: Settings, tmp_path: Path
) -> None:
    set_up_shop(store)
    store.close()
    key_file = tmp_path / "config" / "key"
    write_key_file(key_file, generate_key())
    from_file = store_settings.model_copy(update={"key": None, "key_file": key_file})
    with pytest.raises(EncryptionKeyError, match=r"does not match this database"):
        open_store(from_file)


def test_the_right_key_from_the_key_file_opens_the_store(
    store_settings: Settings, tmp_path: Path
) -> None:
    key_file = tmp_path / "config" / "key"
    master = generate_key()
    write_key_file(key_file, master)
    from_file = store_settings.model_copy(update={"key": None, "key_file": key_file})
    opened = open_store(from_file, create=True)
    try:
        set_up_shop(opened)
    finally:
        opened.close()
    again = open_store(from_file)
    again.close()
    with pytest.raises(EncryptionKeyError):
        open_store(store_settings)  # the fixture's own (different) key


@pytest.mark.parametrize("create", [False, True], ids=["open", "init"])
def test_a_missing_key_file_is_named_and_nothing_is_created(
    store_settings: Settings, tmp_path: Path, create: bool
) -> None:
    missing = tmp_path / "config" / "watchkeeper" / "key"
    settings = store_settings.model_copy(update={"key": None, "key_file": missing})
    with pytest.raises(EncryptionKeyError) as error:
        open_store(settings, create=create)
    assert str(missing) in str(error.value)
    assert not missing.exists()
    assert not settings.data_dir.exists()


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("not a key!", r"WATCHKEEPER_KEY is not base64"),
        (base64.b64encode(bytes(16)).decode(), r"WATCHKEEPER_KEY must be 32 bytes, not 16"),
    ],
    ids=["not-base64", "short"],
)
def test_a_malformed_key_setting_is_refused(
    store_settings: Settings, key: str, message: str
) -> None:
    settings = store_settings.model_copy(update={"key": SecretStr(key)})
    with pytest.raises(EncryptionKeyError, match=message):
        open_store(settings, create=True)


# --- the schema -------------------------------------------------------------------------


@pytest.fixture
def blank_settings(
    tmp_path: Path, request: pytest.FixtureRequest, database_url: str | None
) -> Settings:
    """Settings for a database that exists but was never initialised (an empty SQLite
    folder, or an empty PostgreSQL database)."""
    url = None
    if database_url is not None:
        server: PostgresServer = request.getfixturevalue("postgres")
        name = f"blank_{uuid.uuid4().hex[:12]}"
        admin = create_database_engine(server.base_url).execution_options(
            isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name}"))
        admin.dispose()
        url = server.url(name)
    return load_settings(
        models_dir=MODELS,
        data_dir=tmp_path / "blank",
        database_url=url,
        key=encode_key(generate_key()),
    )


def test_an_uninitialised_database_asks_for_init(blank_settings: Settings) -> None:
    with pytest.raises(DatabaseError, match=r"not initialised.*run `watchkeeper init`"):
        open_store(blank_settings)
    opened = open_store(blank_settings, create=True)
    opened.close()
    open_store(blank_settings).close()


def test_a_database_at_another_schema_asks_for_init(store: Store, store_settings: Settings) -> None:
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    store.close()
    with pytest.raises(DatabaseError, match=r"run `watchkeeper init`"):
        open_store(store_settings)


def test_the_database_password_is_not_shown_in_errors(tmp_path: Path) -> None:
    settings = load_settings(
        models_dir=MODELS,
        data_dir=tmp_path / "data",
        database_url="postgresql+psycopg://wk:Hunter2-db-secret@127.0.0.1:1/watchkeeper",
        key=encode_key(generate_key()),
    )
    with pytest.raises(DatabaseError) as error:
        open_store(settings)
    assert "Hunter2-db-secret" not in str(error.value)


# --- nothing biometric or secret in the clear --------------------------------------------


def test_templates_probes_and_camera_urls_are_not_stored_in_the_clear(
    shop: Shop, store_settings: Settings, face_models: FaceModels
) -> None:
    store = shop.store
    with shop.tx() as tx:
        camera = add_camera(
            tx.session, store.keys, tx.organisation, tx.user("alice"), tx.site, "till", CAMERA_URL
        )
        camera_id = camera.id
    populate(shop, face_models)

    with store.session() as session:
        vectors = [
            template_vector(store.keys, t, t.image.subject_id)
            for t in session.scalars(select(Template))
        ]
        probes = [probe_vector(store, a) for a in session.scalars(select(Alert))]
        camera = session.get_one(Camera, camera_id)
        assert camera_source(store.keys, camera) == CAMERA_URL
        assert CAMERA_PASSWORD not in camera.source_display
        assert "***" in camera.source_display
    assert len(vectors) == 2
    assert len(probes) == 1
    assert all(v.dtype == np.float32 and v.size == 128 for v in [*vectors, *probes])

    secrets: list[bytes] = [CAMERA_PASSWORD.encode(), CAMERA_URL.encode()]
    for vector in [*vectors, *probes]:
        raw = vector.tobytes()
        secrets += [raw[i : i + 16] for i in range(0, len(raw), 16)]
        secrets += [raw.hex().encode()[:64], base64.b64encode(raw)[:64]]
        secrets.append(json.dumps([round(float(x), 6) for x in vector[:4]])[1:-1].encode())

    cells = stored_values(store.engine)
    for secret in secrets:
        assert not any(secret in cell for cell in cells), secret
    if store_settings.database_url is None:
        on_disk = database_bytes(store_settings)
        store.close()
        on_disk += database_bytes(store_settings)
        for secret in secrets[:-1]:  # the decimal text is only a risk in JSON columns
            assert secret not in on_disk, secret


def test_face_images_and_snapshots_are_encrypted_files(shop: Shop, face_models: FaceModels) -> None:
    """No JPEG on disk; each file decrypts (with its own id) to the image its row describes."""
    store = shop.store
    populate(shop, face_models)
    with store.session() as session:
        images = session.scalars(select(FaceImage)).all()
        alerts = session.scalars(select(Alert)).all()
    files = list(store.files.all_files())
    assert sorted(files) == sorted(
        [store.files.path(FACE_IMAGE, i.id) for i in images]
        + [store.files.path(ALERT_CROP, a.id) for a in alerts]
    )
    for path in files:
        content = path.read_bytes()
        assert not content.startswith(JPEG_MAGIC), path
        assert b"JFIF" not in content
        assert b"Exif" not in content
    for image in images:
        plain = store.files.read(FACE_IMAGE, image.id, image.subject_id)
        assert plain.startswith(JPEG_MAGIC)
        decoded = cv2.imdecode(np.frombuffer(plain, np.uint8), cv2.IMREAD_COLOR)
        assert decoded is not None
        assert decoded.shape[:2] == (image.height, image.width)
    crop = store.files.read(ALERT_CROP, alerts[0].id, alerts[0].subject_id)
    assert cv2.imdecode(np.frombuffer(crop, np.uint8), cv2.IMREAD_COLOR).shape == (96, 96, 3)


def test_an_encrypted_file_cannot_be_read_as_another_row(
    shop: Shop, face_models: FaceModels
) -> None:
    """A photo copied over another entry's file does not decrypt: each is bound to its id."""
    store = shop.store
    enrol_subject(shop, face_models, "Joseph_Biden", photos=2)
    with store.session() as session:
        first, second = session.scalars(select(FaceImage.id)).all()
        owner = session.get_one(FaceImage, first).subject_id
    store.files.path(FACE_IMAGE, second).write_bytes(
        store.files.path(FACE_IMAGE, first).read_bytes()
    )
    with pytest.raises(EncryptionKeyError):
        store.files.read(FACE_IMAGE, second, owner)
    assert store.files.read(FACE_IMAGE, first, owner).startswith(JPEG_MAGIC)


def fail_after(store: Store, change: Callable[[Session], None]) -> None:
    """Make ``change`` in a transaction that then fails."""
    with store.session() as session:
        change(session)
        for kind, object_id in file_changes(session).written:
            assert store.files.path(kind, object_id).exists()
        raise RuntimeError("boom")


OWNER = uuid.uuid4()
"""The entry that files written directly by these tests belong to."""


def test_a_failed_transaction_removes_the_files_it_wrote(store: Store) -> None:
    """Store.session(): written files follow a rollback; removed files go only after commit."""
    kept = uuid.uuid4()
    with store.session() as session:
        store.write_file(session, FACE_IMAGE, kept, b"kept", OWNER)
    written = uuid.uuid4()
    with pytest.raises(RuntimeError, match="boom"):
        fail_after(
            store, lambda session: store.write_file(session, FACE_IMAGE, written, b"x", OWNER)
        )
    assert not store.files.path(FACE_IMAGE, written).exists()

    with pytest.raises(RuntimeError, match="boom"):
        fail_after(store, lambda session: store.remove_file(session, FACE_IMAGE, kept))
    assert store.files.read(FACE_IMAGE, kept, OWNER) == b"kept"
    with store.session() as session:
        store.remove_file(session, FACE_IMAGE, kept)
        assert store.files.path(FACE_IMAGE, kept).exists()
    assert not store.files.path(FACE_IMAGE, kept).exists()


def test_a_template_moved_to_another_entry_is_detected(shop: Shop, face_models: FaceModels) -> None:
    """Someone with write access to the database (but not the key) moves one entry's
    photo, with its template, to another entry: searching must not attribute it there."""
    store = shop.store
    first = enrol_subject(shop, face_models, "Joseph_Biden")
    second = enrol_subject(shop, face_models, "Donald_Trump")
    with store.engine.begin() as connection:
        connection.execute(
            update(FaceImage).where(FaceImage.subject_id == first).values(subject_id=second)
        )
    with store.session() as session:
        try:
            gallery = searchable_gallery(
                session,
                store.keys,
                shop.organisation_id,
                shop.site_id,
                face_models.embedder.model_id,
            )
        except EncryptionKeyError:
            return
    assert gallery.labels.count(str(second)) == 1, "a moved template searches as another entry"


def test_the_migrations_build_exactly_the_schema_of_the_models(store: Store) -> None:
    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


@pytest.mark.parametrize(
    ("failure", "disk_full", "reason"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), True, "disk full"),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), True, "disk full"),
        (
            OperationalError("COMMIT", {}, sqlite3.OperationalError("database or disk is full")),
            True,
            "disk full: database or disk is full",
        ),
        (
            OperationalError("INSERT", {}, Exception("could not extend file: No space left")),
            True,
            "disk full",
        ),
        (
            OperationalError("COMMIT", {}, sqlite3.OperationalError("database is locked")),
            False,
            "the database refused the change: database is locked",
        ),
        (OSError(errno.ENAMETOOLONG, "File name too long"), None, None),
        (ValueError("a bug"), None, None),
    ],
)
def test_storage_failures_are_told_apart(
    failure: BaseException, disk_full: bool | None, reason: str | None
) -> None:
    """What the web app answers 507 (disk full) or 503 with, and the command line reports:
    only failures to store, never a programming error."""
    refusal = storage_failure(failure)
    if disk_full is None:
        assert refusal is None
        return
    assert refusal is not None
    assert refusal.disk_full is disk_full
    assert reason in str(refusal)


@pytest.mark.parametrize(
    ("field", "value", "refusal"),
    [
        ("description", "x" * 10_001, "incident description is too long: 10,001 characters"),
        ("police_reference", "P" * 101, "incident police reference is too long"),
        ("description", "nul\x00inside", "incident description contains a NUL character"),
    ],
)
def test_text_that_does_not_fit_its_column_is_refused_on_every_database(
    shop: Shop, field: str, value: str, refusal: str
) -> None:
    """SQLite does not enforce column lengths and PostgreSQL answers with a driver error:
    the store refuses both alike, naming the field, before anything is written."""
    with pytest.raises(PolicyError, match=refusal), shop.tx() as tx:
        setattr(tx.incident, field, value)
    with shop.tx() as tx:
        assert getattr(tx.incident, field) != value
