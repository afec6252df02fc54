"""Signed-in web clients and API tokens for the shop's staff (tests/support/shop.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastapi.testclient import TestClient

from tests.support.shop import USERS, Shop
from watchkeeper.governance import access
from watchkeeper.governance.accounts import issue_token, set_password

PASSWORD = "correct horse battery staple"
"""Every shop user's password in web tests."""


def set_passwords(shop: Shop) -> None:
    with shop.tx() as tx:
        for name in USERS:
            user = access.user(tx.session, tx.organisation.id, name)
            set_password(tx.session, shop.store.keys, user, user, PASSWORD)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


@dataclass
class Browser:
    """A client signed in as one user; ``csrf`` goes into every form it posts."""

    client: TestClient
    name: str
    csrf: str

    def get(self, path: str, **kwargs):
        return self.client.get(path, **kwargs)

    def post(self, path: str, data: dict | None = None, **kwargs):
        """A form post with the session's CSRF token."""
        return self.client.post(path, data={"csrf_token": self.csrf, **(data or {})}, **kwargs)


def sign_in(client: TestClient, name: str, password: str = PASSWORD) -> Browser:
    """Sign ``client`` in as ``name``: fresh cookies, a fresh session."""
    client.cookies.clear()
    form = client.get("/login")
    response = client.post(
        "/login",
        data={"name": name, "password": password, "csrf_token": csrf_of(form.text), "next": "/"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    home = client.get("/")
    return Browser(client, name, csrf_of(home.text))


def api_token(shop: Shop, owner: str) -> dict[str, str]:
    """Headers that act as ``owner`` through an API token issued by the admin."""
    with shop.tx() as tx:
        admin = access.user(tx.session, tx.organisation.id, "alice")
        user = access.user(tx.session, tx.organisation.id, owner)
        issued = issue_token(tx.session, shop.store.keys, admin, user, f"{owner} tests", 30)
    return {"Authorization": f"Bearer {issued.token}"}
