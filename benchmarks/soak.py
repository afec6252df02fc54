"""A soak test of the service as a shop runs it: `watchkeeper serve` on four looped 1080p
RTSP cameras for an hour (or ``--minutes``), sampling every process's memory.

Two cameras loop the 1080p crowd clip (strangers only: nothing may be kept of them),
two loop the debate clip scaled to 1080p (Biden and Trump are on the watchlist, so
alerts keep coming). The service runs as its own process (`python -m watchkeeper
serve`, one worker process per camera, as installed), against a data folder set up
beforehand with the watchlist, the cameras and an API token. Every ``--interval``
seconds it prints one JSON line: each process's resident memory (the service and each
camera worker), the cameras' health from /api/cameras (fps, dropped frames, restarts,
alerts, unstored alerts, how late alerts come) and the alerts in the database. At the
end, a summary line: memory per process at the start (after the first ``--warm-up``
minutes) and at the end with the growth per hour, alerts stored against alerts counted
by the cameras, restarts, and whether anything was left running after Ctrl-C.

    uv run python benchmarks/soak.py [--minutes 60] [--interval 30] [--fps 5]

Not part of the test suite: it takes an hour and all of a small machine's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import av
import httpx
import psutil
from sqlalchemy import func, select

from tests.support.data import CROWD, DEBATE, MODELS
from tests.support.net import unused_port, wait_for
from tests.support.rtsp_server import RtspServer
from tests.support.shop import enrol_subject, set_up_shop
from watchkeeper.config import load_settings
from watchkeeper.governance import access
from watchkeeper.governance.accounts import issue_token
from watchkeeper.governance.organisation import add_camera, update_camera
from watchkeeper.pipeline import FaceModels
from watchkeeper.store.crypto import encode_key, generate_key
from watchkeeper.store.database import open_store
from watchkeeper.store.models import Alert


def scaled_to_1080p(source: Path, destination: Path) -> Path:
    """``source`` re-encoded at 1920x1080 (H.264, a keyframe a second), like an IP camera."""
    with av.open(str(source)) as clip, av.open(str(destination), "w") as out:
        stream = clip.streams.video[0]
        rate = stream.average_rate or 25
        video = out.add_stream("libx264", rate=rate)
        video.width, video.height, video.pix_fmt = 1920, 1080, "yuv420p"
        video.options = {"g": str(int(rate)), "bf": "0", "preset": "veryfast"}
        for frame in clip.decode(stream):
            scaled = frame.reformat(width=1920, height=1080, format="yuv420p")
            for packet in video.encode(scaled):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
    return destination


def set_up(data: Path, key: str, urls: dict[str, str]) -> str:
    """The shop's data folder: Biden and Trump on the watchlist, the four cameras, and
    an API token for the admin (returned) to read the cameras' health with."""
    settings = load_settings(models_dir=MODELS, data_dir=data, key=key)
    store = open_store(settings, create=True)
    try:
        shop = set_up_shop(store)
        models = FaceModels.load(settings)
        enrol_subject(shop, models, "Joseph_Biden", photos=3)
        enrol_subject(shop, models, "Donald_Trump", photos=1)  # LFW's one usable photo
        with shop.tx() as tx:
            alice = tx.user("alice")
            update_camera(tx.session, store.keys, tx.organisation, alice, tx.camera, False)
            for name, url in urls.items():
                add_camera(tx.session, store.keys, tx.organisation, alice, tx.site, name, url)
            admin = access.user(tx.session, tx.organisation.id, "alice")
            issued = issue_token(tx.session, store.keys, admin, admin, "soak benchmark", 2)
        return issued.token
    finally:
        store.close()


def alerts_stored(data: Path, key: str) -> int:
    settings = load_settings(models_dir=MODELS, data_dir=data, key=key)
    store = open_store(settings)
    try:
        with store.session() as session:
            return session.scalar(select(func.count()).select_from(Alert)) or 0
    finally:
        store.close()


def memory(service: psutil.Process, cameras: dict[int, str]) -> dict[str, float]:
    """Resident memory (MiB) of the service and of each of its processes: a camera's
    worker named by the camera whose RTSP server (by port, ``cameras``) it reads."""
    found = {"service": service.memory_info().rss / 2**20}
    for child in service.children(recursive=True):
        try:
            ports = {c.raddr.port for c in child.net_connections(kind="tcp") if c.raddr}
            rss = child.memory_info().rss / 2**20
            role = next((cameras[p] for p in ports if p in cameras), None)
            role = role or ("resource tracker" if "resource_tracker" in " ".join(
                child.cmdline()) else child.name())  # fmt: skip
        except psutil.Error:
            continue
        found[f"{role} (pid {child.pid})"] = rss
    return {name: round(value, 1) for name, value in found.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=30.0, help="Seconds between samples.")
    parser.add_argument("--warm-up", type=float, default=2.0, help="Minutes before the baseline.")
    parser.add_argument("--fps", type=float, default=5.0, help="Frames analysed per second.")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="watchkeeper-soak-"))
    debate = scaled_to_1080p(DEBATE, work / "debate-1080p.mp4")
    key = encode_key(generate_key())
    port = unused_port()
    samples: list[dict[str, Any]] = []
    with ExitStack() as stack:
        servers = {
            f"{name}-{number}": stack.enter_context(RtspServer(clip, loop=True))
            for name, clip in (("crowd", CROWD), ("debate", debate))
            for number in (1, 2)
        }
        token = set_up(work / "data", key, {name: s.url for name, s in servers.items()})
        environment = {
            **os.environ,
            "WATCHKEEPER_KEY": key,
            "WATCHKEEPER_DATA_DIR": str(work / "data"),
            "WATCHKEEPER_VIDEO__ANALYSIS_FPS": str(args.fps),
        }
        command = [sys.executable, "-m", "watchkeeper", "--models-dir", str(MODELS), "serve",
                   "--port", str(port)]  # fmt: skip
        log = (work / "serve.log").open("w")
        process = subprocess.Popen(command, env=environment, stdout=log, stderr=log)
        service = psutil.Process(process.pid)
        api = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        try:
            wait_for(f"http://127.0.0.1:{port}/login", process, 180)
            started = time.monotonic()
            children = [child.pid for child in service.children(recursive=True)]
            while time.monotonic() - started < args.minutes * 60:
                try:
                    time.sleep(args.interval)
                except KeyboardInterrupt:  # Ctrl-C ends the soak early, with its summary
                    break
                cameras = [camera["health"] or {} for camera in api.get("/api/cameras").json()]
                sample = {
                    "minute": round((time.monotonic() - started) / 60, 2),
                    "rss_mib": memory(service, {s.port: n for n, s in servers.items()}),
                    "fps": [camera.get("fps") for camera in cameras],
                    "alert_delay_s": [camera.get("decision_delay_s") for camera in cameras],
                    "waiting_faces": sum(camera.get("waiting_faces", 0) for camera in cameras),
                    "dropped": sum(camera.get("dropped", 0) for camera in cameras),
                    "restarts": sum(camera.get("restarts", 0) for camera in cameras),
                    "alerts_counted": sum(camera.get("alerts", 0) for camera in cameras),
                    "unstored": sum(camera.get("unstored_alerts", 0) for camera in cameras),
                    "states": sorted({camera.get("state", "none") for camera in cameras}),
                    "alerts_stored": alerts_stored(work / "data", key),
                }
                samples.append(sample)
                print(json.dumps(sample), flush=True)  # noqa: T201 - a command-line report
            children = [child.pid for child in service.children(recursive=True)]
        finally:
            process.send_signal(signal.SIGINT)
            code = process.wait(120)
            log.close()
    left = leftovers(children, wait_s=10.0)
    report = summary(samples, args.warm_up, code, left, work)
    print(json.dumps(report), flush=True)  # noqa: T201 - a command-line report


def leftovers(pids: list[int], wait_s: float) -> list[int]:
    """The service's former children still running ``wait_s`` seconds after it ended
    (multiprocessing's resource tracker takes a moment to notice its parent is gone)."""
    processes = []
    for pid in pids:
        try:
            processes.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(processes, timeout=wait_s)
    return [process.pid for process in alive]


def summary(
    samples: list[dict[str, Any]], warm_up: float, code: int, left: list[int], work: Path
) -> dict[str, Any]:
    """Memory at the baseline and at the end per process, and its growth per hour."""
    baseline = next((s for s in samples if s["minute"] >= warm_up), samples[0])
    last = samples[-1]
    hours = max(last["minute"] - baseline["minute"], 1e-9) / 60
    growth = {
        name: {
            "start_mib": baseline["rss_mib"][name],
            "end_mib": last["rss_mib"][name],
            "max_mib": max(s["rss_mib"].get(name, 0.0) for s in samples),
            "mib_per_hour": round((last["rss_mib"][name] - baseline["rss_mib"][name]) / hours, 1),
        }
        for name in last["rss_mib"]
        if name in baseline["rss_mib"]
    }
    return {
        "type": "summary",
        "minutes": last["minute"],
        "memory": growth,
        "alerts_counted_by_cameras": last["alerts_counted"],
        "alerts_stored": last["alerts_stored"],
        "unstored_at_end": last["unstored"],
        "restarts": last["restarts"],
        "fps_median": statistics.median(f for s in samples for f in s["fps"] if f is not None),
        "alert_delay_s_max": max(
            (d for s in samples for d in s.get("alert_delay_s", []) if d is not None),
            default=None,
        ),
        "exit_code": code,
        "processes_left_after_stop": left,
        "work_folder": str(work),
    }


if __name__ == "__main__":
    main()
