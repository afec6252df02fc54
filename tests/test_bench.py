"""`watchkeeper bench` as a user runs it: real clips, a real RTSP stream, real baseline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import Sandbox, one_line_error
from tests.support.data import CORRIDOR, DEBATE
from tests.support.rtsp_server import RtspServer

STAGES = {"decode", "detect", "quality", "track", "embed", "embed_batch", "match"}


def bench(sandbox: Sandbox, *args: str) -> dict:
    run = sandbox.run("bench", *args, "--json", timeout=600)
    assert run.code == 0, run.stderr
    return json.loads(run.stdout)


def test_bench_of_a_clip_with_the_baseline(sandbox: Sandbox) -> None:
    report = bench(
        sandbox,
        str(CORRIDOR),
        "--baseline-frames", "6",
        "--embed-seconds", "0.3",
        "--batch-sizes", "1,4",
        "--gallery-sizes", "100,2000",
    )  # fmt: skip
    streams = report["streams"]
    [camera] = streams["cameras"]
    assert camera["frames"] == camera["decoded"] == 41, "every frame of the clip is analysed"
    assert camera["dropped"] == 0
    assert camera["faces"] >= 80
    assert camera["embedded"] > 0
    assert camera["error"] is None
    assert STAGES | {"frame_to_decision"} <= set(streams["stages"])
    for figures in streams["stages"].values():
        assert 0 <= figures["p50_ms"] <= figures["p95_ms"] <= figures["max_ms"]
    assert streams["stages"]["detect"]["count"] == 41
    assert streams["stages"]["frame_to_decision"]["count"] == 41
    assert streams["frame_to_decision_p95_ms"] == pytest.approx(
        streams["stages"]["frame_to_decision"]["p95_ms"], abs=0.05
    )
    # Rates count from the first frame to the last decision.
    assert streams["fps_total"] == pytest.approx(camera["fps"], rel=0.01)
    assert streams["fps_total"] >= 0.99 * 41 / streams["wall_s"]  # (both are rounded)
    assert streams["cores_busy"] > 0
    assert streams["peak_rss_mib"] > 100
    assert [row["batch"] for row in report["embedding"]] == [1, 4]
    assert all(row["faces_per_s"] > 0 for row in report["embedding"])
    assert [row["templates"] for row in report["gallery_search"]] == [100, 2000]
    assert report["runtime"].startswith("onnxruntime")
    assert report["detector"] == "yunet"
    baseline = report["baseline"]
    assert baseline["frames"] == 6
    assert baseline["faces"] > 0
    assert report["speedup"] == pytest.approx(streams["fps_total"] / baseline["fps"], rel=0.01)
    assert sandbox.files() == set(), "bench keeps nothing"


def test_bench_runs_copies_of_a_source_as_separate_cameras(sandbox: Sandbox) -> None:
    report = bench(
        sandbox, str(CORRIDOR), "--cameras", "3", "--workers", "2", "--no-baseline",
        "--embed-seconds", "0", "--gallery-sizes", "10",
    )  # fmt: skip
    cameras = report["streams"]["cameras"]
    assert [camera["camera"].rsplit("#", 1)[1] for camera in cameras] == ["1", "2", "3"]
    assert all(camera["frames"] == 41 for camera in cameras)
    faces = {camera["faces"] for camera in cameras}
    assert len(faces) == 1, "each copy finds the same faces"
    assert report["streams"]["workers"] == 2
    assert report["streams"]["processes"] == 3, "one per camera, as `serve` runs them"
    assert "speedup" not in report
    assert "embedding" not in report


def test_bench_shares_cameras_among_worker_processes(sandbox: Sandbox) -> None:
    report = bench(
        sandbox, str(CORRIDOR), "--cameras", "3", "--processes", "2", "--workers", "1",
        "--no-baseline", "--embed-seconds", "0", "--gallery-sizes", "10",
    )  # fmt: skip
    streams = report["streams"]
    assert (streams["processes"], streams["workers"]) == (2, 1)
    cameras = streams["cameras"]
    assert sorted(camera["camera"].rsplit("#", 1)[1] for camera in cameras) == ["1", "2", "3"]
    assert all(camera["frames"] == 41 and camera["error"] is None for camera in cameras)
    assert len({camera["faces"] for camera in cameras}) == 1, "each copy finds the same faces"
    assert streams["stages"]["detect"]["count"] == 3 * 41, "every worker's timings come back"
    # CPU time, not a share of the wall clock: detecting 123 frames of 1080p costs well
    # over a second of it however busy the machine is, and only the workers did that.
    assert streams["cpu_s"] > 1.0, "the workers' CPU time is counted"
    assert sandbox.files() == set(), "bench keeps nothing"


def test_bench_of_a_live_stream_runs_for_the_given_duration(sandbox: Sandbox) -> None:
    with RtspServer(DEBATE, loop=True) as server:
        report = bench(
            sandbox, server.url, "--duration", "4", "--fps", "5", "--embed-seconds", "0",
            "--gallery-sizes", "10",
        )  # fmt: skip
    [camera] = report["streams"]["cameras"]
    assert camera["error"] is None
    assert camera["frames"] > 5
    # Decoded at the camera's 25 fps (less the frames nothing refers to, which a stream
    # sampled this sparsely skips), analysed at 5.
    assert camera["decoded"] >= 2 * camera["frames"]
    assert "baseline" not in report, "the baseline runs on files only"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing.mp4", "no such file"),
        (
            lambda tmp: (tmp / "notes.mp4").write_text("not a video") and tmp / "notes.mp4",
            "cannot open",
        ),
    ],
    ids=["missing", "not-a-video"],
)
def test_bench_of_a_bad_source_fails_in_one_line(
    sandbox: Sandbox, tmp_path: Path, make, message
) -> None:
    run = sandbox.run("bench", str(make(tmp_path)), "--no-baseline", "--embed-seconds", "0")
    assert run.code != 0
    assert message in one_line_error(run)
