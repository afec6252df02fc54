"""Estate discovery at scale: the TCP sweep over 1,000 simulated devices.

A child process serves 1,000 simulated cameras and recorders (the test suite's
Hikvision, Dahua, white-label and Axis personas in turn, each on its own loopback
address of a /22, listening on their usual services); this process sweeps the whole
/22 (1,022 addresses) on the six ports of the plan, as `watchkeeper estate discover`
does, and reports the time, the attempts per second, the devices found and the
sweep's memory: the Python allocations' peak (tracemalloc) and the growth of the
process's peak RSS.

    uv run python benchmarks/estate_discovery.py [--devices 1000] [--rate 2000] [--concurrency 256]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.camera_simulators import (
    AXIS_CAMERA,
    DAHUA_NVR,
    HIKVISION_CAMERA,
    WHITE_LABEL_CAMERA,
    simulated_estate,
)
from watchkeeper.estate.discover import count_hosts, sweep

PERSONAS = [HIKVISION_CAMERA, DAHUA_NVR, WHITE_LABEL_CAMERA, AXIS_CAMERA]


def serve(devices: int, ready, stop) -> None:
    with tempfile.TemporaryDirectory() as folder:
        personas = [PERSONAS[i % len(PERSONAS)] for i in range(devices)]
        with simulated_estate(Path(folder), personas, prefix=22) as estate:
            ready.send(
                (str(estate.network), estate.plan.services(), [d.address for d in estate.devices])
            )
            stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--concurrency", type=int, default=256)
    args = parser.parse_args()
    receive, send = multiprocessing.Pipe(duplex=False)
    stop = multiprocessing.Event()
    child = multiprocessing.Process(target=serve, args=(args.devices, send, stop), daemon=True)
    started = time.monotonic()
    child.start()
    network_text, plan, addresses = receive.recv()
    setup = time.monotonic() - started
    import ipaddress

    network = ipaddress.ip_network(network_text)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    began = time.monotonic()
    found = asyncio.run(
        sweep([network], plan, rate=args.rate, concurrency=args.concurrency, timeout=1.0)
    )
    seconds = time.monotonic() - began
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stop.set()
    child.join(timeout=60)
    attempts = count_hosts(network) * len(plan)
    missing = sorted(set(addresses) - set(found))
    print(  # noqa: T201 - a command-line report
        json.dumps(
            {
                "devices": args.devices,
                "addresses_swept": count_hosts(network),
                "ports": len(plan),
                "attempts": attempts,
                "rate_limit_per_s": args.rate,
                "concurrency": args.concurrency,
                "found": len(found),
                "missing": len(missing),
                "sweep_s": round(seconds, 2),
                "attempts_per_s": round(attempts / seconds),
                "python_peak_mib": round(peak / 2**20, 2),
                "rss_growth_mib": round((rss_after - rss_before) / 1024, 1),
                "simulator_start_s": round(setup, 1),
            }
        )
    )
    if missing:
        sys.exit(f"{len(missing)} simulated devices were not found, e.g. {missing[:3]}")


if __name__ == "__main__":
    main()
