"""A real `watchkeeper serve` process and headless Chromium browsers driving it.

The browser is Debian's ``chromium`` with its ``chromidriver`` (``.ci/run``
installs both); without them these tests fail, saying what to install.
Screenshots go to ``test-artifacts/`` in the checkout (or
``WATCHKEEPER_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.data import MODELS
from tests.support.net import unused_port
from watchkeeper.config import Settings
from watchkeeper.governance.accounts import set_password
from watchkeeper.governance.organisation import add_site, add_user, create_organisation
from watchkeeper.store.crypto import generate_key, write_key_file
from watchkeeper.store.database import open_store
from watchkeeper.store.models import Role

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("WATCHKEEPER_TEST_ARTIFACTS", ROOT / "test-artifacts"))
PASSWORD = "a long shop-floor password"
STAFF = {
    "bob": Role.REPORTER,
    "carol": Role.MANAGER,
    "dave": Role.REVIEWER,
    "erin": Role.REVIEWER,
    "frank": Role.AUDITOR,
}
"""Bound to the site "Leeds"; the organisation's admin is "alice"."""


@dataclass
class RunningService:
    base: str
    settings: Settings
    process: subprocess.Popen

    def log(self) -> str:
        return self.process.stderr.read() if self.process.stderr else ""


@pytest.fixture
def service(tmp_path: Path) -> Iterator[RunningService]:
    """`watchkeeper serve` over a fresh database: "Corner Shops", site "Leeds", its staff."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")}
    env |= {
        "WATCHKEEPER_DATA_DIR": str(tmp_path / "data"),
        "WATCHKEEPER_KEY_FILE": str(tmp_path / "key"),
        "WATCHKEEPER_MODELS_DIR": str(MODELS),
        "WATCHKEEPER_CACHE_DIR": str(tmp_path / "cache"),
    }
    settings = Settings(data_dir=tmp_path / "data", key_file=tmp_path / "key", models_dir=MODELS)
    write_key_file(settings.key_file, generate_key())
    store = open_store(settings, create=True)
    try:
        with store.session() as session:
            organisation, alice = create_organisation(session, store.keys, "Corner Shops", "alice")
            assert alice is not None
            leeds = add_site(session, store.keys, organisation, alice, "Leeds")
            set_password(session, store.keys, alice, alice, PASSWORD)
            for name, role in STAFF.items():
                user = add_user(session, store.keys, organisation, alice, name, role, [leeds])
                set_password(session, store.keys, alice, user, PASSWORD)
    finally:
        store.close()
    port = unused_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "watchkeeper", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        assert process.poll() is None, process.communicate()[1]
        try:
            httpx.get(f"{base}/login", timeout=1)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "serve did not answer within 90 s"
            time.sleep(0.2)
    service = RunningService(base, settings, process)
    try:
        yield service
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        assert code == 0, service.log()


def chromium_paths() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.fail(
            "the browser tests need Debian's chromium and chromium-driver packages "
            "(apt-get install chromium chromium-driver; .ci/run installs them)"
        )
    return browser, driver


@pytest.fixture
def browsers() -> Iterator[Callable[[], WebDriver]]:
    """Opens headless Chromium windows (each its own cookies); all closed at the end."""
    browser, driver = chromium_paths()
    opened: list[WebDriver] = []

    def open_browser() -> WebDriver:
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for argument in (
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--window-size=1280,1000",
            "--autoplay-policy=no-user-gesture-required",
        ):
            options.add_argument(argument)
        window = webdriver.Chrome(options=options, service=Service(driver))
        window.implicitly_wait(0)
        opened.append(window)
        return window

    try:
        yield open_browser
    finally:
        for window in opened:
            window.quit()


def screenshot(window: WebDriver, name: str) -> Path:
    """Save the whole page as ``test-artifacts/<name>.png``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    height = window.execute_script("return document.documentElement.scrollHeight")
    window.set_window_size(1280, max(1000, min(int(height) + 40, 4000)))
    window.save_screenshot(str(path))
    return path


def wait_for(window: WebDriver, css: str, timeout: float = 30):
    return WebDriverWait(window, timeout).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css))
    )


def sign_in(window: WebDriver, base: str, name: str, next_path: str = "/") -> None:
    window.get(f"{base}/login?next={next_path}")
    window.find_element(By.NAME, "name").send_keys(name)
    window.find_element(By.NAME, "password").send_keys(PASSWORD)
    window.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    WebDriverWait(window, 15).until(lambda w: "/login" not in w.current_url)
