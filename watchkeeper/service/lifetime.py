"""Processes that never outlive the service, and one service per data folder.

A camera's worker process holds a decoder, models and the camera's stream. If the
service dies without stopping it (``kill -9``, the out-of-memory killer), an orphaned
worker would go on using a core and the camera's session, and the next start would run
a second set beside it. So each worker asks the kernel to kill it when its parent dies
(Linux's parent-death signal; elsewhere a thread watches the parent), and a service
takes an exclusive lock on its data folder, refusing to start beside a running one.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
from pathlib import Path
from typing import IO

from watchkeeper.errors import AlreadyRunningError

PR_SET_PDEATHSIG = 1
PARENT_POLL_S = 1.0
LOCK_FILE = "serve.lock"


def die_with_parent() -> None:
    """End this process as soon as the process that started it ends (call it first
    thing in a worker)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    armed = False
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        armed = libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    if not armed:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if not parent.is_alive():  # it died before the signal was armed
        os._exit(1)


def _watch_parent(parent: multiprocessing.process.BaseProcess) -> None:
    while parent.is_alive():
        threading.Event().wait(PARENT_POLL_S)
    os._exit(1)


class InstanceLock:
    """An exclusive lock on ``<data folder>/serve.lock`` holding the service's PID,
    released by the kernel whenever the process ends, however it ends."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        import fcntl  # POSIX only, like the service's process handling

        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise AlreadyRunningError(
                f"another `watchkeeper serve` (PID {holder}) is running on the data folder "
                f"{self.path.parent}; stop it first (two would run every camera twice)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing releases the lock; the file stays, harmless
            self._file = None

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(self, *_: object) -> None:
        self.release()
