"""`watchkeeper serve` as a user starts it: a real process answering real HTTP."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import termios
import time

import httpx

from tests.support.cli import Sandbox, one_line_error
from tests.support.net import stop_service, unused_port, wait_for

PASSWORD = "correct horse battery"


def test_serve_signs_users_in_answers_api_tokens_and_stops_on_ctrl_c(sandbox: Sandbox) -> None:
    assert sandbox.run("init", "--organisation", "Corner Shops", "--admin", "alice").code == 0
    done = sandbox.run(
        "users", "password", "alice", "--password-stdin", "--user", "alice", stdin=PASSWORD + "\n"
    )
    assert done.code == 0, done.stderr
    port = unused_port()
    process = sandbox.serve(port)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/login", process)
        with httpx.Client(base_url=base, follow_redirects=False) as web:
            assert web.get("/").headers["location"] == "/login?next=/"
            form = web.get("/login")
            token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
            data = {"name": "alice", "password": PASSWORD, "csrf_token": token, "next": "/"}
            assert web.post("/login", data=data).status_code == 303
            page = web.get("/")
            assert page.status_code == 200
            assert "You are alice, admin of Corner Shops." in page.text
            assert "server" not in page.headers, "the server does not name itself"
        issued = sandbox.run("tokens", "issue", "alice", "--label", "door NVR", "--user", "alice")
        assert issued.code == 0, issued.stderr
        token = issued.stdout.strip()
        bearer = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{base}/api/me", headers=bearer).json()["role"] == "admin"
        listed = sandbox.run("tokens", "list", "--json", "--user", "alice")
        [row] = json.loads(listed.stdout)
        assert token.startswith(row["prefix"])
        assert token not in listed.stdout, "a token is shown once, when issued"
        revoked = sandbox.run("tokens", "revoke", row["prefix"], "--user", "alice")
        assert revoked.code == 0, revoked.stderr
        assert httpx.get(f"{base}/api/me", headers=bearer).status_code == 401
    finally:
        code, output = stop_service(process)
    assert code == 0, output
    assert f"Watchkeeper for Corner Shops on {base}/" in output


def test_the_first_serve_sets_everything_up_and_says_how_to_make_the_first_admin(
    sandbox: Sandbox,
) -> None:
    port = unused_port()
    process = sandbox.serve(port)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/login", process)
        refused = sandbox.run("users", "create", "clerk", "--role", "reviewer", "--no-password")
        assert refused.code != 0
        assert "--user" in one_line_error(refused), "only the first admin needs no --user"
        made = sandbox.run(
            "users", "create", "boss", "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n"
        )
        assert made.code == 0, made.stderr
        again = sandbox.run("users", "create", "usurper", "--role", "admin", "--no-password")
        assert again.code != 0
        assert "already has an administrator" in one_line_error(again)
        with httpx.Client(base_url=base, follow_redirects=False) as web:
            form = web.get("/login")
            token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
            data = {"name": "boss", "password": PASSWORD, "csrf_token": token, "next": "/"}
            assert web.post("/login", data=data).status_code == 303
            assert "You are boss, admin of My shop." in web.get("/").text
        log = sandbox.run("audit", "list", "--json", "--user", "boss")
        assert log.code == 0, log.stderr
        first = [e for e in json.loads(log.stdout) if e["action"] == "user.create"]
        assert [(e["actor"], e["details"]["first_administrator"]) for e in first] == [
            ("console", True)
        ]
    finally:
        code, output = stop_service(process)
    assert code == 0, output
    assert "created organisation 'My shop'" in output
    assert "New encryption key" in output
    assert "No administrator can sign in yet" in output
    assert "watchkeeper users create NAME --role admin" in output


def test_serve_with_a_key_but_no_database_sets_one_up_with_that_key(sandbox: Sandbox) -> None:
    """Issue 18: a key file without a database made `serve` exit 11; it now sets up a
    database (and says so) with the key that exists."""
    key = sandbox.run("init", "--organisation", "Corner Shops", "--admin", "alice")
    assert key.code == 0, key.stderr
    [database] = (sandbox.root / "home").rglob("*.db")
    database.unlink()
    port = unused_port()
    process = sandbox.serve(port)
    try:
        wait_for(f"http://127.0.0.1:{port}/login", process)
    finally:
        code, output = stop_service(process)
    assert code == 0, output
    assert "created organisation 'My shop'" in output
    assert "New encryption key" not in output, "the key that was there is used"
    assert database.exists()


def test_the_first_start_on_a_terminal_asks_for_the_first_administrator(
    sandbox: Sandbox,
) -> None:
    """Started by a person at a terminal, the first `serve` asks for the administrator's
    name and password there and then; they can sign in as soon as it answers."""
    port = unused_port()
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "watchkeeper", "serve", "--port", str(port)],
        cwd=sandbox.cwd,
        env=sandbox.env(COLUMNS="200"),
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    screen = Screen(controller)
    try:
        screen.answer("Administrator's user name", "boss")
        screen.answer("Password (12 characters or more)", "short", secret=True)
        screen.answer("Repeat for confirmation", "short", secret=True)
        screen.answer("Password (12 characters or more)", PASSWORD, secret=True)  # again
        screen.answer("Repeat for confirmation", PASSWORD, secret=True)
        screen.wait_for("'boss' can sign in now.")
        screen.wait_for("Recognition runs the yunet face detector and the sface-2021dec embedder")
        wait_for(f"http://127.0.0.1:{port}/login", process)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", follow_redirects=False) as web:
            form = web.get("/login")
            token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
            data = {"name": "boss", "password": PASSWORD, "csrf_token": token, "next": "/"}
            assert web.post("/login", data=data).status_code == 303
            assert "You are boss, admin of My shop." in web.get("/").text
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(30)
        os.close(controller)
    assert code == 0, screen.text
    assert "at least 12 characters; try again" in screen.text
    assert PASSWORD not in screen.text, "passwords are not echoed"


class Screen:
    """What a terminal shows, read from the controlling side of a pseudo-terminal."""

    def __init__(self, controller: int) -> None:
        self.controller = controller
        self.raw = b""
        self.text = ""
        self._read_to = 0

    def wait_for(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.text[self._read_to :]:
            assert time.monotonic() < deadline, f"{text!r} not shown; the screen:\n{self.text}"
            ready, _, _ = select.select([self.controller], [], [], 0.5)
            if ready:
                try:
                    self.raw += os.read(self.controller, 4096)
                    shown = self.raw.decode(errors="replace")
                    self.text = re.sub(r"\x1b\[[0-9;]*m", "", shown)  # colours off
                except OSError:  # the program ended and closed the terminal
                    raise AssertionError(f"ended before showing {text!r}:\n{self.text}") from None
        self._read_to = self.text.index(text, self._read_to) + len(text)

    def answer(self, prompt: str, reply: str, secret: bool = False) -> None:
        """Type ``reply`` after ``prompt``; a secret once the terminal stops echoing
        (typed before that, a password prompt discards it, as a real terminal does)."""
        self.wait_for(prompt)
        deadline = time.monotonic() + 30
        while secret and termios.tcgetattr(self.controller)[3] & termios.ECHO:
            assert time.monotonic() < deadline, "the password prompt kept echoing"
            time.sleep(0.01)
        os.write(self.controller, reply.encode() + b"\n")


def test_a_short_password_is_refused_in_one_line(sandbox: Sandbox) -> None:
    assert sandbox.run("init", "--organisation", "Corner Shops", "--admin", "alice").code == 0
    run = sandbox.run(
        "users", "password", "alice", "--password-stdin", "--user", "alice", stdin="short\n"
    )
    assert run.code != 0
    assert "at least 12 characters" in one_line_error(run)
