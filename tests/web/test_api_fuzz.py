"""Schemathesis against the app's own OpenAPI document: every /api/ operation, requests
generated from its schema (and broken on purpose), sent with an administrator's and a
reviewer's API token. No answer may be a 5xx, and every answer must match what the
document declares (the 422 shapes included).

Bounded and deterministic: Hypothesis derandomized (a fixed seed), a few examples per
operation, no shrinking phase, and a time limit per operation's test (pytest-timeout);
per-example deadlines are off, because on a shared, loaded machine they fail at random.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.support.data import MODELS
from tests.support.shop import Shop, set_up_shop
from tests.support.web import api_token
from watchkeeper.config import load_settings
from watchkeeper.pipeline import FaceModels
from watchkeeper.store.crypto import encode_key, generate_key
from watchkeeper.store.database import open_store
from watchkeeper.web.app import create_app

EXAMPLES_PER_OPERATION = 8


@pytest.fixture
def fuzzed_app(tmp_path: Path, face_models: FaceModels) -> Iterator[tuple[TestClient, Shop]]:
    """The app over a fresh SQLite shop, its photo models loaded; a camera test waits
    half a second at most (generated sources rarely answer)."""
    app_settings = load_settings(
        models_dir=MODELS,
        data_dir=tmp_path / "data",
        key=encode_key(generate_key()),
        web={"camera_test_s": 0.5},
    )
    store = open_store(app_settings, create=True)
    try:
        shop = set_up_shop(store)
        app = create_app(app_settings, store)
        app.state.face_models = face_models
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client, shop
    finally:
        store.close()


@pytest.fixture
def tokens(fuzzed_app: tuple[TestClient, Shop]) -> dict[str, dict]:
    """API token headers of the administrator (alice) and a reviewer (dave)."""
    _, shop = fuzzed_app
    return {who: api_token(shop, who) for who in ("alice", "dave")}


def api_document() -> dict:
    """The app's OpenAPI document, as /api/openapi.json serves it (it needs no store)."""
    return create_app(load_settings(models_dir=MODELS), store=None).openapi()  # type: ignore[arg-type]


schema = schemathesis.openapi.from_dict(api_document()).include(path_regex="^/api/")


@pytest.mark.timeout(60)
@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_no_generated_request_gets_a_server_error(
    case: schemathesis.Case, fuzzed_app: tuple[TestClient, Shop], tokens: dict[str, dict]
) -> None:
    """Each generated request goes once as the administrator, once as a reviewer."""
    client, _ = fuzzed_app
    for headers in tokens.values():
        response = case.call(app=client.app, headers=headers)
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
