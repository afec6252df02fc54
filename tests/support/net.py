"""Local network helpers for tests that start servers or need one that is absent."""

from __future__ import annotations

import socket


def unused_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (bound, then released).

    Used both to start a server on and, left alone, as an address that refuses
    connections."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
