"""Finding cameras and recorders: ONVIF WS-Discovery on the local segment, and a
bounded, rate-limited TCP probe of the networks the user names, and no others.

The sweep opens a TCP connection to each address and port (closing it at once; it
sends nothing), at most ``rate`` new connections a second and ``concurrency`` at a
time. More than :data:`MAX_ADDRESSES_WITHOUT_CONFIRMATION` addresses need an explicit
yes (a /20 or more), so that a typo cannot sweep a whole campus.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from watchkeeper.errors import ConfigError, PolicyError

CAMERA_PORTS = {
    "rtsp": 554,
    "http": 80,
    "https": 443,
    "hikvision-sdk": 8000,
    "http-alt": 8080,
    "dahua-sdk": 37777,
    "onvif-alt": 8899,
}
"""The usual camera and recorder ports: RTSP, the web interface (HTTP, HTTPS, 8080),
ONVIF on port 80 or 8899 (as many white-label devices use), and the vendors' SDK
ports (Hikvision 8000, Dahua 37777)."""

MAX_ADDRESSES_WITHOUT_CONFIRMATION = 4096
Progress = Callable[[int, int], None]
"""Called with (done, total) as the sweep goes."""


@dataclass
class Found:
    address: str
    ports: dict[str, int] = field(default_factory=dict)
    via: list[str] = field(default_factory=list)
    """``ws-discovery`` and/or ``tcp-sweep``."""
    scopes: list[str] = field(default_factory=list)
    """ONVIF scopes announced in WS-Discovery (name, hardware, location)."""


def parse_networks(
    networks: Iterable[str], yes: bool
) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The named networks, refused when malformed, empty, or too large without ``yes``."""
    parsed = []
    for text in networks:
        try:
            parsed.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ConfigError(
                f"{text!r} is not a network (write 192.168.1.0/24 or one address)"
            ) from None
    if not parsed:
        raise ConfigError("name the network(s) to probe with --network (e.g. 192.168.1.0/24)")
    total = sum(count_hosts(net) for net in parsed)
    if total > MAX_ADDRESSES_WITHOUT_CONFIRMATION and not yes:
        raise PolicyError(
            f"{total} addresses to probe is more than {MAX_ADDRESSES_WITHOUT_CONFIRMATION}; "
            "check the networks and add --yes to go ahead"
        )
    return parsed


def count_hosts(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> int:
    return network.num_addresses if network.num_addresses <= 2 else network.num_addresses - 2


class RateLimit:
    """At most ``rate`` starts a second, spread evenly."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next_start = time.monotonic()
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self.lock:
            now = time.monotonic()
            if self.next_start > now:
                await asyncio.sleep(self.next_start - now)
            self.next_start = max(now, self.next_start) + self.interval


async def sweep(
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
    ports: dict[str, int] | None = None,
    *,
    rate: float = 500.0,
    concurrency: int = 256,
    timeout: float = 1.0,
    progress: Progress | None = None,
) -> dict[str, Found]:
    """Every address in ``networks`` with at least one of ``ports`` open."""
    ports = ports or CAMERA_PORTS
    total = sum(count_hosts(net) for net in networks) * len(ports)
    targets = iter(
        (str(host), name, port)
        for net in networks
        for host in _hosts(net)
        for name, port in ports.items()
    )
    limit = RateLimit(rate)
    found: dict[str, Found] = {}
    done = 0

    async def worker() -> None:
        # Workers share one lazy iterator: memory stays flat whatever the sweep's size.
        nonlocal done
        for address, name, port in targets:
            await limit.wait()
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout)
            except (TimeoutError, OSError):
                pass
            else:
                writer.close()
                device = found.setdefault(address, Found(address, via=["tcp-sweep"]))
                device.ports[name] = port
            done += 1
            if progress is not None:
                progress(done, total)

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, total)))))
    return dict(sorted(found.items(), key=lambda item: ipaddress.ip_address(item[0])))


def _hosts(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Iterable:
    return [network.network_address] if network.num_addresses == 1 else network.hosts()


def ws_discover(timeout: float = 3.0) -> list[Found]:
    """ONVIF devices that answer a WS-Discovery probe for ``NetworkVideoTransmitter``
    on the local segment (multicast 239.255.255.250:3702), via the ``wsdiscovery``
    package."""
    from wsdiscovery import QName
    from wsdiscovery.discovery import ThreadedWSDiscovery

    onvif = QName("http://www.onvif.org/ver10/network/wsdl", "NetworkVideoTransmitter", "dn")
    discovery = ThreadedWSDiscovery()
    discovery.start()
    try:
        services = discovery.searchServices(types=[onvif], timeout=timeout)
    finally:
        discovery.stop()
    found: dict[str, Found] = {}
    for service in services:
        for xaddr in service.getXAddrs():
            parts = urlsplit(xaddr)
            if not parts.hostname:
                continue
            device = found.setdefault(parts.hostname, Found(parts.hostname, via=["ws-discovery"]))
            device.ports["onvif"] = parts.port or (443 if parts.scheme == "https" else 80)
            device.scopes = sorted({str(scope.getValue()) for scope in service.getScopes()})
    return list(found.values())


def merge(*groups: Iterable[Found]) -> list[Found]:
    """One entry per address, with the ports and ways it was found."""
    merged: dict[str, Found] = {}
    for group in groups:
        for item in group:
            into = merged.setdefault(item.address, Found(item.address))
            into.ports |= item.ports
            into.via = sorted(set(into.via) | set(item.via))
            into.scopes = sorted(set(into.scopes) | set(item.scopes))
    return list(merged.values())
