"""The OpenAPI document says what the API answers: a 422 is a list of validation errors
(a request that does not fit the schema) or one sentence (a rule that refuses it);
other refusals are one sentence. Checked on real answers, against the served document."""

from __future__ import annotations

import pytest
import schemathesis
from fastapi.testclient import TestClient

from tests.support.shop import Shop
from tests.support.web import api_token

INCIDENT = {"site": "Leeds", "category": "threats", "description": "shouted at the till"}


@pytest.mark.parametrize(
    ("case", "method", "path", "body", "status", "detail_is_list"),
    [
        ("a missing field", "POST", "/api/incidents", {"site": "Leeds"}, 422, True),
        ("a rule's refusal", "POST", "/api/incidents", {**INCIDENT, "site": "York"}, 422, False),
        (
            "a date past the calendar",
            "POST",
            "/api/incidents",
            {**INCIDENT, "occurred_at": "9999-12-31T23:59:59-23:59"},
            422,
            True,
        ),
        ("not found", "GET", "/api/subjects/{subject_id}", None, 404, False),
    ],
)
def test_refusals_match_the_document(
    web: TestClient,
    shop: Shop,
    case: str,
    method: str,
    path: str,
    body: dict | None,
    status: int,
    detail_is_list: bool,
) -> None:
    document = web.get("/api/openapi.json").json()
    operation = schemathesis.openapi.from_dict(document)[path][method]
    url = path.format(subject_id="0badc0de")
    response = web.request(method, url, json=body, headers=api_token(shop, "bob"))
    assert response.status_code == status, (case, response.text)
    assert isinstance(response.json()["detail"], list) is detail_is_list, case
    operation.validate_response(response)
