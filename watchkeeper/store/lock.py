"""One process at a time owns a data folder: the running service, or a restore.

The lock is ``flock`` on ``<data folder>/serve.lock``, which the kernel releases when
the process ends, however it ends (no stale lock after ``kill -9``). The file holds the
owner's PID, for the message that refuses a second owner.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from watchkeeper.errors import AlreadyRunningError

LOCK_FILE = "serve.lock"


class DataFolderLock:
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
                f"another Watchkeeper service (PID {holder}) is running on the data folder "
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

    def __enter__(self) -> DataFolderLock:
        self.acquire()
        return self

    def __exit__(self, *_: object) -> None:
        self.release()
