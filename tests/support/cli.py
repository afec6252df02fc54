"""Running the `watchkeeper` command as a user does: a separate process, its own
home, temp and working folders, so a test can see every file it writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.data import MODELS

MACHINE_ENVIRONMENT = dict(os.environ)
"""The environment the suite was started with, before the session fixture points HOME
and the XDG folders elsewhere (this module is imported first, by conftest.py)."""


def network_settings() -> dict[str, str]:
    """How this machine reaches the network (proxies, its certificate authorities): what
    a fresh home folder on the same machine would still have."""
    words = ("PROXY", "CERT", "CA_BUNDLE", "SSL_")
    return {k: v for k, v in MACHINE_ENVIRONMENT.items() if any(w in k.upper() for w in words)}


def user_folders(home: Path) -> dict[str, str]:
    """The XDG variables pointing into ``home``, so that nothing reads or writes the
    real user's configuration (the encryption key), data or cache folders, wherever
    the machine points them."""
    return {
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
    }


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines()]


@dataclass
class Sandbox:
    """A working folder, home and temp folder of the command's own, to see what it writes."""

    root: Path

    @property
    def cwd(self) -> Path:
        return self.root / "cwd"

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            key: value for key, value in os.environ.items() if not key.startswith("WATCHKEEPER_")
        }
        home = self.root / "home"
        env.update(
            HOME=str(home),
            TMPDIR=str(self.root / "tmp"),
            **user_folders(home),
            WATCHKEEPER_MODELS_DIR=str(MODELS),
            COLUMNS="200",
        )
        env.update(extra)
        return env

    def run(self, *args: str, timeout: float = 300, stdin: str | None = None, **env: str) -> Run:
        done = subprocess.run(
            [sys.executable, "-m", "watchkeeper", *args],
            cwd=self.cwd,
            env=self.env(**env),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Run(done.returncode, done.stdout, done.stderr)

    def serve(self, port: int, *args: str, **env: str) -> subprocess.Popen:
        """Start `watchkeeper [ARGS] serve --port PORT` in the background, as a user
        starts the service; its stderr is piped as text."""
        return subprocess.Popen(
            [sys.executable, "-m", "watchkeeper", *args, "serve", "--port", str(port)],
            cwd=self.cwd,
            env=self.env(**env),
            stderr=subprocess.PIPE,
            text=True,
        )

    def files(self) -> set[Path]:
        return {p.relative_to(self.root) for p in self.root.rglob("*") if p.is_file()}


def one_line_error(run: Run) -> str:
    """The reason for a failure: one line, the last on stderr (warnings may precede it)."""
    lines = run.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == lines[-1:], run.stderr
    return lines[-1]
