"""Processes that never outlive the service.

A camera's worker process holds a decoder, models and the camera's stream. If the
service dies without stopping it (``kill -9``, the out-of-memory killer), an orphaned
worker would go on using a core and the camera's session, and the next start would run
a second set beside it. So each worker asks the kernel to kill it when its parent dies
(Linux's parent-death signal; elsewhere a thread watches the parent); and the service
holds its data folder's lock (:class:`watchkeeper.store.lock.DataFolderLock`), so that
it never starts beside a running one.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading

PR_SET_PDEATHSIG = 1
PARENT_POLL_S = 1.0


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
