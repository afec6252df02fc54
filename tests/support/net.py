"""Local network helpers for tests that start servers or need one that is absent."""

from __future__ import annotations

import signal
import socket
import subprocess
import time

import httpx


def unused_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (bound, then released).

    Used both to start a server on and, left alone, as an address that refuses
    connections."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    """Wait until ``url`` answers HTTP, failing at once with the process's stderr if
    ``process`` (the server) exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def stop_service(process: subprocess.Popen, timeout: float = 30) -> tuple[int, str]:
    """Ctrl-C a service started with its stderr piped, as text; its exit code and all it
    wrote on stderr. Works when it has already exited, and when :func:`wait_for` has
    read its stderr already (communicate() returns what it read before)."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        _, output = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        _, output = process.communicate()
        return process.returncode, f"(did not stop within {timeout} s after Ctrl-C)\n{output}"
    return process.returncode, output or ""
