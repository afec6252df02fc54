"""Alert latency: from the frame that first holds a watchlist face to the alert arriving
on a reviewer's page over the push channel (server-sent events).

Builds a clip of ``--onset`` seconds of black frames followed by the 2020 debate
clip (Joe Biden on screen from its first frame), serves it from the test-suite's
RTSP server (real-time pacing from PLAY), and runs the whole service: a shop
with Biden enrolled from three LFW photos, the camera worker under the
supervisor, the web app on a free port, and a signed-in reviewer holding the
alert stream open. Each run restarts recognition, so the camera connects again
and the clip plays from its start:

    latency = alert received - (PLAY sent + onset)

The camera's first face frame is therefore known to the millisecond. The figure
includes the RTSP client's buffering, decoding, detection, the three usable
shots an early decision waits for (0.2 s at 10 analysed frames/s), embedding,
the decision, storing the alert and the push. Prints one JSON line per run,
then a summary line.

    uv run python benchmarks/alert_latency.py [--runs 5] [--onset 3]
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import av
import httpx
import numpy as np
import uvicorn

from tests.support.data import DEBATE, MODELS
from tests.support.rtsp_server import RtspServer
from tests.support.shop import enrol_subject, set_up_shop
from watchkeeper.config import load_settings
from watchkeeper.governance.accounts import set_password
from watchkeeper.governance.organisation import add_camera, update_camera
from watchkeeper.pipeline import FaceModels
from watchkeeper.service.runtime import Runtime
from watchkeeper.service.supervisor import CameraState
from watchkeeper.store.crypto import encode_key, generate_key
from watchkeeper.store.database import open_store
from watchkeeper.web.app import create_app

PASSWORD = "benchmark reviewer password"


def clip_with_onset(destination: Path, onset_s: float) -> None:
    """``onset_s`` seconds of black, then the debate clip, as H.264 at its own rate."""
    with av.open(str(DEBATE)) as source:
        stream = source.streams.video[0]
        rate = stream.average_rate or 25
        frames = [frame.to_ndarray(format="rgb24") for frame in source.decode(stream)]
    with av.open(str(destination), "w") as out:
        video = out.add_stream("libx264", rate=rate)
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt = "yuv420p"
        video.options = {"g": str(int(rate)), "bf": "0"}
        black = np.zeros_like(frames[0])
        for image in [black] * round(onset_s * float(rate)) + frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--onset", type=float, default=3.0, help="Seconds before the face.")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="watchkeeper-latency-"))
    clip = work / "onset.mp4"
    clip_with_onset(clip, args.onset)
    settings = load_settings(
        models_dir=MODELS, data_dir=work / "data", key=encode_key(generate_key())
    )
    store = open_store(settings, create=True)
    shop = set_up_shop(store)
    models = FaceModels.load(settings)
    enrol_subject(shop, models, "Joseph_Biden", photos=3)
    latencies = []
    with RtspServer(clip, loop=False) as camera:
        with shop.tx() as tx:
            alice = tx.user("alice")
            add_camera(tx.session, store.keys, tx.organisation, alice, tx.site, "till", camera.url)
            update_camera(tx.session, store.keys, tx.organisation, alice, tx.camera, enabled=False)
            set_password(tx.session, store.keys, tx.user("dave"), tx.user("dave"), PASSWORD)
        arrivals: list[float] = []
        runtime = Runtime(settings, store)
        supervisor = runtime.supervisor
        app = create_app(settings, store, runtime)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        web = httpx.Client(base_url=base, timeout=None)
        form = web.get("/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
        web.post("/login", data={"name": "dave", "password": PASSWORD, "csrf_token": token})

        def listen() -> None:
            with web.stream("GET", "/alerts/stream") as stream:
                for line in stream.iter_lines():
                    if line == "event: alert":
                        arrivals.append(time.monotonic())

        threading.Thread(target=listen, daemon=True).start()
        for run in range(args.runs):
            if run:
                supervisor.stop()
                camera.playing.clear()
                supervisor.start()
            while not camera.playing.is_set():
                time.sleep(0.001)
            played = time.monotonic()
            seen = len(arrivals)
            while len(arrivals) == seen:
                if time.monotonic() - played > 120:
                    raise SystemExit(f"no alert within 120 s: {supervisor.health()}")
                time.sleep(0.005)
            latency = arrivals[seen] - (played + args.onset)
            latencies.append(latency)
            state = supervisor.health()[0]
            assert state.state is CameraState.RUNNING, state
            print(json.dumps({"run": run + 1, "latency_ms": round(latency * 1e3)}), flush=True)  # noqa: T201
        server.should_exit = True
    store.close()
    ordered = sorted(latencies)
    summary = {
        "runs": len(ordered),
        "onset_s": args.onset,
        "latency_ms_median": round(statistics.median(ordered) * 1e3),
        "latency_ms_max": round(ordered[-1] * 1e3),
    }
    print(json.dumps(summary))  # noqa: T201


if __name__ == "__main__":
    main()
