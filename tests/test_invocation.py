"""Every command the program prints works when copied (issue 18: the first start said
`watchkeeper users create ...`, which a shell without the checkout's environment on its
PATH answered with "command not found")."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import Sandbox
from tests.support.net import stop_service, unused_port, wait_for
from watchkeeper.cli import invocation as module

VENV_BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def fresh() -> None:
    module.invocation.cache_clear()


def test_watchkeeper_on_the_path_is_printed_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{VENV_BIN}{os.pathsep}/usr/bin{os.pathsep}/bin")
    monkeypatch.delenv("UV_RUN_RECURSION_DEPTH", raising=False)  # not started by `uv run`
    assert module.invocation() == "watchkeeper"
    assert module.as_typed("run `watchkeeper init`") == "run `watchkeeper init`"


def test_under_uv_run_the_full_path_is_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    """`uv run` puts the environment on its children's PATH only: the shell the user
    copies into has not got it."""
    monkeypatch.setenv("PATH", f"{VENV_BIN}{os.pathsep}/usr/bin{os.pathsep}/bin")
    monkeypatch.setenv("UV_RUN_RECURSION_DEPTH", "1")
    assert module.invocation() == shlex.quote(str(VENV_BIN / "watchkeeper"))


def test_elsewhere_the_full_path_is_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"/usr/bin{os.pathsep}/bin")
    command = shlex.quote(str(VENV_BIN / "watchkeeper"))
    assert module.invocation() == command
    assert module.as_typed("run `watchkeeper models fetch` or `watchkeeper init`") == (
        f"run `{command} models fetch` or `{command} init`"
    )


def test_the_first_start_prints_a_command_that_works_when_copied(sandbox: Sandbox) -> None:
    """`serve` in a shell whose PATH lacks the environment (as after `uv run` from a
    checkout): the command it prints for the first administrator, run as printed by a
    shell in another folder, makes one."""
    port = unused_port()
    shell_path = f"/usr/bin{os.pathsep}/bin"
    process = sandbox.serve(port, PATH=shell_path)
    try:
        wait_for(f"http://127.0.0.1:{port}/login", process)
    finally:
        code, output = stop_service(process)
    assert code == 0, output
    line = next(line for line in output.splitlines() if "users create NAME" in line)
    printed = line.split("`")[1]
    assert printed.startswith(str(VENV_BIN / "watchkeeper"))
    typed = printed.replace("NAME", "boss") + " --password-stdin"
    made = subprocess.run(
        ["bash", "-c", typed],
        cwd=sandbox.root / "tmp",
        env=sandbox.env(PATH=shell_path),
        input="correct horse battery\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    assert "created admin 'boss'" in made.stderr
