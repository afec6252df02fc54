"""`watchkeeper serve` as a user starts it: a real process answering real HTTP."""

from __future__ import annotations

import json
import re
import signal

import httpx

from tests.support.cli import Sandbox, one_line_error
from tests.support.net import unused_port, wait_for

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
        process.send_signal(signal.SIGINT)
        code = process.wait(30)
        output = process.stderr.read()
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
        process.send_signal(signal.SIGINT)
        code = process.wait(30)
        output = process.stderr.read()
    assert code == 0, output
    assert "created organisation 'My shop'" in output
    assert "New encryption key" in output
    assert "No administrator can sign in yet" in output
    assert "watchkeeper users create NAME --role admin" in output


def test_serve_with_a_key_but_no_database_says_what_to_run(sandbox: Sandbox) -> None:
    key = sandbox.run("init", "--organisation", "Corner Shops", "--admin", "alice")
    assert key.code == 0, key.stderr
    [database] = (sandbox.root / "home").rglob("*.db")
    database.unlink()
    run = sandbox.run("serve", "--port", str(unused_port()), timeout=60)
    assert run.code != 0
    assert "watchkeeper init" in one_line_error(run)


def test_a_short_password_is_refused_in_one_line(sandbox: Sandbox) -> None:
    assert sandbox.run("init", "--organisation", "Corner Shops", "--admin", "alice").code == 0
    run = sandbox.run(
        "users", "password", "alice", "--password-stdin", "--user", "alice", stdin="short\n"
    )
    assert run.code != 0
    assert "at least 12 characters" in one_line_error(run)
