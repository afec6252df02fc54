"""`watchkeeper systemd-unit`: a unit that systemd accepts and that runs this installation."""

from __future__ import annotations

import configparser
import shlex
import subprocess
from pathlib import Path

from tests.support.cli import Sandbox
from tests.support.data import MODELS


def test_the_unit_runs_this_installation_with_this_data_and_key(sandbox: Sandbox) -> None:
    run = sandbox.run("systemd-unit", "--user", "root")
    assert run.code == 0, run.stderr
    unit = sandbox.root / "watchkeeper.service"
    unit.write_text(run.stdout)
    verified = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert verified.returncode == 0, verified.stderr
    assert "watchkeeper.service" not in verified.stderr, verified.stderr
    parsed = configparser.ConfigParser(strict=False, interpolation=None)
    parsed.optionxform = str  # keys as written
    parsed.read_string(run.stdout)
    service = parsed["Service"]
    command = shlex.split(service["ExecStart"])
    assert command[-1] == "serve"
    assert Path(command[0]).is_absolute()
    helped = subprocess.run([*command[:-1], "--help"], capture_output=True, text=True, check=False)
    assert helped.returncode == 0, helped.stderr
    home = sandbox.root / "home"
    environment = dict(
        line.removeprefix("Environment=").split("=", 1)
        for line in run.stdout.splitlines()
        if line.startswith("Environment=")
    )
    data = home / ".local" / "share" / "watchkeeper"  # the user's who made it (XDG_DATA_HOME)
    assert environment == {
        "WATCHKEEPER_DATA_DIR": str(data),
        "WATCHKEEPER_MODELS_DIR": str(MODELS.resolve()),  # the sandbox sets it
        "WATCHKEEPER_KEY_FILE": str(home / ".config" / "watchkeeper" / "key"),
    }
    assert service["WorkingDirectory"] == str(data)
    assert service["KillSignal"] == "SIGINT", "cameras store their last alerts on the way out"
