"""Backups that restore: the database and the encrypted files, consistent while cameras
store alerts, in one archive without the key; restored only with the right key, from an
unaltered archive, into an empty target, with an audit chain that verifies."""

from __future__ import annotations

import base64
import fcntl
import io
import json
import tarfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from tests.support.cli import Run, Sandbox, one_line_error
from tests.support.data import DEBATE
from tests.support.rtsp_server import RtspServer
from tests.support.shop import Shop, Sighting, enrol_subject, record_sighting
from watchkeeper.config import Settings
from watchkeeper.errors import BackupError, EncryptionKeyError, PolicyError
from watchkeeper.governance import audit
from watchkeeper.governance.organisation import add_camera, update_camera
from watchkeeper.governance.subjects import ALERT_CROP, FACE_IMAGE, delete_alerts
from watchkeeper.pipeline import FaceModels
from watchkeeper.service import backup as backups
from watchkeeper.service.backup import MANIFEST, BackupManifest, backup, read_contents, restore
from watchkeeper.service.supervisor import Supervisor
from watchkeeper.store.crypto import encode_key, generate_key
from watchkeeper.store.database import Store, open_store
from watchkeeper.store.models import Alert, AuditEvent, Base, FaceImage, Organisation, Subject

SQLITE_ONLY = pytest.mark.parametrize("database_url", [None], ids=["sqlite"])
"""The archive checks do not depend on the database; the round trip runs on both."""


@pytest.fixture
def target(tmp_path: Path, store_settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """An empty place to restore into: a fresh data folder, and (PostgreSQL) a fresh
    database of the same server; the same key."""
    url = None
    if store_settings.database_url:
        url = request.getfixturevalue("postgres").new_database()
    return store_settings.model_copy(
        update={"data_dir": tmp_path / "restored", "database_url": url}
    )


def stock(shop: Shop, face_models: FaceModels, sightings: Callable[[str, int], Sighting]) -> None:
    """An approved entry with two photos and three alerts, each with its snapshot."""
    subject = enrol_subject(shop, face_models, "Joseph_Biden", photos=2)
    with shop.tx() as tx:
        for index in (0, 2, 3):
            assert record_sighting(
                tx.session, shop, tx.camera, subject, sightings("Joseph_Biden", index)
            )


def table_rows(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table but the audit log and its head (which the backup and the
    restore each extend by one event)."""
    with store.engine.connect() as connection:
        return {
            table.name: sorted(map(tuple, connection.execute(select(table))), key=repr)
            for table in Base.metadata.sorted_tables
            if table.name not in {"audit_event", "organisation"}
        }


def audit_events(store: Store) -> list[tuple[Any, ...]]:
    with store.session() as session:
        return [
            (e.sequence, e.actor, e.action, e.object_id, e.mac)
            for e in session.scalars(select(AuditEvent).order_by(AuditEvent.sequence))
        ]


def owned_files(store: Store) -> dict[tuple[str, uuid.UUID], bytes]:
    """Every photo and snapshot a row refers to, decrypted."""
    with store.session() as session:
        owners = [
            (FACE_IMAGE, image_id, owner)
            for image_id, owner in session.execute(select(FaceImage.id, FaceImage.subject_id))
        ] + [
            (ALERT_CROP, alert_id, owner)
            for alert_id, owner in session.execute(select(Alert.id, Alert.subject_id))
        ]
    return {(kind, i): store.files.read(kind, i, owner) for kind, i, owner in owners}


def chains_verify(store: Store) -> list[audit.AuditReport]:
    with store.session() as session:
        reports = [
            audit.verify(session, store.keys, o) for o in session.scalars(select(Organisation))
        ]
    assert reports
    assert all(r.intact for r in reports), [r.problems for r in reports]
    return reports


def nothing_in(folder: Path) -> bool:
    """No database, no file: ``folder`` does not exist or holds at most the serve lock."""
    return not folder.exists() or {p.name for p in folder.rglob("*")} <= {backups.SERVE_LOCK}


# -- the round trip ----------------------------------------------------------------------------


def test_a_backup_restores_into_an_empty_target_with_the_same_rows_files_and_audit_chain(
    shop: Shop,
    store_settings: Settings,
    target: Settings,
    face_models: FaceModels,
    sightings: Callable[[str, int], Sighting],
    tmp_path: Path,
) -> None:
    stock(shop, face_models, sightings)
    out = tmp_path / "shop.tar"
    manifest = backup(shop.store, out, "alice")

    assert out.stat().st_mode & 0o777 == 0o600, "the archive holds labels and reasons"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "no leftovers"
    assert manifest.tables["alert"] == 3
    assert manifest.tables["face_image"] == 2
    assert len(manifest.files) == 5
    with tarfile.open(out) as tar:
        names = tar.getnames()
    assert set(names) == {MANIFEST, manifest.database_member} | {f.member for f in manifest.files}

    report = restore(out, target, actor="alice")

    restored = open_store(target)
    try:
        assert table_rows(restored) == table_rows(shop.store)
        assert owned_files(restored) == owned_files(shop.store)
        assert len(owned_files(restored)) == 5
        live_events, restored_events = audit_events(shop.store), audit_events(restored)
        events = manifest.tables["audit_event"]
        assert restored_events[:events] == live_events[:events]
        assert live_events[events][2] == "backup.create", "recorded live, after the copy"
        assert len(live_events) == events + 1
        assert restored_events[events][1:3] == ("alice", "backup.restore")
        assert len(restored_events) == events + 1
        assert [r.events for r in chains_verify(restored)] == [events + 1]
        assert [r.events for r in report.audit] == [events + 1]
        assert report.tables == manifest.tables | {"audit_event": events + 1}
        assert report.files == 5
    finally:
        restored.close()

    # The key is in neither form anywhere in the archive.
    assert store_settings.key is not None
    key_text = store_settings.key.get_secret_value()
    archive = out.read_bytes()
    assert key_text.encode() not in archive
    assert base64.b64decode(key_text) not in archive
    assert (
        json.loads(read_member(out, MANIFEST))["key_check"] == shop.store.keys.check_value().hex()
    )


def read_member(archive: Path, name: str) -> bytes:
    with tarfile.open(archive) as tar:
        handle = tar.extractfile(name)
        assert handle is not None
        return handle.read()


# -- what a backup refuses ---------------------------------------------------------------------


@SQLITE_ONLY
def test_a_backup_is_taken_again_when_a_file_is_deleted_under_it_and_never_written_without_one(
    shop: Shop,
    face_models: FaceModels,
    sightings: Callable[[str, int], Sighting],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An alert purged between the database copy and the file copy: the first attempt
    finds its snapshot gone and the backup is taken again, without that alert. A file
    that stays missing fails the backup; nothing appears under the archive's name."""
    stock(shop, face_models, sightings)
    with shop.tx() as tx:
        first = tx.session.scalars(select(Alert.id).order_by(Alert.occurred_at)).first()
    snapshots = []

    def purge_one(store: Store) -> None:
        snapshots.append(len(snapshots))
        if len(snapshots) == 1:
            with store.session() as session:
                delete_alerts(session, store, [first])

    monkeypatch.setattr(backups, "after_snapshot", purge_one)
    manifest = backup(shop.store, tmp_path / "one.tar", "alice")
    assert len(snapshots) == 2, "taken again"
    assert manifest.tables["alert"] == 2
    assert str(first) not in {str(f.id) for f in manifest.files}

    with shop.tx() as tx:
        lost = tx.session.scalars(select(Alert.id)).first()
    monkeypatch.setattr(
        backups, "after_snapshot", lambda store: store.files.delete(ALERT_CROP, lost)
    )
    with pytest.raises(BackupError, match=f"files/alert-crop/{lost}.*missing in 2 attempts"):
        backup(shop.store, tmp_path / "two.tar", "alice")
    assert sorted(p.name for p in tmp_path.iterdir() if "tar" in p.name) == ["one.tar"]


@SQLITE_ONLY
def test_a_backup_never_overwrites_and_needs_an_administrator(shop: Shop, tmp_path: Path) -> None:
    out = tmp_path / "taken.tar"
    out.write_bytes(b"an earlier backup")
    with pytest.raises(BackupError, match="already exists"):
        backup(shop.store, out, "alice")
    assert out.read_bytes() == b"an earlier backup"
    with pytest.raises(PolicyError, match="may not manage"):
        backup(shop.store, tmp_path / "by-carol.tar", "carol")
    assert not (tmp_path / "by-carol.tar").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "taken.tar"], "no leftovers"


# -- what a restore refuses --------------------------------------------------------------------


@pytest.fixture
def archive(
    shop: Shop,
    face_models: FaceModels,
    sightings: Callable[[str, int], Sighting],
    tmp_path: Path,
) -> Path:
    stock(shop, face_models, sightings)
    out = tmp_path / "shop.tar"
    backup(shop.store, out, "alice")
    return out


@SQLITE_ONLY
def test_a_restore_with_another_key_stops_before_writing_anything(
    archive: Path, target: Settings
) -> None:
    other = target.model_copy(update={"key": SecretStr(encode_key(generate_key()))})
    with pytest.raises(EncryptionKeyError, match="not the one this backup was made with") as info:
        restore(archive, other)
    assert info.value.exit_code == 8
    assert not target.data_dir.exists()


def flip_byte(archive: Path, member: str, at: int = 0) -> None:
    with tarfile.open(archive) as tar:
        offset = tar.getmember(member).offset_data + at
    with archive.open("r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0x01]))


@SQLITE_ONLY
def test_an_altered_archive_is_refused_before_anything_is_written(
    archive: Path, shop: Shop, target: Settings
) -> None:
    manifest = BackupManifest.from_json(read_member(archive, MANIFEST), shop.store.keys)
    snapshot = next(f for f in manifest.files if f.kind == ALERT_CROP)
    pristine = archive.read_bytes()

    flip_byte(archive, snapshot.member, at=snapshot.size // 2)
    with pytest.raises(BackupError, match=f"{snapshot.member} .* does not match its checksum"):
        restore(archive, target)
    assert nothing_in(target.data_dir)

    archive.write_bytes(pristine)
    flip_byte(archive, manifest.database_member, at=4096)
    with pytest.raises(BackupError, match=r"database\.sqlite .* does not match its checksum"):
        restore(archive, target)
    assert nothing_in(target.data_dir)

    # Rewriting the manifest to match an altered file needs the key.
    archive.write_bytes(pristine)
    document = json.loads(read_member(archive, MANIFEST))
    document["files"][0]["sha256"] = "0" * 64
    replace_member(archive, MANIFEST, json.dumps(document).encode())
    with pytest.raises(BackupError, match="manifest was altered"):
        restore(archive, target)
    assert nothing_in(target.data_dir)


def replace_member(archive: Path, name: str, data: bytes) -> None:
    """Write ``archive`` again with ``name`` holding ``data``."""
    with tarfile.open(archive) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]
    with tarfile.open(archive, "w") as tar:
        for member, content in members:
            if member.name == name:
                content = data
                member.size = len(data)
            tar.addfile(member, io.BytesIO(content))


@SQLITE_ONLY
def test_a_restore_into_a_target_that_holds_data_needs_force_and_then_replaces_it(
    archive: Path,
    shop: Shop,
    target: Settings,
    face_models: FaceModels,
    sightings: Callable[[str, int], Sighting],
) -> None:
    restore(archive, target)
    # The restored shop goes on: a new alert, with its snapshot.
    restored = open_store(target)
    try:
        later = Shop(restored, shop.organisation_id, shop.site_id, shop.camera_id, shop.incident_id)
        with later.tx() as tx:
            subject_id = tx.session.scalars(select(Subject.id)).one()
            seen = sightings("Joseph_Biden", 4)
            added = record_sighting(tx.session, later, tx.camera, subject_id, seen)
            assert added is not None
            added_id = added.id
        before = audit_events(restored)
    finally:
        restored.close()

    with pytest.raises(BackupError, match=r"already holds data.*--force"):
        restore(archive, target)
    restored = open_store(target)
    try:
        assert audit_events(restored) == before, "refused: nothing changed"
    finally:
        restored.close()

    report = restore(archive, target, force=True)
    restored = open_store(target)
    try:
        assert (ALERT_CROP, added_id) not in owned_files(restored)
        assert not restored.files.path(ALERT_CROP, added_id).exists(), "its file went too"
        assert owned_files(restored) == owned_files(shop.store)
        chains_verify(restored)
        assert audit_events(restored)[-1][1:3] == ("console", "backup.restore")
    finally:
        restored.close()
    assert report.tables["alert"] == 3


@SQLITE_ONLY
def test_a_restore_is_refused_while_serve_holds_the_data_folder(
    archive: Path, target: Settings
) -> None:
    target.data_dir.mkdir(parents=True)
    with (target.data_dir / backups.SERVE_LOCK).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(BackupError, match="`watchkeeper serve` is running"):
            restore(archive, target)
    assert nothing_in(target.data_dir)
    restore(archive, target)  # once it has stopped


@SQLITE_ONLY
def test_a_restore_names_an_administrator_of_the_backup_or_none(
    archive: Path, target: Settings
) -> None:
    with pytest.raises(BackupError, match="'dave' is not an active administrator"):
        restore(archive, target, actor="dave")
    assert nothing_in(target.data_dir)


# -- the command line --------------------------------------------------------------------------


def ok(run: Run) -> Run:
    assert run.code == 0, run.stderr
    return run


def test_backup_and_restore_commands_round_trip_and_refuse_with_their_exit_codes(
    sandbox: Sandbox,
) -> None:
    live = {"WATCHKEEPER_DATA_DIR": str(sandbox.root / "live")}
    elsewhere = {"WATCHKEEPER_DATA_DIR": str(sandbox.root / "elsewhere")}
    ok(sandbox.run("init", "--organisation", "Corner Shops", "--admin", "alice", **live))
    ok(sandbox.run("sites", "add", "Leeds", "--user", "alice", **live))

    made = ok(sandbox.run("backup", "shop.tar", "--user", "alice", "--json", **live))
    assert json.loads(made.stdout)["organisations"] == 1
    again = sandbox.run("backup", "shop.tar", "--user", "alice", **live)
    assert again.code == 13
    assert "already exists" in one_line_error(again)

    wrong = sandbox.run(
        "restore", "shop.tar", WATCHKEEPER_KEY=encode_key(generate_key()), **elsewhere
    )
    assert wrong.code == 8, wrong.stderr
    assert "not the one this backup was made with" in one_line_error(wrong)
    assert not (sandbox.root / "elsewhere").exists()

    done = ok(sandbox.run("restore", "shop.tar", "--user", "alice", **elsewhere))
    assert "Corner Shops: 4 audit events, chain intact" in done.stderr
    ok(sandbox.run("audit", "verify", **elsewhere))
    sites = ok(sandbox.run("sites", "list", "--json", "--user", "alice", **elsewhere))
    assert [s["name"] for s in json.loads(sites.stdout)] == ["Leeds"]
    refused = sandbox.run("restore", "shop.tar", **elsewhere)
    assert refused.code == 13
    assert "already holds data" in one_line_error(refused)
    archive = (sandbox.cwd / "shop.tar").read_bytes()
    key = (sandbox.root / "home" / ".config" / "watchkeeper" / "key").read_text().strip()
    assert key.encode() not in archive
    assert base64.b64decode(key) not in archive


# -- the must-show: a backup while a camera is matching ---------------------------------


def test_a_backup_taken_while_a_camera_stores_alerts_restores_with_every_alert_and_file(
    shop: Shop,
    store_settings: Settings,
    target: Settings,
    face_models: FaceModels,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real camera worker matches Biden on a looping RTSP stream and stores alerts
    throughout. Each attempt of the backup copies the database, then waits there until
    the camera has stored another alert (snapshot written, row committed, after the
    copy) before copying the files; during the first, an older alert is also deleted
    with its snapshot (as the retention sweep does), so that attempt finds a file gone
    and the backup is taken again. The restored database holds exactly the manifest's
    alerts, each with its snapshot, the same entries, and an audit chain that verifies."""
    subject = enrol_subject(shop, face_models, "Joseph_Biden", photos=3)

    def alert_ids() -> list[uuid.UUID]:
        with shop.store.session() as session:
            return list(session.scalars(select(Alert.id).order_by(Alert.occurred_at)))

    def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.2)

    stored_during: list[int] = []
    purged: list[uuid.UUID] = []

    def camera_keeps_storing(store: Store) -> None:
        at_copy = set(alert_ids())
        if not purged:
            purged.append(min(at_copy, key=alert_ids().index))
            with store.session() as session:
                delete_alerts(session, store, purged)
        wait_until(lambda: set(alert_ids()) - at_copy, 120, "an alert stored mid-backup")
        stored_during.append(len(set(alert_ids()) - at_copy))

    with RtspServer(DEBATE, loop=True) as server:
        with shop.tx() as tx:
            alice = tx.user("alice")
            keys = shop.store.keys
            add_camera(tx.session, keys, tx.organisation, alice, tx.site, "till", server.url)
            update_camera(tx.session, keys, tx.organisation, alice, tx.camera, enabled=False)
        supervisor = Supervisor(store_settings, shop.store)
        supervisor.start(actor="alice")
        try:
            wait_until(lambda: len(alert_ids()) >= 2, 180, "alerts from the till camera")
            monkeypatch.setattr(backups, "after_snapshot", camera_keeps_storing)
            manifest = backup(shop.store, tmp_path / "live.tar", "alice")
        finally:
            supervisor.stop(actor="alice")

    assert len(stored_during) == 2, "the first attempt found a snapshot gone: taken again"
    assert min(stored_during) >= 1, "the camera stored alerts while each attempt ran"
    live_alerts = set(alert_ids())
    listed = {f.id for f in manifest.files if f.kind == ALERT_CROP}
    assert len(listed) == manifest.tables["alert"] >= 2
    assert purged[0] not in listed
    assert listed < live_alerts, "alerts stored after the copy are not in the backup"
    snapshots_on_disk = {p.name for p in (shop.store.files.root / ALERT_CROP).iterdir()}
    assert {str(i) for i in live_alerts} <= snapshots_on_disk

    report = restore(tmp_path / "live.tar", target, actor="alice")
    restored = open_store(target)
    try:
        with restored.engine.connect() as connection:
            contents = read_contents(connection)
        assert {i for kind, i, _ in contents.references if kind == ALERT_CROP} == listed
        for name in ("alert", "subject", "face_image", "template", "incident", "camera"):
            assert contents.tables[name] == manifest.tables[name], name
        assert contents.tables["audit_event"] == manifest.tables["audit_event"] + 1
        files = owned_files(restored)
        assert {i for kind, i in files if kind == ALERT_CROP} == listed, "each has its snapshot"
        assert len(files) == len(manifest.files) == report.files
        live = owned_files(shop.store)
        assert all(files[key] == live[key] for key in files), "the same snapshots and photos"
        rows, live_rows = table_rows(restored), table_rows(shop.store)
        assert rows["subject"] == live_rows["subject"]
        assert rows["face_image"] == live_rows["face_image"]
        assert all(row in live_rows["alert"] for row in rows["alert"]), "the same alerts"
        assert {row[3] for row in rows["alert"]} == {subject}
        chains_verify(restored)
    finally:
        restored.close()
