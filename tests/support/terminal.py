"""A command typed at a terminal: a shell command run on a pseudo-terminal of its own,
read as it writes and answered as a person would, prompt by prompt.

A program that asks on the terminal (``sys.stdin.isatty()``, passwords read from
``/dev/tty`` without echo) behaves here as it does for a person at a keyboard, which a
pipe cannot show: with a pipe it takes another path (or reads the password from stdin).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")
"""Terminal control sequences (colours, cursor moves, titles) and carriage returns."""


def plain(text: str) -> str:
    """``text`` as a person reads it on the screen: without control sequences."""
    return ESCAPES.sub("", text)


class Terminal:
    """``bash -c COMMAND`` in ``cwd`` with ``env``, on a new pseudo-terminal that is its
    controlling terminal (a session of its own, as a login shell has). Everything it
    writes is collected by a reader thread, so that it never blocks on a full terminal."""

    def __init__(self, command: str, cwd: Path, env: dict[str, str]) -> None:
        self.command = command
        master, slave = os.openpty()
        self._master = master
        try:
            # setsid(1) makes a new session whose controlling terminal is the one on
            # stdin, which /dev/tty (getpass) opens; it execs bash in its own process
            # (this one is no process-group leader, so it need not fork).
            self.process = subprocess.Popen(
                ["setsid", "--ctty", "bash", "-c", command],
                cwd=cwd,
                env=env,
                stdin=slave,
                stdout=slave,
                stderr=slave,
            )
        finally:
            os.close(slave)
        self._screen = ""
        self._read_up_to = 0
        self._closed = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name=f"terminal {command}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._master, 4096)
            except OSError:  # EIO: every process holding the terminal has ended
                chunk = b""
            with self._changed:
                if not chunk:
                    self._closed = True
                    self._changed.notify_all()
                    return
                self._screen += plain(chunk.decode(errors="replace"))
                self._changed.notify_all()

    @property
    def screen(self) -> str:
        """Everything written so far, as plain text."""
        with self._changed:
            return self._screen

    def expect(self, pattern: str, timeout: float) -> re.Match[str]:
        """Wait for ``pattern`` (a regular expression) in what was written since the last
        match; fail with the whole screen after ``timeout`` seconds or at the end."""
        found = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                match = found.search(self._screen, self._read_up_to)
                if match:
                    self._read_up_to = match.end()
                    return match
                left = deadline - time.monotonic()
                assert not self._closed, (
                    f"`{self.command}` ended without writing {pattern!r}:\n{self._screen}"
                )
                assert left > 0, (
                    f"`{self.command}` did not write {pattern!r} in {timeout} s:\n{self._screen}"
                )
                self._changed.wait(left)

    def type(self, line: str) -> None:
        """Type ``line`` and press Enter."""
        os.write(self._master, f"{line}\n".encode())

    def answer(self, prompt: str, line: str, timeout: float = 60) -> None:
        """Wait for ``prompt`` (a regular expression), then type ``line``."""
        self.expect(prompt, timeout)
        self.type(line)

    def finish(self, timeout: float) -> int:
        """Wait for the command to end; its exit status."""
        code = self.process.wait(timeout)
        self._reader.join(timeout)
        return code

    def interrupt(self) -> None:
        """Press Ctrl-C: SIGINT to the terminal's foreground processes."""
        os.write(self._master, b"\x03")

    def close(self) -> None:
        """End the command if it still runs (SIGKILL to its session) and free the terminal."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
        self._reader.join(30)
        os.close(self._master)
