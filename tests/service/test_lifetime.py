"""Workers never outlive the service, and one service runs per data folder."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.support.cli import Sandbox, one_line_error
from tests.support.data import DEBATE
from tests.support.net import unused_port, wait_for
from tests.support.rtsp_server import RtspServer
from watchkeeper.service.lifetime import die_with_parent

GRACE_S = 10.0


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for a parent that never reaps it counts as
    ended: it holds no memory, file or socket)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
                found.append(int(entry.name))
    return found


def gone_within(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(alive(pid) for pid in pids):
            return True
        time.sleep(0.1)
    return False


def _worker(ready: multiprocessing.Queue) -> None:
    die_with_parent()
    ready.put(os.getpid())
    time.sleep(600)


def _parent(ready: multiprocessing.Queue) -> None:
    context = multiprocessing.get_context("spawn")
    context.Process(target=_worker, args=(ready,)).start()
    time.sleep(600)


def test_a_worker_dies_with_its_parent_however_the_parent_dies() -> None:
    context = multiprocessing.get_context("spawn")
    ready = context.Queue()
    parent = context.Process(target=_parent, args=(ready,))
    parent.start()
    worker = ready.get(timeout=60)
    assert alive(worker)
    os.kill(parent.pid, signal.SIGKILL)
    parent.join(10)
    assert gone_within([worker], GRACE_S), "the worker outlived its parent"


def camera_workers(serve: subprocess.Popen, count: int, timeout: float = 60) -> list[int]:
    """The ``count`` camera worker processes of ``serve`` (its children running
    Python, once they are all started)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = [
            pid
            for pid in children(serve.pid)
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        if len(workers) >= count:
            return workers
        time.sleep(0.2)
    raise AssertionError(f"{count} camera worker(s) did not start within {timeout} s")


def test_kill_9_of_the_service_ends_its_workers_and_a_second_service_is_refused(
    sandbox: Sandbox,
) -> None:
    assert sandbox.run("init", "--organisation", "Corner Shops", "--admin", "alice").code == 0
    assert sandbox.run("sites", "add", "Leeds", "--user", "alice").code == 0
    with RtspServer(DEBATE, loop=True) as camera:
        added = sandbox.run("cameras", "add", "Leeds", "door", camera.url, "--user", "alice")
        assert added.code == 0, added.stderr
        port = unused_port()
        first = sandbox.serve(port)
        try:
            wait_for(f"http://127.0.0.1:{port}/login", first)
            [worker] = camera_workers(first, 1)

            second = sandbox.run("serve", "--port", str(unused_port()), timeout=60)
            assert second.code == 14
            assert one_line_error(second).startswith(
                f"error: another Watchkeeper service (PID {first.pid}) is running on the data "
                "folder "
            )

            family = children(first.pid)  # the worker, and multiprocessing's helpers
            assert worker in family
            os.kill(first.pid, signal.SIGKILL)
            first.wait(10)
            assert gone_within(family, GRACE_S), "a process outlived the service"
        finally:
            if first.poll() is None:
                first.kill()
            first.stderr.close()

        again = sandbox.serve(port)
        try:
            wait_for(f"http://127.0.0.1:{port}/login", again)
            workers = camera_workers(again, 1)
            time.sleep(2)  # room for a duplicate to appear, were one started
            assert len(camera_workers(again, 1)) == len(workers) == 1
        finally:
            again.send_signal(signal.SIGINT)
            code = again.wait(30)
            output = again.stderr.read()
        assert code == 0, output
