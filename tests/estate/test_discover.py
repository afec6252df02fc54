"""Discovery: only the named networks, bounded, rate-limited, with progress; and
WS-Discovery on a real (namespaced) network segment."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.camera_simulators import AXIS_CAMERA, HIKVISION_CAMERA, simulated_estate
from watchkeeper.errors import ConfigError, PolicyError
from watchkeeper.estate.discover import Found, RateLimit, merge, parse_networks, sweep

ROOT = Path(__file__).resolve().parents[2]
HELPER = ROOT / "tests" / "estate" / "ws_discovery_in_namespace.py"


@pytest.mark.parametrize(
    ("networks", "yes", "error", "message"),
    [
        (["10.0.0.0/16"], False, PolicyError, "65534 addresses to probe is more than 4096"),
        (["10.0.0.0/20", "10.1.0.0/24"], False, PolicyError, "add --yes"),
        (["10.0.0.300/24"], False, ConfigError, "is not a network"),
        (["camera-vlan"], True, ConfigError, "is not a network"),
        ([], True, ConfigError, "name the network"),
    ],
)
def test_networks_are_refused(networks: list[str], yes: bool, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        parse_networks(networks, yes)


@pytest.mark.parametrize(
    ("networks", "yes", "hosts"),
    [
        (["10.0.0.0/20"], False, 4094),
        (["10.0.0.0/16"], True, 65534),
        (["192.168.1.7"], False, 1),
        (["192.168.1.7/24"], False, 254),
    ],
)
def test_networks_that_are_accepted(networks: list[str], yes: bool, hosts: int) -> None:
    parsed = parse_networks(networks, yes)
    assert sum(n.num_addresses - (2 if n.num_addresses > 2 else 0) for n in parsed) == hosts


def test_the_sweep_finds_the_named_network_only_with_progress(tmp_path: Path) -> None:
    with simulated_estate(tmp_path, [HIKVISION_CAMERA, AXIS_CAMERA, HIKVISION_CAMERA]) as estate:
        first, second, _ = (d.address for d in estate.devices)
        named = [ipaddress.ip_network(first), ipaddress.ip_network(second)]
        progress: list[tuple[int, int]] = []
        found = asyncio.run(
            sweep(
                named,
                estate.plan.services(),
                timeout=0.5,
                progress=lambda d, t: progress.append((d, t)),
            )
        )
    assert set(found) == {first, second}
    plan = estate.plan.services()
    assert found[first].ports == {name: plan[name] for name in HIKVISION_CAMERA.services}
    assert found[second].ports == {name: plan[name] for name in AXIS_CAMERA.services}
    assert progress[-1] == (2 * 6, 2 * 6)
    assert len(progress) == 12


def test_the_rate_limit_spaces_connection_starts() -> None:
    async def starts(count: int, rate: float) -> list[float]:
        limit = RateLimit(rate)
        stamps = []
        for _ in range(count):
            await limit.wait()
            stamps.append(time.monotonic())
        return stamps

    stamps = asyncio.run(starts(21, 100.0))
    # A limiter may be slower than its rate, never faster.
    assert stamps[-1] - stamps[0] >= 20 / 100.0 - 1e-3


def test_merging_keeps_one_entry_per_address() -> None:
    merged = merge(
        [Found("10.0.0.5", {"http": 80}, ["tcp-sweep"])],
        [Found("10.0.0.5", {"onvif": 8899}, ["ws-discovery"], ["onvif://www.onvif.org/name/x"])],
    )
    assert len(merged) == 1
    assert merged[0].ports == {"http": 80, "onvif": 8899}
    assert merged[0].via == ["tcp-sweep", "ws-discovery"]


def namespace_unavailable() -> str | None:
    """Why WS-Discovery cannot be tested in a namespace here, or None."""
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "creating a network namespace (unshare -n) needs root here"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare (util-linux) or ip (iproute2) is not installed"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"unshare -n is not allowed here: {probe.stderr.strip()}"
    return None


def test_ws_discovery_on_a_namespaced_segment() -> None:
    """A veth pair in a fresh network namespace: a real multicast segment that no other
    machine shares. The device publishes with `wsdiscovery`; discovery finds it."""
    reason = namespace_unavailable()
    if reason is not None:
        pytest.skip(f"WS-Discovery test skipped: {reason}")
    setup = " && ".join(
        [
            "ip link set lo up",
            "ip link add wk0 type veth peer name wk1",
            "ip addr add 10.77.0.1/24 dev wk0",
            "ip addr add 10.77.0.2/24 dev wk1",
            "ip link set wk0 up",
            "ip link set wk1 up",
            "ip route add 224.0.0.0/4 dev wk0",
            f"exec {sys.executable} {HELPER} 10.77.0.1 8899",
        ]
    )
    done = subprocess.run(
        ["unshare", "-n", "sh", "-c", setup],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == [
        {
            "address": "10.77.0.1",
            "ports": {"onvif": 8899},
            "via": ["ws-discovery"],
            "scopes": [
                "onvif://www.onvif.org/hardware/DS-2CD2143G0-I",
                "onvif://www.onvif.org/name/SimCam",
            ],
        }
    ]
