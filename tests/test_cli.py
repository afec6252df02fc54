"""The `watchkeeper` command as a user runs it: a separate process, real files, real servers."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.support.cli import Sandbox, one_line_error
from tests.support.data import DEBATE, MODELS, build_watchlist, lfw_photos
from tests.support.net import unused_port
from tests.support.rtsp_server import RtspServer

YUNET = "face_detection_yunet_2023mar.onnx"
MATCH_KEYS = {"type", "subject", "score", "track", "start", "end", "frames"}
SUMMARY_KEYS = {"type", "frames", "faces", "tracks", "matches", "seconds", "fps"}


@pytest.fixture
def biden_only(tmp_path: Path) -> Path:
    return build_watchlist(tmp_path / "watchlist", ["Joseph_Biden"], photos_per_subject=5)


def test_scan_prints_json_lines_and_keeps_nothing_about_unmatched_faces(
    sandbox: Sandbox, biden_only: Path
) -> None:
    """Trump is in the clip but not on this watchlist: nothing about him may be written."""
    saved = sandbox.cwd / "matches"
    before = sandbox.files()
    run = sandbox.run(
        "-vv",
        "scan",
        str(DEBATE),
        "--watchlist",
        str(biden_only),
        "--json",
        "--save-matches",
        str(saved),
    )
    assert run.code == 0, run.stderr
    records = run.records()
    matches = [r for r in records if r["type"] == "match"]
    summary = records[-1]
    assert [r["type"] for r in records] == ["match"] * len(matches) + ["summary"]
    assert matches
    assert all(set(r) == MATCH_KEYS for r in matches)
    assert set(summary) >= SUMMARY_KEYS
    assert {r["subject"] for r in matches} == {"Joseph_Biden"}
    assert summary["matches"] == len(matches)
    assert summary["tracks"] > len(matches), "Trump's track was decided as UNKNOWN"

    matched_ids = {r["track"] for r in matches}
    unknown_ids = set(range(1, summary["tracks"] + 1)) - matched_ids
    # Files: only the matched tracks' crops, in the folder asked for.
    new_files = sandbox.files() - before
    assert new_files == {
        Path("cwd/matches") / f"track-{t:05d}-Joseph_Biden-{rank}.jpg"
        for t in matched_ids
        for rank in (1, 2, 3)
    }
    # Output and logs (at debug level): no line about an unknown track.
    for stream in (run.stdout, run.stderr):
        for track in unknown_ids:
            assert not re.search(rf"\btrack\W+{track}\b", stream), stream
    assert "Donald" not in run.stdout + run.stderr


def test_scan_writes_nothing_without_save_matches(sandbox: Sandbox, biden_only: Path) -> None:
    before = sandbox.files()
    run = sandbox.run("scan", str(DEBATE), "--watchlist", str(biden_only))
    assert run.code == 0, run.stderr
    assert sandbox.files() == before
    lines = run.stdout.splitlines()
    assert lines[0].startswith("match  Joseph_Biden  score 0.")
    assert lines[-1].startswith("summary  ")


def test_scan_of_an_image_folder_names_the_matching_images(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    watchlist = build_watchlist(tmp_path / "watchlist", ["Joseph_Biden"], photos_per_subject=1)
    probes = tmp_path / "probes"
    probes.mkdir()
    for photo in [*lfw_photos("Joseph_Biden")[2:], *lfw_photos("Colin_Powell")[:3]]:
        (probes / photo.name).symlink_to(photo)
    run = sandbox.run("scan", str(probes), "--watchlist", str(watchlist), "--json")
    assert run.code == 0, run.stderr
    matched = {r["image"] for r in run.records() if r["type"] == "match"}
    assert matched == {p.name for p in lfw_photos("Joseph_Biden")[2:]}


def test_scan_of_a_camera_that_goes_away(sandbox: Sandbox, biden_only: Path) -> None:
    """Matches made before the outage are printed, then the summary, then the error."""
    server = RtspServer(DEBATE)
    server.start()

    def power_cut() -> None:
        if server.playing.wait(60):
            time.sleep(4.0)
        server.stop()

    cut = threading.Thread(target=power_cut)
    cut.start()
    run = sandbox.run(
        "scan",
        server.url,
        "--watchlist",
        str(biden_only),
        "--json",
        WATCHKEEPER_VIDEO__RECONNECT_ATTEMPTS="2",
        WATCHKEEPER_VIDEO__RECONNECT_INITIAL_S="0.2",
    )
    cut.join()
    assert run.code == 4, run.stderr
    records = run.records()
    assert records[-1]["type"] == "summary"
    assert records[-1]["frames"] >= 20
    assert any(r["type"] == "match" and r["subject"] == "Joseph_Biden" for r in records)
    assert run.stderr.strip().splitlines()[-1] == (
        f"error: stream {server.url} lost: no connection after 2 attempts"
    )


def corrupt_models(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    data = bytearray((MODELS / YUNET).read_bytes())
    data[1000] ^= 0x55
    (folder / YUNET).write_bytes(bytes(data))
    return folder


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        (
            "corrupt-video",
            3,
            r"error: cannot open file .*clip\.mp4: Invalid data found when processing input",
        ),
        (
            "missing-video",
            3,
            r"error: cannot open source '.*nothing\.mp4': no such file, folder or URL",
        ),
        (
            "unreachable-url",
            3,
            r"error: cannot open stream http://127.0.0.1:\d+/cam: Connection refused",
        ),
        (
            "no-usable-face",
            5,
            r"error: watchlist subject 'Wall' has no usable face \(wall.png: no face found\)",
        ),
        (
            "wrong-checksum",
            6,
            r"error: refusing model file .*face_detection_yunet_2023mar\.onnx: "
            r"sha256 [0-9a-f]+ does not match.*",
        ),
    ],
)
def test_scan_failures_exit_non_zero_with_one_line(
    sandbox: Sandbox, tmp_path: Path, biden_only: Path, case: str, code: int, message: str
) -> None:
    source, watchlist, env = str(DEBATE), biden_only, {}
    if case == "corrupt-video":
        source = str(tmp_path / "clip.mp4")
        Path(source).write_bytes(np.random.default_rng(1).bytes(100_000))
    elif case == "missing-video":
        source = str(tmp_path / "nothing.mp4")
    elif case == "unreachable-url":
        source = f"http://127.0.0.1:{unused_port()}/cam"
    elif case == "no-usable-face":
        watchlist = tmp_path / "bad-watchlist"
        (watchlist / "Wall").mkdir(parents=True)
        cv2.imwrite(str(watchlist / "Wall" / "wall.png"), np.full((200, 200, 3), 80, np.uint8))
    elif case == "wrong-checksum":
        env = {"WATCHKEEPER_MODELS_DIR": str(corrupt_models(tmp_path))}
    before = sandbox.files()
    run = sandbox.run("scan", source, "--watchlist", str(watchlist), "--json", **env)
    assert run.code == code
    assert re.fullmatch(message, one_line_error(run))
    assert run.stdout == ""
    assert sandbox.files() == before


def test_models_list_and_verify(sandbox: Sandbox) -> None:
    listed = sandbox.run("models", "list", "--json")
    assert listed.code == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["yunet-2023mar"]["present"]
    assert rows["yunet-2023mar"]["verified"]
    assert rows["yunet-2023mar"]["path"] == str(MODELS / YUNET)
    assert rows["dlib-resnet-v1"]["role"] == "identity-embedder"
    calibration = rows["dlib-resnet-v1"]["calibration"]
    assert calibration["fpir"] == 1e-3
    assert calibration["provenance"].startswith("watchkeeper calibrate on the LFW")
    assert calibration["thresholds"]["1000"] > calibration["thresholds"]["10"]
    assert rows["sface-2021dec"]["verified"]
    assert {row["role"] for row in rows.values()} <= {"detector", "landmarks", "identity-embedder"}
    table = sandbox.run("models", "list", COLUMNS="80")
    lines = table.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    for name in rows:  # on one line each, whole (at 80 columns they broke mid-word)
        assert sum(line.startswith(f"{name} ") for line in lines) == 1, table.stdout
    verified = sandbox.run("models", "verify")
    assert verified.code == 0
    assert "ok       yunet-2023mar" in verified.stdout
    assert "ok       sface-2021dec" in verified.stdout


def test_models_verify_reports_a_tampered_file(sandbox: Sandbox, tmp_path: Path) -> None:
    run = sandbox.run("models", "verify", WATCHKEEPER_MODELS_DIR=str(corrupt_models(tmp_path)))
    assert run.code == 6
    assert re.search(
        r"REFUSED  yunet-2023mar  .*sha256 [0-9a-f]{64}, expected 8f2383e4", run.stdout
    )
