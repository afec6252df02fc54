"""How many live 1080p camera streams this machine holds.

Serves the 1080p crowd clip, looped in real time (25 fps), from the test-suite's
RTSP server, and runs `watchkeeper bench` on 1, 2, ... copies of the stream for
a while each. A count is held when every camera is analysed at the target rate
or better and the p95 frame-to-decision latency stays under the limit. Prints
one JSON line per count, then a summary line.

    uv run python benchmarks/sustained_streams.py [--max 6 | --counts 8,16,24] [--seconds 40]
        [--embedder sface-2021dec | dlib-resnet-v1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.data import CROWD, MODELS
from tests.support.rtsp_server import RtspServer


def measure(
    url: str, cameras: int, seconds: float, fps: float, processes: int, embedder: str
) -> dict:
    command = [
        sys.executable, "-m", "watchkeeper", "--models-dir", str(MODELS), "bench", url,
        "--cameras", str(cameras), "--duration", str(seconds), "--fps", str(fps),
        "--no-baseline", "--embed-seconds", "0", "--gallery-sizes", "1000", "--json",
        "--processes", str(processes),
    ]  # fmt: skip
    environment = {**os.environ, "WATCHKEEPER_EMBEDDER": embedder}
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=environment)
    streams = json.loads(done.stdout)["streams"]
    # The first second is connection set-up; rates are over the whole run.
    return {
        "embedder": embedder,
        "cameras": cameras,
        "processes": processes,
        "fps_per_camera_min": streams["fps_per_camera_min"],
        "fps_total": streams["fps_total"],
        "dropped": sum(camera["dropped"] for camera in streams["cameras"]),
        "decoded": sum(camera["decoded"] for camera in streams["cameras"]),
        "frame_to_decision_p95_ms": streams["frame_to_decision_p95_ms"],
        "cores_busy": streams["cores_busy"],
        "peak_rss_mib": streams["peak_rss_mib"],
        "errors": [camera["error"] for camera in streams["cameras"] if camera["error"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max", type=int, default=6, help="Most streams to try.")
    parser.add_argument(
        "--counts", default=None, help="Stream counts to try, comma-separated (instead of 1..max)."
    )
    parser.add_argument("--seconds", type=float, default=40.0, help="Run time per count.")
    parser.add_argument("--fps", type=float, default=5.0, help="Analysed fps to reach per camera.")
    parser.add_argument(
        "--sample-fps",
        type=float,
        default=5.5,
        help="Rate asked of the sampler; a little above --fps, because a live stream's "
        "frames arrive unevenly and the sampler can only pick among them.",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=0,
        help="Worker processes (streaming.processes); 0, the default, runs one per camera "
        "with its share of the cores, as `watchkeeper serve` does.",
    )
    parser.add_argument("--latency-ms", type=float, default=1000.0, help="p95 limit.")
    parser.add_argument(
        "--embedder", default="sface-2021dec", help="Identity embedder (registry name)."
    )
    args = parser.parse_args()
    held = 0
    with RtspServer(Path(CROWD), loop=True) as server:
        counts = [int(n) for n in args.counts.split(",")] if args.counts else range(1, args.max + 1)
        for cameras in counts:
            result = measure(
                server.url, cameras, args.seconds, args.sample_fps, args.processes, args.embedder
            )
            result["held"] = (
                not result["errors"]
                and result["fps_per_camera_min"] >= args.fps
                and result["frame_to_decision_p95_ms"] < args.latency_ms
            )
            print(json.dumps(result), flush=True)  # noqa: T201 - a command-line report
            if result["held"]:
                held = max(held, cameras)
    print(json.dumps({"embedder": args.embedder, "streams_held": held, "fps": args.fps}))  # noqa: T201


if __name__ == "__main__":
    main()
