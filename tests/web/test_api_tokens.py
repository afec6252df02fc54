"""API tokens: issued by administrators, acting as one user, revocable, never stored."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.support.shop import Shop
from watchkeeper.config import Settings
from watchkeeper.errors import PolicyError
from watchkeeper.governance import access
from watchkeeper.governance.accounts import IssuedToken, issue_token, revoke_token
from watchkeeper.store.models import ApiToken, AuditEvent, utcnow
from watchkeeper.web.app import create_app


@pytest.fixture
def client(shop: Shop, store_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(store_settings, shop.store)) as client:
        yield client


def issue(shop: Shop, actor: str, owner: str, days: int = 30) -> IssuedToken:
    with shop.tx() as tx:
        by = access.user(tx.session, tx.organisation.id, actor)
        to = access.user(tx.session, tx.organisation.id, owner)
        return issue_token(tx.session, shop.store.keys, by, to, "door NVR", days)


def me(client: TestClient, token: str | None):
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return client.get("/api/me", headers=headers)


def test_a_token_acts_as_its_user_and_only_its_hash_is_stored(
    client: TestClient, shop: Shop
) -> None:
    issued = issue(shop, "alice", "dave")
    assert issued.token.startswith("wk_")
    assert len(issued.token) >= 40
    response = me(client, issued.token)
    assert response.status_code == 200
    assert response.json() == {
        "name": "dave",
        "role": "reviewer",
        "organisation": "Corner Shops",
        "sites": ["Leeds"],
    }
    with shop.tx() as tx:
        row = tx.session.scalars(select(ApiToken)).one()
        assert row.last_used_at is not None
        stored = [str(getattr(row, c.name)) for c in ApiToken.__table__.columns]
        actions = tx.session.scalars(select(AuditEvent.action)).all()
    assert issued.token not in stored
    assert issued.token[:10] == row.prefix
    assert "token.issue" in actions


@pytest.mark.parametrize(
    "spoil",
    [
        lambda row: setattr(row, "revoked_at", utcnow()),
        lambda row: setattr(row, "expires_at", utcnow() - dt.timedelta(seconds=1)),
        lambda row: setattr(row.user, "active", False),
    ],
    ids=["revoked", "expired", "user-deactivated"],
)
def test_a_token_that_no_longer_holds_is_refused(client: TestClient, shop: Shop, spoil) -> None:
    issued = issue(shop, "alice", "dave")
    with shop.tx() as tx:
        spoil(tx.session.scalars(select(ApiToken)).one())
    response = me(client, issued.token)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "token", [None, "", "wk_not-a-real-token", "Basic YWxpY2U6cGFzc3dvcmQ="], ids=str
)
def test_requests_without_a_valid_token_are_refused(client: TestClient, token) -> None:
    assert me(client, token).status_code == 401


def test_only_administrators_issue_or_revoke_tokens(shop: Shop) -> None:
    issued = issue(shop, "alice", "dave")
    with shop.tx() as tx:
        carol = access.user(tx.session, tx.organisation.id, "carol")
        dave = access.user(tx.session, tx.organisation.id, "dave")
        with pytest.raises(PolicyError, match="manage the organisation"):
            issue_token(tx.session, shop.store.keys, carol, dave, "mine", 30)
        with pytest.raises(PolicyError, match="manage the organisation"):
            revoke_token(tx.session, shop.store.keys, dave, tx.session.merge(issued.row))
    with pytest.raises(PolicyError, match="between 1 and 365 days"):
        issue(shop, "alice", "dave", days=400)
    with shop.tx() as tx:
        assert len(tx.session.scalars(select(ApiToken)).all()) == 1


def test_the_openapi_description_is_served(client: TestClient) -> None:
    schema = client.get("/api/openapi.json").json()
    assert "/api/me" in schema["paths"]
    fields = schema["components"]["schemas"]["UserPublic"]["properties"]
    assert set(fields) == {"name", "role", "organisation", "sites"}
