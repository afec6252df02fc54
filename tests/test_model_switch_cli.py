"""`watchkeeper models use` and `models status` as staff run them: a separate process
over a real SQLite file, real photos. The shop was enrolled with dlib's ResNet and
moves to SFace."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import closing

import cv2
import numpy as np

from tests.support.cli import Sandbox
from tests.support.data import DEBATE
from tests.support.rtsp_server import RtspServer
from tests.test_governance_cli import (
    BIDEN_PHOTOS,
    DATA,
    DB,
    KEY,
    TRUMP_PHOTO,
    enrol,
    ok,
    output,
    refused,
    set_up_organisation,
)
from watchkeeper.governance.subjects import FACE_IMAGE
from watchkeeper.store.crypto import KeyRing, read_key_file
from watchkeeper.store.database import FILES_FOLDER, EncryptedFiles

DLIB = {"WATCHKEEPER_EMBEDDER": "dlib-resnet-v1"}
"""What the shop's configuration said when it enrolled its entries."""
THRESHOLD = {"WATCHKEEPER_MATCHING__THRESHOLD": "0.5"}
"""A fixed threshold, so that SFace may be switched to whether or not it is calibrated."""


def blank_photos_of(box: Sandbox, subject_id: str) -> None:
    """Replace the entry's stored photos by faceless pictures (validly encrypted)."""
    keys = KeyRing(read_key_file(box.root / KEY))
    files = EncryptedFiles(box.root / DATA / FILES_FOLDER, keys)
    owner = uuid.UUID(subject_id)
    with closing(sqlite3.connect(box.root / DB)) as connection:
        images = [
            uuid.UUID(row[0])
            for row in connection.execute(
                "SELECT id FROM face_image WHERE subject_id = ?", (owner.hex,)
            )
        ]
    assert images
    done, grey = cv2.imencode(".jpg", np.full((240, 240, 3), 128, np.uint8))
    assert done
    for image in images:
        files.write(FACE_IMAGE, image, grey.tobytes(), owner)


def test_models_use_moves_the_stored_watchlist_to_sface(sandbox: Sandbox) -> None:
    incident = set_up_organisation(sandbox, **DLIB)
    biden = output(enrol(sandbox, "bob", incident, "Biden, J.", BIDEN_PHOTOS, **DLIB))["id"]
    ok(sandbox.run("subjects", "approve", biden, "--user", "carol", **DLIB))
    trump = output(enrol(sandbox, "bob", incident, "man, red tie", [TRUMP_PHOTO], **DLIB))["id"]
    blank_photos_of(sandbox, trump)

    status = output(sandbox.run("models", "status", "--json"))
    assert status["model_in_use"] == "dlib-resnet-v1", "pinned by its first enrolment"
    assert not status["from_configuration"]
    assert status["templates"] == [{"model_id": "dlib-resnet-v1@1", "templates": 4, "entries": 2}]

    assert "may not approve" in refused(
        sandbox.run("models", "use", "sface-2021dec", "--user", "dave", **THRESHOLD), 9
    )

    # Trump's entry has no photo SFace can use: listed, and nothing switched (exit 9).
    listed = sandbox.run("models", "use", "sface-2021dec", "--user", "carol", **THRESHOLD)
    assert "1 entries have no photo that sface-2021dec can use" in refused(listed, 9)
    assert "man, red tie" in listed.stdout
    assert "no face found" in listed.stdout
    assert output(sandbox.run("models", "status", "--json"))["model_in_use"] == "dlib-resnet-v1"

    switched = sandbox.run(
        "models", "use", "sface-2021dec", "--accept-unusable", "--drop-old", "--json",
        "--user", "carol", **THRESHOLD,
    )  # fmt: skip
    report = output(switched)
    assert report["switched"]
    assert (report["previous"], report["model"]) == ("dlib-resnet-v1", "sface-2021dec")
    assert (report["retemplated"], report["templates"]) == (0, 0), "Biden was done already"
    assert [entry["subject_id"] for entry in report["unusable"]] == [trump]
    assert report["dropped_templates"] == 4

    status = output(sandbox.run("models", "status", "--json"))
    assert status["model_in_use"] == "sface-2021dec"
    assert status["templates"] == [
        {"model_id": "sface-2021dec@2021dec", "templates": 3, "entries": 1}
    ]
    assert status["entries_without_template_of_model_in_use"] == 1

    # The organisation's model, not the configuration's, enrols new entries.
    colin = output(enrol(sandbox, "bob", incident, "Powell, C.", BIDEN_PHOTOS[:1], **DLIB))
    shown = output(sandbox.run("subjects", "show", colin["id"], "--json", "--user", "carol"))
    assert [image["models"] for image in shown["images"]] == [["sface-2021dec@2021dec"]]

    log = output(sandbox.run("audit", "list", "--json", "--limit", "100", "--user", "frank"))
    actions = [event["action"] for event in reversed(log)]
    assert actions.count("models.switch_started") == 2
    assert actions.count("models.switch_incomplete") == 1
    assert actions.count("models.switch_completed") == 1
    assert actions.count("subject.retemplate") == 3  # Biden, Trump, then Trump again
    ok(sandbox.run("audit", "verify"))


def test_a_live_scan_goes_on_with_the_new_model(sandbox: Sandbox) -> None:
    """`scan --db` on a live stream while `models use` runs in another process: the scan
    stores its matches with dlib until the switch is stored, then goes on with SFace,
    without being restarted."""
    incident = set_up_organisation(sandbox, **DLIB)
    biden = output(enrol(sandbox, "bob", incident, "Biden, J.", BIDEN_PHOTOS, **DLIB))["id"]
    ok(sandbox.run("subjects", "approve", biden, "--user", "carol"))
    records: list[dict] = []
    log = sandbox.root / "scan-stderr.txt"
    with RtspServer(DEBATE, loop=True) as server, log.open("w") as stderr:
        scan = subprocess.Popen(
            [sys.executable, "-m", "watchkeeper", "scan", server.url, "--db", "--json"],
            cwd=sandbox.cwd,
            env=sandbox.env(WATCHKEEPER_STORE__WATCHLIST_REFRESH_S="1"),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        reader = threading.Thread(
            target=lambda: records.extend(json.loads(line) for line in scan.stdout or ()),
            daemon=True,
        )
        reader.start()
        try:
            until(lambda: any(r["type"] == "match" for r in records), "a match with dlib")
            ok(sandbox.run("models", "use", "sface-2021dec", "--user", "carol"))
            until(
                lambda: "match" in [r["type"] for r in records][_after_summary(records) :],
                "a match with SFace",
            )
        finally:
            scan.send_signal(signal.SIGINT)
            scan.wait(timeout=60)
            reader.join(10)
    errors = log.read_text()
    assert scan.returncode == 130, errors
    assert "the watchlist is now searched with sface-2021dec; the scan goes on with it" in errors
    with closing(sqlite3.connect(sandbox.root / DB)) as connection:
        models = [
            row[0] for row in connection.execute("SELECT model_id FROM alert ORDER BY created_at")
        ]
    switch = models.index("sface-2021dec@2021dec")
    assert switch > 0
    assert set(models[:switch]) == {"dlib-resnet-v1@1"}
    assert set(models[switch:]) == {"sface-2021dec@2021dec"}
    assert [r["type"] for r in records].count("summary") == 2, "one summary per model"


def _after_summary(records: list[dict]) -> int:
    """The index after the first summary record (the end when there is none)."""
    types = [r["type"] for r in records]
    return types.index("summary") + 1 if "summary" in types else len(types)


def until(check: Callable[[], bool], what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
