"""The stored watchlist as staff run it: `watchkeeper` in a separate process with its own
home, temp and working folders, over a real SQLite file (and once PostgreSQL), real
photos and the shared clips. Every file the commands write is looked at."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import sqlite3
import stat
import uuid
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import pytest

from tests.support.cli import Run, Sandbox, one_line_error
from tests.support.data import CORRIDOR, CROWD, DEBATE, STAGE, lfw_photos
from tests.support.shop import PostgresServer
from watchkeeper.store.crypto import encode_key, generate_key

DATA = Path("home/.local/share/watchkeeper")
"""The data folder inside a sandbox (XDG_DATA_HOME/watchkeeper)."""
KEY = Path("home/.config/watchkeeper/key")
"""The key file inside a sandbox (~/.config/watchkeeper/key)."""
DB = DATA / "watchkeeper.db"
FACE_IMAGES = DATA / "files" / "face-image"
ALERT_CROPS = DATA / "files" / "alert-crop"

PASSWORD = "Door-Cam-s3cret-42"
CAMERA_URL = f"rtsp://door:{PASSWORD}@10.0.0.9:554/stream1"
MASKED_URL = "rtsp://door:***@10.0.0.9:554/stream1"

BIDEN_PHOTOS = [p for p in lfw_photos("Joseph_Biden") if p.name != "Joseph_Biden_0002.jpg"][:3]
TWO_FACES = lfw_photos("Joseph_Biden")[1]
TRUMP_PHOTO = lfw_photos("Donald_Trump")[0]

STAFF = {
    "bob": "reporter",
    "carol": "manager",
    "dave": "reviewer",
    "erin": "reviewer",
    "frank": "auditor",
}
TABLES = {
    "alembic_version",
    "organisation",
    "site",
    "camera",
    "app_user",
    "user_site",
    "incident",
    "subject",
    "subject_incident",
    "subject_site",
    "face_image",
    "template",
    "alert",
    "review",
    "audit_event",
    "login_session",
    "api_token",
    "notification_outbox",
    "estate_device",
    "estate_probe",
    "estate_finding",
    "estate_sensitive_site",
    "sign_in_throttle",
    "watchlist_change",
    "edge",
}
AUDIT_HEAD = {"audit_count", "audit_head", "audit_head_mac"}
"""The organisation's columns that change with every audit event."""


# -- helpers -------------------------------------------------------------------------------


def ok(run: Run) -> Run:
    assert run.code == 0, run.stderr
    return run


def output(run: Run) -> Any:
    """The JSON document a successful ``--json`` command printed."""
    return json.loads(ok(run).stdout)


def refused(run: Run, code: int) -> str:
    """The one-line error of a command that must fail with ``code``."""
    assert run.code == code, (run.code, run.stdout, run.stderr)
    return one_line_error(run)


def fingerprint(folder: Path, root: Path | None = None) -> dict[Path, tuple[str, int]]:
    """Every file under ``folder``: content hash and modification time."""
    root = root or folder
    return {
        path.relative_to(root): (
            hashlib.sha256(path.read_bytes()).hexdigest(),
            path.stat().st_mtime_ns,
        )
        for path in folder.rglob("*")
        if path.is_file()
    }


def rows(db: Path) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table of the SQLite database, in a stable order."""
    with closing(sqlite3.connect(db)) as connection:
        names = [
            name
            for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        tables = {}
        for name in names:
            cursor = connection.execute(f'SELECT * FROM "{name}"')
            columns = [d[0] for d in cursor.description]
            tables[name] = sorted(
                (dict(zip(columns, row, strict=True)) for row in cursor), key=repr
            )
    return tables


def ids(values: Any) -> set[uuid.UUID]:
    """UUIDs as stored (SQLite: 32 hex digits) or printed (dashed), comparable."""
    return {uuid.UUID(str(value)) for value in values}


def files_named(folder: Path, object_ids: set[uuid.UUID]) -> set[Path]:
    return {folder / str(object_id) for object_id in object_ids}


def photo_args(*photos: Path) -> list[str]:
    return [arg for photo in photos for arg in ("--photo", str(photo))]


def enrol(
    box: Sandbox, user: str, incident: str, label: str, photos: list[Path], *extra: str, **env: str
) -> Run:
    return box.run(
        "subjects",
        "add",
        "--label",
        label,
        "--reason",
        "seen taking razor blades twice",
        "--incident",
        incident,
        *photo_args(*photos),
        "--attest-not-child-or-vulnerable",
        "--json",
        *extra,
        "--user",
        user,
        **env,
    )


def set_up_organisation(box: Sandbox, **env: str) -> str:
    """Organisation (admin alice), site Leeds, the staff, camera Leeds/door and one
    incident reported by bob; returns the incident id."""
    ok(box.run("init", "--organisation", "Corner Shops", "--admin", "alice", **env))
    ok(box.run("sites", "add", "Leeds", "--user", "alice", **env))
    for name, role in STAFF.items():
        ok(
            box.run(
                "users",
                "create",
                name,
                "--role",
                role,
                "--site",
                "Leeds",
                "--no-password",
                "--user",
                "alice",
                **env,
            )
        )
    ok(box.run("cameras", "add", "Leeds", "door", CAMERA_URL, "--user", "alice", **env))
    incident = box.run(
        "incidents",
        "add",
        "--site",
        "Leeds",
        "--category",
        "theft",
        "--description",
        "took razor blades from the front shelf",
        "--json",
        "--user",
        "bob",
        **env,
    )
    return output(incident)["id"]


@dataclass
class Shop:
    """A sandbox with the organisation set up and Biden enrolled (3 photos) by bob and
    approved by carol."""

    box: Sandbox
    incident: str
    biden: str


@pytest.fixture(scope="module")
def shop_template(tmp_path_factory: pytest.TempPathFactory) -> Shop:
    box = Sandbox(tmp_path_factory.mktemp("shop") / "box")
    for name in ("cwd", "home", "tmp"):
        (box.root / name).mkdir(parents=True)
    incident = set_up_organisation(box)
    biden = output(enrol(box, "bob", incident, "Biden, J.", BIDEN_PHOTOS))["id"]
    ok(box.run("subjects", "approve", biden, "--user", "carol"))
    return Shop(box, incident, biden)


@pytest.fixture
def shop(shop_template: Shop, tmp_path: Path) -> Shop:
    """A copy of the set-up shop for one test to change."""
    root = tmp_path / "box"
    shutil.copytree(shop_template.box.root, root, symlinks=True)
    return Shop(Sandbox(root), shop_template.incident, shop_template.biden)


# -- the governance workflow ---------------------------------------------------------------


def test_watchlist_workflow_from_init_to_erasure(sandbox: Sandbox) -> None:
    root = sandbox.root
    first = ok(sandbox.run("init", "--organisation", "Corner Shops", "--admin", "alice"))
    key_file = root / KEY
    assert "New encryption key" in first.stderr
    assert str(key_file) in first.stderr.replace("\n", "")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key_bytes = key_file.read_bytes()

    again = output(
        sandbox.run("init", "--organisation", "Corner Shops", "--admin", "alice", "--json")
    )
    assert again["created"] is False
    assert again["key_created"] is False
    assert Path(again["key_file"]) == key_file
    data_dir = Path(again["data_dir"])
    assert data_dir == root / DATA
    assert not key_file.is_relative_to(data_dir), "the key must live outside the data folder"
    assert key_file.read_bytes() == key_bytes, "a second init must not replace the key"
    assert sandbox.files() == {KEY, DB}

    # Site, staff, camera.
    ok(sandbox.run("sites", "add", "Leeds", "--user", "alice"))
    for name, role in STAFF.items():
        ok(
            sandbox.run(
                "users",
                "create",
                name,
                "--role",
                role,
                "--site",
                "Leeds",
                "--no-password",
                "--user",
                "alice",
            )
        )
    users = output(sandbox.run("users", "list", "--json", "--user", "alice"))
    assert {u["name"]: u["role"] for u in users} == {"alice": "admin", **STAFF}
    assert all(u["sites"] == ["Leeds"] for u in users if u["name"] != "alice")

    added = ok(sandbox.run("cameras", "add", "Leeds", "door", CAMERA_URL, "--user", "alice"))
    listed = sandbox.run("cameras", "list", "--json", "--user", "alice")
    assert output(listed) == [
        {"site": "Leeds", "name": "door", "source": MASKED_URL, "enabled": True, "schedule": None}
    ]
    for run in (added, listed):
        assert PASSWORD not in run.stdout + run.stderr
    for name in sandbox.files():
        assert PASSWORD.encode() not in (root / name).read_bytes(), f"password in clear in {name}"
    assert (root / DB).is_file()

    # Two incidents reported by bob (WATCHKEEPER_USER names who acts).
    incident = output(
        sandbox.run(
            "incidents",
            "add",
            "--site",
            "Leeds",
            "--category",
            "theft",
            "--description",
            "took razor blades from the front shelf",
            "--json",
            WATCHKEEPER_USER="bob",
        )
    )
    assert (incident["reporter"], incident["site"], incident["category"]) == (
        "bob",
        "Leeds",
        "theft",
    )
    other_incident = output(
        sandbox.run(
            "incidents",
            "add",
            "--site",
            "Leeds",
            "--category",
            "threats",
            "--description",
            "shouted at the till staff",
            "--json",
            "--user",
            "bob",
        )
    )

    # Refused enrolments store nothing.
    two_faces = enrol(sandbox, "bob", incident["id"], "Biden, J.", [BIDEN_PHOTOS[0], TWO_FACES])
    message = refused(two_faces, 5)
    assert TWO_FACES.name in message
    assert BIDEN_PHOTOS[0].name not in message
    assert "2 usable faces" in message
    assert list(json.loads(two_faces.stdout)["refused"]) == [TWO_FACES.name]

    unattested = sandbox.run(
        "subjects",
        "add",
        "--label",
        "Biden, J.",
        "--reason",
        "seen taking razor blades twice",
        "--incident",
        incident["id"],
        *photo_args(BIDEN_PHOTOS[0]),
        "--user",
        "bob",
    )
    assert "child" in refused(unattested, 9)

    too_long = enrol(sandbox, "bob", incident["id"], "Biden, J.", BIDEN_PHOTOS[:1], "--days", "800")
    assert "beyond the policy maximum of 730 days" in refused(too_long, 9)
    assert output(sandbox.run("subjects", "list", "--json", "--user", "bob")) == []
    assert not (root / FACE_IMAGES).exists() or not any((root / FACE_IMAGES).iterdir())

    # Bob proposes Biden; a reporter may not approve; carol (manager) does.
    biden = output(enrol(sandbox, "bob", incident["id"], "Biden, J.", BIDEN_PHOTOS))
    assert (biden["status"], biden["photos"], biden["sites"]) == ("pending", 3, ["Leeds"])
    photo_files = {p for p in sandbox.files() if p.parent == FACE_IMAGES}
    assert len(photo_files) == 3
    for name in photo_files:
        data = (root / name).read_bytes()
        assert not data.startswith(b"\xff\xd8"), "enrolment photos must be stored encrypted"
    assert "may not approve" in refused(
        sandbox.run("subjects", "approve", biden["id"], "--user", "bob"), 9
    )

    # Carol proposes Trump and may not approve her own entry.
    trump = output(enrol(sandbox, "carol", other_incident["id"], "Trump, D.", [TRUMP_PHOTO]))
    own = sandbox.run("subjects", "approve", trump["id"], "--user", "carol")
    assert "someone other than the person who made it" in refused(own, 9)

    ok(sandbox.run("subjects", "approve", biden["id"][:8], "--user", "carol"))
    listing = output(sandbox.run("subjects", "list", "--json", "--user", "dave"))
    assert {s["label"]: s["status"] for s in listing} == {
        "Biden, J.": "active",
        "Trump, D.": "pending",
    }
    pending = output(
        sandbox.run("subjects", "list", "--status", "pending", "--json", "--user", "dave")
    )
    assert [s["id"] for s in pending] == [trump["id"]]
    shown = output(sandbox.run("subjects", "show", biden["id"], "--json", "--user", "dave"))
    assert shown["created_by"] == "bob"
    assert shown["approved_by"] == "carol"
    assert shown["attested_not_child_or_vulnerable"] is True
    assert [i["id"] for i in shown["incidents"]] == [incident["id"]]
    assert len(shown["images"]) == 3
    assert all(set(image) == {"id", "quality", "size", "models"} for image in shown["images"])
    assert ids(i["id"] for i in shown["images"]) == {uuid.UUID(p.name) for p in photo_files}

    def status_of(subject: str) -> dict[str, Any]:
        return output(sandbox.run("subjects", "show", subject, "--json", "--user", "carol"))

    # Suspend, reinstate, restrict and lift.
    ok(sandbox.run("subjects", "suspend", biden["id"], "--note", "under review", "--user", "carol"))
    suspended = status_of(biden["id"])
    assert (suspended["status"], suspended["status_note"]) == ("suspended", "under review")
    refused(sandbox.run("subjects", "suspend", biden["id"], "--note", "x", "--user", "dave"), 9)
    ok(sandbox.run("subjects", "approve", biden["id"], "--user", "carol"))
    assert status_of(biden["id"])["status"] == "active"
    ok(sandbox.run("subjects", "restrict", biden["id"], "--note", "objection", "--user", "carol"))
    restricted = status_of(biden["id"])
    assert (restricted["status"], restricted["restricted"]) == ("active", True)
    ok(
        sandbox.run(
            "subjects", "restrict", biden["id"], "--lift", "--note", "resolved", "--user", "carol"
        )
    )
    assert status_of(biden["id"])["restricted"] is False

    # Renew: within the policy, by an approver who did not make the entry.
    renew = ("subjects", "renew", biden["id"], "--reason", "incidents continue")
    assert "beyond the policy maximum" in refused(
        sandbox.run(*renew, "--days", "800", "--user", "carol"), 9
    )
    refused(sandbox.run(*renew, "--days", "100", "--user", "bob"), 9)
    before = dt.datetime.now(dt.UTC)
    ok(sandbox.run(*renew, "--days", "100", "--user", "carol"))
    expires = dt.datetime.fromisoformat(status_of(biden["id"])["expires_at"])
    assert (
        before + dt.timedelta(days=100)
        <= expires
        <= dt.datetime.now(dt.UTC) + dt.timedelta(days=100)
    )

    actions = [
        e["action"]
        for e in output(
            sandbox.run("audit", "list", "--limit", "1000", "--json", "--user", "frank")
        )
    ]
    for action in (
        "subject.enrol",
        "subject.approve",
        "subject.suspend",
        "subject.reinstate",
        "subject.restrict",
        "subject.unrestrict",
        "subject.renew",
    ):
        assert action in actions

    # Erase: the entry, its photos and its only incident are gone; the label is nowhere.
    refused(
        sandbox.run("subjects", "erase", biden["id"], "--reason", "x", "--yes", "--user", "bob"), 9
    )
    removed = output(
        sandbox.run(
            "subjects",
            "erase",
            biden["id"],
            "--reason",
            "erasure request",
            "--yes",
            "--json",
            "--user",
            "carol",
        )
    )
    assert removed | {"alerts": 0, "reviews": 0} == {
        "subjects": 1,
        "face_images": 3,
        "templates": 3,
        "alerts": 0,
        "reviews": 0,
        "incidents": 1,
    }
    assert "no subject" in refused(
        sandbox.run("subjects", "show", biden["id"], "--json", "--user", "carol"), 10
    )
    remaining = {p for p in sandbox.files() if p.parent == FACE_IMAGES}
    assert len(remaining) == 1, "only Trump's photo is left"
    assert not remaining & photo_files
    assert [
        s["id"] for s in output(sandbox.run("subjects", "list", "--json", "--user", "carol"))
    ] == [trump["id"]]
    for name in sandbox.files():
        data = (root / name).read_bytes()
        for text in ("Biden, J.", "took razor blades from the front shelf"):
            assert text.encode() not in data, f"{text!r} survives erasure in {name}"

    # The audit chain verifies, and an edited event is found and named.
    verified = output(sandbox.run("audit", "verify", "--json"))
    assert [(r["organisation"], r["intact"], r["problems"]) for r in verified] == [
        ("Corner Shops", True, [])
    ]
    assert verified[0]["events"] >= 20
    with closing(sqlite3.connect(root / DB)) as connection, connection:
        changed = connection.execute("UPDATE audit_event SET actor='mallory' WHERE sequence=3")
        assert changed.rowcount == 1
    tampered = sandbox.run("audit", "verify")
    assert "tampered" in refused(tampered, 12)
    assert "event 3 " in tampered.stderr
    assert "changed after it was written" in tampered.stderr
    report = sandbox.run("audit", "verify", "--json")
    assert report.code == 12
    assert [p for p in json.loads(report.stdout)[0]["problems"] if p.startswith("event 3 ")]


# -- the encryption key --------------------------------------------------------------------


def test_a_wrong_key_is_refused_and_changes_nothing(shop: Shop) -> None:
    box = shop.box
    data = box.root / DATA
    wrong = encode_key(generate_key())
    commands = [
        ("subjects", "list", "--user", "alice"),
        ("sites", "add", "York", "--user", "alice"),
        ("subjects", "approve", shop.biden, "--user", "alice"),
        ("init", "--organisation", "Corner Shops", "--admin", "alice"),
        ("init", "--organisation", "Other Shops", "--admin", "zed"),
        ("audit", "verify"),
        ("scan", str(DEBATE), "--db", "--camera", "Leeds/door"),
    ]
    before = fingerprint(box.root)
    for command in commands:
        run = box.run(*command, WATCHKEEPER_KEY=wrong)
        assert refused(run, 8) == (
            "error: the encryption key does not match this database; nothing was read or changed"
        ), command
        assert run.stdout == ""
        assert fingerprint(data, box.root) == {
            k: v for k, v in before.items() if k.is_relative_to(DATA)
        }
    assert fingerprint(box.root) == before
    # The right key still works.
    assert [s["id"] for s in output(box.run("subjects", "list", "--json", "--user", "alice"))] == [
        shop.biden
    ]


def test_a_missing_key_file_is_named_and_init_does_not_replace_it(shop: Shop) -> None:
    box = shop.box
    key_file = box.root / KEY
    kept = box.root / "kept-key"
    key_file.rename(kept)
    before = fingerprint(box.root)
    message = refused(box.run("subjects", "list", "--user", "alice"), 8)
    assert str(key_file) in message
    assert "does not exist" in message
    assert "WATCHKEEPER_KEY" in message
    # The message suggests `init`; run against existing data it must not make a new key,
    # which would lock the data away behind a "wrong key" from then on.
    again = box.run("init", "--organisation", "Corner Shops", "--admin", "alice")
    assert str(key_file) in refused(again, 8)
    assert not key_file.exists()
    assert fingerprint(box.root) == before
    kept.rename(key_file)
    assert output(box.run("subjects", "show", shop.biden, "--json", "--user", "alice"))[
        "status"
    ] == ("active")


# -- the integration test: stored watchlist, four clips, every table and file ----------------


CLIPS = {"debate": DEBATE, "crowd": CROWD, "corridor": CORRIDOR, "stage": STAGE}


def test_scans_against_the_stored_watchlist_keep_only_alerts(shop: Shop) -> None:
    """Biden is enrolled (Trump is not). Each clip is scanned at the default analysis rate;
    afterwards every table and every file is compared with before the scan."""
    box = shop.box
    root = box.root
    biden = uuid.UUID(shop.biden)
    start = rows(root / DB)
    assert set(start) == TABLES
    assert len(start["subject"]) == 1
    (camera,) = start["camera"]
    assert (camera["name"], PASSWORD.encode() in camera["source_encrypted"]) == ("door", False)
    assert start["alert"] == []

    alert_ids: set[uuid.UUID] = set()
    for name, clip in CLIPS.items():
        tables = rows(root / DB)
        files = fingerprint(root)
        run = box.run("scan", str(clip), "--db", "--camera", "Leeds/door", "--json", timeout=600)
        after_files = fingerprint(root)
        after = rows(root / DB)
        records = ok(run).records()
        matches = [r for r in records if r["type"] == "match"]
        summary = records[-1]
        assert [r["type"] for r in records] == ["match"] * len(matches) + ["summary"], name
        assert summary["matches"] == len(matches)

        if clip == DEBATE:
            assert matches, "Biden is on screen for the whole clip"
            assert summary["tracks"] > len(matches), "Trump's track must be decided unknown"
        else:
            assert matches == [], f"{name}: no one enrolled is in this clip"
        assert {r["subject"] for r in matches} <= {str(biden)}
        assert {r["label"] for r in matches} <= {"Biden, J."}
        new_alerts = ids(r["alert"] for r in matches)
        assert len(new_alerts) == len(matches)

        # Tables: only alert and audit_event gain rows; nothing else changes at all.
        assert set(after) == TABLES
        for table in TABLES - {"alert", "audit_event", "organisation"}:
            assert after[table] == tables[table], f"{name}: table {table} changed"
        strip = [
            {k: v for k, v in row.items() if k not in AUDIT_HEAD} for row in tables["organisation"]
        ]
        assert [
            {k: v for k, v in row.items() if k not in AUDIT_HEAD} for row in after["organisation"]
        ] == strip
        assert after["organisation"][0]["audit_count"] == tables["organisation"][0][
            "audit_count"
        ] + len(matches)
        assert all(row in after["alert"] for row in tables["alert"])
        added = [row for row in after["alert"] if row not in tables["alert"]]
        assert ids(row["id"] for row in added) == new_alerts
        assert ids(row["subject_id"] for row in added) <= {biden}
        assert ids(row["camera_id"] for row in added) <= ids([camera["id"]])
        assert all(row["status"] == "pending" for row in added)
        events = [row for row in after["audit_event"] if row not in tables["audit_event"]]
        assert len(after["audit_event"]) == len(tables["audit_event"]) + len(matches)
        assert all(row in after["audit_event"] for row in tables["audit_event"])
        assert {(e["actor"], e["action"]) for e in events} <= {("camera:door", "alert.create")}
        assert ids(e["object_id"] for e in events) == new_alerts

        # Files: one encrypted snapshot per new alert; the database is the only file changed.
        assert set(files) - set(after_files) == set(), f"{name}: files disappeared"
        assert set(after_files) - set(files) == files_named(ALERT_CROPS, new_alerts), name
        changed = {p for p in files if files[p] != after_files[p]}
        assert changed <= ({DB} if matches else set()), f"{name}: changed {changed}"
        for alert in new_alerts:
            assert not (root / ALERT_CROPS / str(alert)).read_bytes().startswith(b"\xff\xd8")
        alert_ids |= new_alerts

    # Everything held: the enrolment photos, one snapshot per alert, the database, the key.
    final = rows(root / DB)
    assert ids(row["id"] for row in final["alert"]) == alert_ids
    assert len(final["alert"]) == len(final["audit_event"]) - len(start["audit_event"])
    photos = ids(row["id"] for row in final["face_image"])
    assert len(photos) == 3
    assert box.files() == (
        {KEY, DB} | files_named(FACE_IMAGES, photos) | files_named(ALERT_CROPS, alert_ids)
    )

    # Review: two different reviewers confirm one alert; a rejection counts a false match.
    first, second, *_ = sorted(str(a) for a in alert_ids)
    review = ("alerts", "review")
    one = output(box.run(*review, first, "--decision", "confirm", "--json", "--user", "dave"))
    assert one["status"] == "pending", "one confirmation is not enough"
    assert "already reviewed" in refused(
        box.run(*review, first, "--decision", "confirm", "--user", "dave"), 9
    )
    refused(box.run(*review, first, "--decision", "confirm", "--user", "bob"), 9)
    two = output(box.run(*review, first, "--decision", "confirm", "--json", "--user", "erin"))
    assert two["status"] == "confirmed"
    rejected = output(box.run(*review, second, "--decision", "reject", "--json", "--user", "erin"))
    assert rejected["status"] == "rejected"
    shown = output(box.run("alerts", "show", first, "--json", "--user", "dave"))
    assert [(r["user"], r["decision"]) for r in shown["reviews"]] == [
        ("dave", "confirm"),
        ("erin", "confirm"),
    ]
    entry = output(box.run("subjects", "show", shop.biden, "--json", "--user", "carol"))
    assert entry["false_matches"] == 1
    assert entry["status"] == "active"
    assert {a["id"]: a["status"] for a in entry["alerts"]}[first] == "confirmed"
    listed = output(box.run("alerts", "list", "--json", "--user", "dave"))
    assert ids(a["id"] for a in listed) == alert_ids
    assert {a["subject_label"] for a in listed} == {"Biden, J."}

    # A reviewer may see the decrypted snapshot: a JPEG of a face.
    snapshot = box.cwd / "alert.jpg"
    ok(box.run("alerts", "show", first, "--snapshot", str(snapshot), "--user", "dave"))
    image = cv2.imread(str(snapshot))
    assert image is not None
    assert min(image.shape[:2]) >= 32
    assert output(box.run("audit", "verify", "--json"))[0]["intact"] is True


# -- PostgreSQL ----------------------------------------------------------------------------


def test_the_core_workflow_on_postgresql(sandbox: Sandbox, postgres: PostgresServer) -> None:
    url = postgres.new_database()
    env = {"WATCHKEEPER_DATABASE_URL": url}
    incident = set_up_organisation(sandbox, **env)
    init = output(
        sandbox.run("init", "--organisation", "Corner Shops", "--admin", "alice", "--json", **env)
    )
    assert init["database"] in url
    assert "://" not in init["database"]
    biden = output(enrol(sandbox, "bob", incident, "Biden, J.", BIDEN_PHOTOS, **env))
    ok(sandbox.run("subjects", "approve", biden["id"], "--user", "carol", **env))

    run = ok(sandbox.run("scan", str(DEBATE), "--db", "--camera", "Leeds/door", "--json", **env))
    matches = [r for r in run.records() if r["type"] == "match"]
    assert matches
    assert {r["subject"] for r in matches} == {biden["id"]}
    alerts = output(sandbox.run("alerts", "list", "--json", "--user", "dave", **env))
    assert {a["id"] for a in alerts} == {r["alert"] for r in matches}
    assert {(a["subject_label"], a["camera"], a["status"]) for a in alerts} == {
        ("Biden, J.", "Leeds/door", "pending")
    }

    # No SQLite file: the data folder holds only the encrypted photos and snapshots.
    assert sandbox.files() == (
        {KEY}
        | files_named(
            FACE_IMAGES,
            ids(
                i["id"]
                for i in output(
                    sandbox.run("subjects", "show", biden["id"], "--json", "--user", "carol", **env)
                )["images"]
            ),
        )
        | files_named(ALERT_CROPS, ids(a["id"] for a in alerts))
    )
    verified = output(sandbox.run("audit", "verify", "--json", **env))
    assert [(r["organisation"], r["intact"]) for r in verified] == [("Corner Shops", True)]
    # The same data without the key is refused, as on SQLite.
    wrong = sandbox.run(
        "subjects", "list", "--user", "alice", WATCHKEEPER_KEY=encode_key(generate_key()), **env
    )
    refused(wrong, 8)
