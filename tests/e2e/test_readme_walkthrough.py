"""The README's walk-through "From nothing to the first reviewed alert", followed step
by step as it is written (issue 18).

The test reads the walk-through from README.md: its steps, the pages they name and the
commands in them. It runs each command exactly as written, on a terminal of its own
(passwords are asked there, as for a person), after the README's `source
.venv/bin/activate` in this checkout, with only the placeholders the README declares
(ADMIN, SITE, NAME, ROLE) and the camera's example address (host and port) replaced.
The service is the Quick start's `watchkeeper serve`, started on a terminal, where its
first start asks for the administrator (tests/e2e/test_first_hour.py follows the
Quick start's install itself, from a fresh clone). The web steps are done in headless
Chromium: the camera is the debate clip from an RTSP server of the test's own, the
entry's stills are LFW photos of Joe Biden, and the alert is confirmed by two reviewers;
then the database holds it as confirmed and `watchkeeper audit verify` finds the chain
intact.

Sandboxed: home, XDG folders and temp folder are the test's own; the models are the
shared ones (WATCHKEEPER_MODELS_DIR; fetching them is test_first_hour's part); the
port is a free one (WATCHKEEPER_WEB__PORT) instead of 8000.

If the README's walk-through changes shape (a step added or removed, another page,
command, button or link), the test fails saying what it found and what it follows:
change the test with the README. The test's Chromium may play sound without a click
(the fixture's autoplay setting), so the README's "clicked once" is done, not proven.
"""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait
from sqlalchemy import select

from tests.e2e.conftest import PASSWORD, ROOT, screenshot, sign_in, wait_for
from tests.e2e.test_shop_day import read, review, submit, text_of
from tests.support.cli import Sandbox
from tests.support.data import DEBATE, MODELS, lfw_photos
from tests.support.net import unused_port
from tests.support.readme import between, code_spans, numbered_steps, readme, without_code
from tests.support.rtsp_server import RtspServer
from tests.support.shop import TWO_FACE_PHOTOS
from tests.support.terminal import Terminal
from watchkeeper.config import Settings
from watchkeeper.store.database import open_store
from watchkeeper.store.models import Alert, AlertStatus, Decision, Review, User

ADMIN = "owner"
"""The administrator's name typed at the first start's question."""
SITE = "Leeds"
STAFF = {"bob": "reporter", "carol": "manager", "dave": "reviewer", "erin": "reviewer"}
"""A member of staff per role the walk-through needs: two reviewers confirm an alert."""
CAMERA = "door"
BIDEN_PHOTOS = [p for p in lfw_photos("Joseph_Biden") if p.name not in TWO_FACE_PHOTOS][:3]


@dataclass(frozen=True)
class Shape:
    """What one step of the walk-through does, as far as the test follows it: the
    commands it gives (their words before the first placeholder or option), the pages
    it names and the buttons and links it names (in *italics*), which the test presses."""

    commands: tuple[str, ...] = ()
    pages: tuple[str, ...] = ()
    presses: tuple[str, ...] = ()


FOLLOWED = [
    Shape(commands=("watchkeeper sites add",)),
    Shape(pages=("/cameras",), presses=("Test connection", "Add camera", "Disable")),
    Shape(commands=("watchkeeper users create",)),
    Shape(pages=("/incidents", "/watchlist"), presses=("Record an incident", "Propose an entry")),
    Shape(pages=("/watchlist",)),
    Shape(pages=("/alerts",)),
]
"""The walk-through as this test follows it, step by step."""

PLACEHOLDER = re.compile(r"\b[A-Z][A-Z_]{2,}\b")


def command_words(command: str) -> str:
    """A command's words before its first placeholder or option: what it does."""
    words = []
    for word in command.split():
        if word.startswith("-") or PLACEHOLDER.fullmatch(word):
            break
        words.append(word)
    return " ".join(words)


@dataclass(frozen=True)
class Walkthrough:
    """The walk-through as the README writes it."""

    activate: str
    """How the second terminal gets `watchkeeper` on its PATH."""
    placeholders: set[str]
    """The words the README says stand for the reader's own values."""
    steps: list[str]
    commands: list[list[str]]
    pages: list[list[str]]
    address: str
    """The address a browser signs in at."""
    camera_address: str
    """The example camera stream address."""

    def step(self, number: int) -> str:
        return self.steps[number - 1]

    def command(self, number: int, **values: str) -> str:
        """Step ``number``'s one command, its placeholders replaced by ``values``."""
        (command,) = self.commands[number - 1]
        used = set(PLACEHOLDER.findall(command))
        assert used <= self.placeholders, (
            f"step {number}'s `{command}` uses {sorted(used - self.placeholders)}, which "
            f"the walk-through does not say are placeholders (it says {sorted(self.placeholders)})"
        )
        assert used <= set(values), f"the test has no value for {sorted(used - set(values))}"
        return PLACEHOLDER.sub(lambda m: values.get(m.group(0), m.group(0)), command)


def walkthrough() -> Walkthrough:
    """Read the walk-through; fail with what differs if it is not the one this test
    follows."""
    text = between(readme(), "**From nothing to the first reviewed alert**", "**Run it as a")
    found = numbered_steps(text)
    commands = [
        [span for span in code_spans(step) if span.startswith("watchkeeper ")]
        for step in found.steps
    ]
    pages = [[span for span in code_spans(step) if span.startswith("/")] for step in found.steps]
    shapes = [
        Shape(
            tuple(command_words(c) for c in step_commands),
            tuple(step_pages),
            tuple(re.findall(r"(?<!\*)\*([^*]+)\*(?!\*)", step)),
        )
        for step, step_commands, step_pages in zip(found.steps, commands, pages, strict=True)
    ]
    if shapes != FOLLOWED:
        pytest.fail(
            "README.md's walk-through is not the one this test follows; change "
            "tests/e2e/test_readme_walkthrough.py with it. The README's steps:\n"
            + "\n".join(f"  {n}. {shape}" for n, shape in enumerate(shapes, 1))
            + "\nthe test's:\n"
            + "\n".join(f"  {n}. {shape}" for n, shape in enumerate(FOLLOWED, 1))
        )
    activate = [span for span in code_spans(found.intro) if span.startswith("source ")]
    assert activate, "the walk-through no longer says how `watchkeeper` gets on the PATH"
    addresses = re.findall(r"http://[\w.:]+/", found.steps[1])
    assert addresses, "step 2 no longer says where to sign in"
    streams = [span for span in code_spans(found.steps[1]) if span.startswith("rtsp://")]
    assert streams, "step 2 no longer gives a camera's stream address"
    return Walkthrough(
        activate=activate[0],
        placeholders=set(PLACEHOLDER.findall(without_code(found.intro))),
        steps=found.steps,
        commands=commands,
        pages=pages,
        address=addresses[0],
        camera_address=streams[0],
    )


def service_command() -> str:
    """The Quick start's first command starts `watchkeeper serve` (after installing,
    which test_first_hour follows): the command run here after activation."""
    block = re.search(r"## Quick start\n\n```\n(.*?)```", readme(), re.S)
    assert block is not None, "the README starts with a Quick start code block"
    first = block.group(1).strip().splitlines()[0]
    assert first.endswith(" watchkeeper serve"), first
    return "watchkeeper serve"


@dataclass
class Shell:
    """A second terminal in the checkout: each command runs after the README's
    activation, as typed there."""

    activate: str
    env: dict[str, str]

    def start(self, command: str) -> Terminal:
        return Terminal(f"{self.activate} && {command}", ROOT, self.env)

    def run(
        self, command: str, answers: Sequence[tuple[str, str]] = (), timeout: float = 120
    ) -> str:
        """Run ``command``, answering each prompt as it comes; what it wrote (exit 0)."""
        terminal = self.start(command)
        try:
            for prompt, line in answers:
                terminal.answer(prompt, line, timeout)
            code = terminal.finish(timeout)
            assert code == 0, f"`{command}` exited {code}:\n{terminal.screen}"
            return terminal.screen
        finally:
            terminal.close()


@pytest.fixture
def camera() -> Iterator[RtspServer]:
    """An IP camera whose stream is the debate clip, played again and again."""
    with RtspServer(DEBATE, path="stream1", loop=True) as server:
        yield server


TONE_COUNTER = """
window.tones = 0;
const start = OscillatorNode.prototype.start;
OscillatorNode.prototype.start = function (...args) {
  window.tones += 1;
  return start.apply(this, args);
};
"""
"""Counts the tones a page plays (loaded before the page's own scripts)."""


def sign_out(window: WebDriver) -> None:
    """*Sign out*, for the next person at the same browser."""
    submit(window, "form[action='/logout']", "Sign out")
    WebDriverWait(window, 15).until(lambda w: "/login" in w.current_url)


def test_the_readme_walkthrough_to_the_first_reviewed_alert(
    tmp_path: Path, camera: RtspServer, browsers: Callable[[], WebDriver]
) -> None:
    readme_steps = walkthrough()
    sandbox = Sandbox(tmp_path / "box")
    home = sandbox.root / "home"
    port = unused_port()
    env = sandbox.env(WATCHKEEPER_MODELS_DIR=str(MODELS), WATCHKEEPER_WEB__PORT=str(port))
    # A login shell's PATH: not this test run's environment, which activation adds.
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    for started_by_the_tests in ("UV_RUN_RECURSION_DEPTH", "VIRTUAL_ENV"):
        env.pop(started_by_the_tests, None)
    assert str(Path(sys.executable).parent) == str(ROOT / ".venv" / "bin"), (
        "the test runs the checkout's own environment, which activation puts on the PATH"
    )
    shell = Shell(readme_steps.activate, env)

    # The first start, on a terminal: it asks for the administrator.
    service = shell.start(service_command())
    try:
        service.answer(r"Administrator's user name.*: ", ADMIN, timeout=180)
        service.answer(r"Password \(12 characters or more\): ", PASSWORD)
        service.answer(r"Repeat for confirmation: ", PASSWORD)
        served = service.expect(r"on (http://127\.0\.0\.1:\d+/) \(Ctrl-C stops it\)", 120)
        base = served.group(1).rstrip("/")
        assert readme_steps.address.replace(":8000/", f":{port}/") == served.group(1)
        service.expect(r"Recognition runs the yunet face detector and the sface-2021dec", 60)
        walk(readme_steps, shell, base, camera, browsers, home)
        # Ctrl-C stops it after every camera has stored its last alerts.
        service.interrupt()
        assert service.finish(90) == 0, service.screen
    finally:
        service.close()


def walk(
    readme_steps: Walkthrough,
    shell: Shell,
    base: str,
    camera: RtspServer,
    browsers: Callable[[], WebDriver],
    home: Path,
) -> None:
    # 1. The site.
    shell.run(readme_steps.command(1, SITE=SITE, ADMIN=ADMIN))

    # 2. The camera, on /cameras as the administrator.
    desk = browsers()
    desk.get(f"{base}/")
    WebDriverWait(desk, 15).until(lambda w: "/login" in w.current_url)
    desk.find_element(By.NAME, "name").send_keys(ADMIN)
    desk.find_element(By.NAME, "password").send_keys(PASSWORD)
    desk.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    WebDriverWait(desk, 15).until(lambda w: "Signed in" in read(w, "h1"))
    stream = readme_steps.camera_address.replace("10.0.0.5:554", f"{camera.host}:{camera.port}")
    assert stream != readme_steps.camera_address, "the example address is no longer 10.0.0.5:554"
    add_camera(desk, base, stream)

    # 3. The staff, one command each; each asks for a password twice.
    for name, role in STAFF.items():
        assert f"`{role}`" in readme_steps.step(3), f"step 3 no longer names the {role}"
        shell.run(
            readme_steps.command(3, NAME=name, ROLE=role, SITE=SITE, ADMIN=ADMIN),
            answers=[(r"Password: ", PASSWORD), (r"Repeat for confirmation: ", PASSWORD)],
        )

    # The shop's screen: a reviewer's alerts page, open from now on.
    screen = browsers()
    screen.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": TONE_COUNTER})
    sign_in(screen, base, "dave", "/alerts")
    wait_for(screen, "#alerts")
    WebDriverWait(screen, 15).until(lambda w: read(w, "#live-state").startswith("Live"))
    screen.find_element(By.TAG_NAME, "h1").click()  # a page plays sound once it was used

    # 4. The reporter records the incident and proposes the entry with stills.
    sign_out(desk)
    sign_in(desk, base, "bob")
    record_incident(desk, base)
    entry_url = propose_entry(desk, base)

    # 5. A manager approves it.
    sign_out(desk)
    sign_in(desk, base, "carol")
    desk.get(f"{base}/watchlist")
    desk.find_element(By.LINK_TEXT, "Joseph_Biden").click()
    WebDriverWait(desk, 15).until(lambda w: w.current_url == entry_url)
    submit(desk, "form[action$='/approve']")
    WebDriverWait(desk, 15).until(lambda w: "active" in read(w, "dl.facts"))
    screenshot(desk, "walkthrough-entry-approved")

    # 6. The alert on the open alerts page, with a tone; two reviewers confirm it.
    row = WebDriverWait(screen, 180, poll_frequency=0.5).until(
        lambda w: w.find_elements(By.CSS_SELECTOR, "#alerts tr.new-alert")
    )[0]
    assert "Joseph_Biden" in row.text
    assert f"{SITE}/{CAMERA}" in row.text
    assert screen.execute_script("return window.tones") >= 1, "no tone was played"
    screenshot(screen, "walkthrough-alert")
    row.find_element(By.TAG_NAME, "a").click()
    wait_for(screen, "form.review")
    card_url = screen.current_url
    review(screen, "confirm", "Same face as the enrolment photos")
    WebDriverWait(screen, 15).until(lambda w: "Confirmed so far by dave" in text_of(w))
    sign_out(desk)
    sign_in(desk, base, "erin")
    desk.get(card_url)
    review(desk, "confirm", "Agree: same person")
    WebDriverWait(desk, 15).until(lambda w: "confirmed" in read(w, "h1"))
    screenshot(desk, "walkthrough-alert-confirmed")

    # Step 2's last words: *Disable* in the camera's row stops it.
    sign_out(desk)
    sign_in(desk, base, ADMIN, "/cameras")
    desk.find_element(By.CSS_SELECTOR, f"button[aria-label='Disable {SITE}/{CAMERA}']").click()
    WebDriverWait(desk, 30).until(lambda w: "disabled" in read(w, "table tbody"))

    alert_id = card_url.rstrip("/").rsplit("/", 1)[-1]
    assert_confirmed_in_database(home, alert_id)
    verified = shell.run("watchkeeper audit verify")
    assert re.search(r"My shop: \d+ events, chain intact", verified), verified


def add_camera(window: WebDriver, base: str, stream: str) -> None:
    """Step 2 on /cameras: site, name, address; *Test connection*; the address again
    (it held a password); *Add camera*; the camera is enabled and runs."""
    window.get(f"{base}/cameras")
    Select(window.find_element(By.NAME, "site")).select_by_visible_text(SITE)
    window.find_element(By.NAME, "name").send_keys(CAMERA)
    window.find_element(By.NAME, "source").send_keys(stream)
    submit(window, "form[action='/cameras']", "Test connection")
    WebDriverWait(window, 30).until(lambda w: "Connected" in read(w, "section.guidance"))
    assert "640\N{MULTIPLICATION SIGN}368" in read(window, "section.guidance")
    assert "type it again" in text_of(window)
    source = window.find_element(By.NAME, "source")
    assert source.get_attribute("value") == "", "the password came back to the browser"
    source.send_keys(stream)
    submit(window, "form[action='/cameras']", "Add camera")
    WebDriverWait(window, 20).until(lambda w: f"{SITE}/{CAMERA}" in read(w, "table tbody"))
    row = read(window, "table tbody")
    assert "password" not in row, row
    assert window.find_elements(By.CSS_SELECTOR, f"button[aria-label='Disable {SITE}/{CAMERA}']")
    # The page shows each camera's state as it was when loaded: load it until the
    # camera runs and has analysed a frame.
    WebDriverWait(window, 60, poll_frequency=1).until(
        lambda w: w.refresh() or re.search(r"running\s.*\d s ago", read(w, "table tbody"))
    )
    screenshot(window, "walkthrough-cameras")


def record_incident(window: WebDriver, base: str) -> None:
    window.get(f"{base}/incidents")
    window.find_element(By.LINK_TEXT, "Record an incident").click()
    Select(window.find_element(By.NAME, "site")).select_by_visible_text(SITE)
    Select(window.find_element(By.NAME, "category")).select_by_value("theft")
    window.find_element(By.NAME, "description").send_keys(
        "Took six bottles of whisky from the aisle by the door and left without paying."
    )
    submit(window, "form[action='/incidents']")
    WebDriverWait(window, 15).until(lambda w: w.current_url.endswith("/incidents"))
    assert "whisky" in text_of(window)


def propose_entry(window: WebDriver, base: str) -> str:
    """*Propose an entry* on /watchlist with stills; a badge per photo before sending."""
    window.get(f"{base}/watchlist")
    window.find_element(By.LINK_TEXT, "Propose an entry").click()
    window.find_element(By.NAME, "label").send_keys("Joseph_Biden")
    window.find_element(By.NAME, "reason").send_keys("Repeat theft of spirits, seen on CCTV")
    window.find_element(By.CSS_SELECTOR, "input[name=incidents]").click()
    window.find_element(By.NAME, "photos").send_keys("\n".join(map(str, BIDEN_PHOTOS)))
    WebDriverWait(window, 60).until(
        lambda w: (
            len(w.find_elements(By.CSS_SELECTOR, "#photo-badges li.badge-usable"))
            == len(BIDEN_PHOTOS)
        )
    )
    screenshot(window, "walkthrough-photo-badges")
    window.find_element(By.NAME, "attest").click()
    submit(window, "form#enrol")
    WebDriverWait(window, 60).until(
        lambda w: "/watchlist/" in w.current_url and not w.current_url.endswith("/new")
    )
    assert "pending" in read(window, "dl.facts")
    return window.current_url


def assert_confirmed_in_database(home: Path, alert_id: str) -> None:
    """The alert is stored as confirmed, with the two reviewers' confirmations."""
    data = home / ".local" / "share" / "watchkeeper"
    key = home / ".config" / "watchkeeper" / "key"
    store = open_store(Settings(data_dir=data, key_file=key, models_dir=MODELS))
    try:
        with store.session() as session:
            alert = session.get_one(Alert, uuid.UUID(alert_id))
            assert alert.status == AlertStatus.CONFIRMED
            assert alert.subject.label == "Joseph_Biden"
            assert alert.camera.name == CAMERA
            decisions = session.execute(
                select(User.name, Review.decision)
                .join(Review, Review.user_id == User.id)
                .where(Review.alert_id == alert.id)
            ).all()
            assert sorted(decisions) == [("dave", Decision.CONFIRM), ("erin", Decision.CONFIRM)]
    finally:
        store.close()
