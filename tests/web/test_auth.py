"""Signing in to the web app: passwords, sessions, CSRF, throttling, on a real database."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.support.shop import Shop
from tests.support.web import api_token
from watchkeeper.config import Settings
from watchkeeper.errors import PolicyError
from watchkeeper.governance import access
from watchkeeper.governance.accounts import deactivate, set_password
from watchkeeper.store.models import AuditEvent, LoginSession, User, utcnow
from watchkeeper.web.app import create_app
from watchkeeper.web.deps import SESSION_COOKIE

PASSWORDS = {"alice": "correct horse battery", "bob": "staple gun 4 the win"}


@pytest.fixture
def client(shop: Shop, store_settings: Settings) -> Iterator[TestClient]:
    with shop.tx() as tx:
        for name, password in PASSWORDS.items():
            user = access.user(tx.session, tx.organisation.id, name)
            set_password(tx.session, shop.store.keys, user, user, password)
    with TestClient(create_app(store_settings, shop.store), follow_redirects=False) as client:
        yield client


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def sign_in(client: TestClient, name: str, password: str, next_path: str = "/"):
    form = client.get("/login")
    assert form.status_code == 200
    data = {"name": name, "password": password, "csrf_token": csrf_of(form.text)}
    return client.post("/login", data={**data, "next": next_path})


def audit_actions(shop: Shop) -> list[str]:
    with shop.tx() as tx:
        events = tx.session.scalars(select(AuditEvent).order_by(AuditEvent.sequence))
        return [event.action for event in events]


def test_signing_in_opens_a_guarded_session(client: TestClient, shop: Shop) -> None:
    response = sign_in(client, "bob", PASSWORDS["bob"])
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    cookie = next(
        header
        for header in response.headers.get_list("set-cookie")
        if header.startswith(f"{SESSION_COOKIE}=")
    )
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/" in cookie
    token = client.cookies[SESSION_COOKIE]
    page = client.get("/")
    assert page.status_code == 200
    assert "You are bob, reporter of Corner Shops, at Leeds." in page.text
    with shop.tx() as tx:
        [row] = tx.session.scalars(select(LoginSession)).all()
        stored = [getattr(row, column.name) for column in LoginSession.__table__.columns]
        password_hash = access.user(tx.session, tx.organisation.id, "bob").password_hash
    assert token not in map(str, stored), "only the token's hash is stored"
    assert password_hash.startswith("$argon2id$")
    assert audit_actions(shop)[-1] == "user.sign-in"


@pytest.mark.parametrize(
    ("name", "password"),
    [("bob", "not bob's password"), ("nobody", "any password at all"), ("carol", "no password")],
    ids=["wrong-password", "unknown-user", "user-without-password"],
)
def test_a_refused_sign_in_says_the_same_whatever_was_wrong(
    client: TestClient, name: str, password: str
) -> None:
    response = sign_in(client, name, password)
    assert response.status_code == 401
    assert "Wrong user name or password." in response.text
    assert SESSION_COOKIE not in client.cookies
    assert client.get("/").status_code == 303


SHOP_MACHINE = ("192.168.1.20", 51000)
ATTACKER = ("203.0.113.7", 40000)


def test_the_lockout_attack_does_not_keep_a_reviewer_out_of_the_shops_own_machine(
    shop: Shop, store_settings: Settings, client: TestClient
) -> None:
    """The attack of issue 17: wrong passwords for an account, from elsewhere, again and
    again. The guesser is slowed down (429 with Retry-After, even with the right
    password); the account's owner signs in from the shop's machine as usual."""
    limits = store_settings.web.sign_in.model_copy(update={"first_delay_s": 600})
    web = store_settings.web.model_copy(update={"sign_in": limits})
    app = create_app(store_settings.model_copy(update={"web": web}), shop.store)
    with TestClient(app, follow_redirects=False, client=SHOP_MACHINE) as shop_machine:
        assert sign_in(shop_machine, "bob", PASSWORDS["bob"]).status_code == 303
    with TestClient(app, follow_redirects=False, client=ATTACKER) as attacker:
        answers = [sign_in(attacker, "bob", f"guess {n}").status_code for n in range(30)]
        free = limits.free_per_name_and_address
        assert answers[:free] == [401] * free
        assert set(answers[free:]) == {429}, "every later guess is refused unseen"
        right = sign_in(attacker, "bob", PASSWORDS["bob"])
        assert right.status_code == 429, "the right password does not pass a delay"
        assert int(right.headers["retry-after"]) > 0
        assert "Too many failed sign-ins" in right.text
    with TestClient(app, follow_redirects=False, client=SHOP_MACHINE) as shop_machine:
        assert sign_in(shop_machine, "bob", PASSWORDS["bob"]).status_code == 303
        assert "You are bob" in shop_machine.get("/").text
    actions = audit_actions(shop)
    assert actions.count("user.sign-in-failed") == free
    assert actions.count("user.sign-in-delayed") == 30 - free + 1
    assert actions[-1] == "user.sign-in"


def test_a_form_without_the_sessions_csrf_token_changes_nothing(client: TestClient) -> None:
    sign_in(client, "alice", PASSWORDS["alice"])
    token = csrf_of(client.get("/").text)
    for forged in ({}, {"csrf_token": "x" * len(token)}):
        response = client.post("/logout", data=forged)
        assert response.status_code == 403
        assert client.get("/").status_code == 200, "still signed in"
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    assert client.get("/").status_code == 303, "signed out"


def test_the_sign_in_form_has_its_own_csrf_check(client: TestClient, shop: Shop) -> None:
    form = client.get("/login")
    client.cookies.clear()  # a cross-site post carries no cookie of ours
    data = {"name": "bob", "password": PASSWORDS["bob"], "csrf_token": csrf_of(form.text)}
    response = client.post("/login", data=data)
    assert response.status_code == 403
    assert SESSION_COOKIE not in client.cookies
    assert "user.sign-in" not in audit_actions(shop)


@pytest.mark.parametrize(
    "age",
    [
        {"expires_at": utcnow() - dt.timedelta(seconds=1)},
        {"last_seen_at": utcnow() - dt.timedelta(minutes=31)},
        {"ended_at": utcnow()},
    ],
    ids=["expired", "idle", "signed-out"],
)
def test_an_ended_session_sends_the_browser_to_sign_in(
    client: TestClient, shop: Shop, age: dict
) -> None:
    sign_in(client, "bob", PASSWORDS["bob"])
    with shop.tx() as tx:
        row = tx.session.scalars(select(LoginSession)).one()
        for column, value in age.items():
            setattr(row, column, value)
    response = client.get("/?tab=1")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/%3Ftab%3D1"


def test_changing_a_password_ends_the_users_sessions(client: TestClient, shop: Shop) -> None:
    sign_in(client, "bob", PASSWORDS["bob"])
    with shop.tx() as tx:
        alice = access.user(tx.session, tx.organisation.id, "alice")
        bob = access.user(tx.session, tx.organisation.id, "bob")
        set_password(tx.session, shop.store.keys, alice, bob, "a brand new passphrase")
    assert client.get("/").status_code == 303


def test_only_admins_set_other_peoples_passwords_and_short_ones_are_refused(
    shop: Shop,
) -> None:
    with shop.tx() as tx:
        bob = access.user(tx.session, tx.organisation.id, "bob")
        carol = access.user(tx.session, tx.organisation.id, "carol")
        with pytest.raises(PolicyError, match="manage the organisation"):
            set_password(tx.session, shop.store.keys, bob, carol, "a long enough passphrase")
        with pytest.raises(PolicyError, match="at least 12 characters"):
            set_password(tx.session, shop.store.keys, bob, bob, "short")
        assert tx.session.get_one(User, carol.id).password_hash is None


@pytest.mark.parametrize(
    ("asked", "sent_to"),
    [("/", "/"), ("/alerts?site=Leeds", "/alerts?site=Leeds"), ("//evil.example/", "/"),
     ("https://evil.example/", "/"), ("/\\evil.example", "/")],
)  # fmt: skip
def test_after_signing_in_the_browser_stays_on_this_server(
    client: TestClient, asked: str, sent_to: str
) -> None:
    response = sign_in(client, "bob", PASSWORDS["bob"], next_path=asked)
    assert response.status_code == 303
    assert response.headers["location"] == sent_to


def test_every_page_carries_the_security_headers(client: TestClient) -> None:
    for response in (client.get("/login"), sign_in(client, "bob", PASSWORDS["bob"])):
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("secure", [True, False])
def test_hsts_is_sent_exactly_when_cookies_are_secure(
    shop: Shop, store_settings: Settings, secure: bool
) -> None:
    """Secure cookies mean the app is reached over HTTPS: browsers are then told to
    refuse plain HTTP to it (a year). Over plain HTTP on 127.0.0.1 that would lock the
    browser out, so not without."""
    web = store_settings.web.model_copy(update={"secure_cookies": secure})
    app = create_app(store_settings.model_copy(update={"web": web}), shop.store)
    with TestClient(app, base_url="https://shop.example") as client:
        for response in (client.get("/login"), client.get("/api/openapi.json")):
            assert response.headers.get("strict-transport-security") == (
                "max-age=31536000" if secure else None
            )


def test_a_deactivated_user_is_out_at_once_and_their_history_stays(
    client: TestClient, shop: Shop
) -> None:
    """A leaver: their open session and API token stop working at once (a password reset
    alone would leave the token), they cannot sign in, and what they did still names them."""
    assert sign_in(client, "bob", PASSWORDS["bob"]).status_code == 303
    assert client.get("/").status_code == 200
    token = api_token(shop, "bob")
    assert client.get("/api/me", headers=token).status_code == 200
    with shop.tx() as tx:
        alice = access.user(tx.session, tx.organisation.id, "alice")
        with pytest.raises(PolicyError, match="cannot deactivate themselves"):
            deactivate(tx.session, shop.store.keys, alice, alice)
    with shop.tx() as tx:
        alice = access.user(tx.session, tx.organisation.id, "alice")
        bob = access.user(tx.session, tx.organisation.id, "bob")
        done = deactivate(tx.session, shop.store.keys, alice, bob)
    assert (done.sessions, done.tokens) == (1, 1)
    assert client.get("/").status_code == 303, "the open session ended"
    assert client.get("/api/me", headers=token).status_code == 401, "the token ended"
    assert sign_in(client, "bob", PASSWORDS["bob"]).status_code == 401
    with shop.tx() as tx:
        bob = access.user(tx.session, tx.organisation.id, "bob")
        assert not bob.active
        assert tx.incident.reporter.name == "bob", "the history keeps naming them"
        event = tx.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "user.deactivate")
        ).one()
    assert (event.actor, event.details) == ("alice", {"sessions": 1, "tokens": 1})
