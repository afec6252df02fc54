"""The model page and API: what is held per model, a switch run in the background with
its progress and outcome, the unusable entries shown to whoever started it, and
enrolment that follows the model in use."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.governance.test_model_switch import SFACE, SFACE_ID, blank_photo
from tests.support.shop import Shop, enrol_subject, photos_of
from tests.support.web import Browser, api_token, set_passwords, sign_in
from watchkeeper.config import MatchingConfig, Settings
from watchkeeper.pipeline import FaceModels
from watchkeeper.web.app import create_app

pytestmark = pytest.mark.parametrize("database_url", [None], ids=["sqlite"])


@pytest.fixture
def app_client(
    shop: Shop, store_settings: Settings, face_models: FaceModels
) -> Iterator[TestClient]:
    settings = store_settings.model_copy(update={"matching": MatchingConfig(threshold=0.5)})
    set_passwords(shop)
    app = create_app(settings, shop.store)
    app.state.face_models = face_models  # dlib's, loaded once per test session
    with TestClient(app, follow_redirects=False) as client:
        yield client


def finished(client: TestClient) -> None:
    deadline = time.monotonic() + 120
    while client.app.state.model_switch.running:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "the switch did not finish"
        time.sleep(0.1)


def test_a_switch_from_the_model_page(
    app_client: TestClient, shop: Shop, face_models: FaceModels
) -> None:
    enrol_subject(shop, face_models, "Joseph_Biden", label="Biden, J.")
    trump = enrol_subject(shop, face_models, "Donald_Trump", label="man, red tie")
    blank_photo(shop.store, shop, trump)
    carol = sign_in(app_client, "carol")
    page = carol.get("/settings/model")
    assert page.status_code == 200
    assert "dlib-resnet-v1@1" in page.text
    assert '<option value="sface-2021dec">' in page.text

    started = carol.post("/settings/model", data={"model": SFACE})
    assert started.status_code == 303
    finished(app_client)
    page = carol.get("/settings/model").text
    assert "Not switched to sface-2021dec" in page
    assert "man, red tie" in page
    assert "no face found" in page

    accepted = carol.post("/settings/model", data={"model": SFACE, "accept_unusable": "true"})
    assert accepted.status_code == 303
    finished(app_client)
    page = carol.get("/settings/model").text
    assert "Switched to sface-2021dec" in page
    assert "The watchlist is searched with <strong>sface-2021dec</strong>" in page
    assert "1 entry has no template of sface-2021dec" in page

    # Enrolment follows the model in use.
    checked = app_client.post(
        "/watchlist/check-photo",
        data={"csrf_token": carol.csrf},
        files=[("photo", ("a.jpg", photos_of("Colin_Powell", 1)[0].data, "image/jpeg"))],
    )
    assert checked.status_code == 200
    assert checked.json()["usable"]
    assert app_client.app.state.face_models.embedder.model_id == SFACE_ID  # type: ignore[attr-defined]

    # The API: the same state; the unusable entries only for whoever switched.
    alice = api_token(shop, "alice")
    state = app_client.get("/api/settings/model", headers=alice).json()
    assert (state["model_in_use"], state["model_id"]) == (SFACE, SFACE_ID)
    assert not state["from_configuration"]
    assert {h["model_id"]: h["templates"] for h in state["held"]} == {
        "dlib-resnet-v1@1": 2,
        SFACE_ID: 1,
    }
    assert state["not_searchable"] == 1
    assert state["switch"]["switched"]
    assert state["switch"]["unusable"] is None
    again = app_client.post("/api/settings/model", headers=alice, json={"model": SFACE})
    assert again.status_code == 202
    assert again.json()["switch"]["actor"] == "carol", "already in use: nothing started"


def test_an_unknown_model_starts_nothing(
    app_client: TestClient, shop: Shop, face_models: FaceModels
) -> None:
    """A name that is no identity model is the user's mistake (422, naming the choices),
    not the server's (503 is for a known model whose file is missing or wrong)."""
    enrol_subject(shop, face_models, "Joseph_Biden")
    carol: Browser = sign_in(app_client, "carol")
    for name in ("no-such-model", "yunet-2023mar"):  # unknown; a detector, not an embedder
        refused = carol.post("/settings/model", data={"model": name})
        assert refused.status_code == 422
        assert f"no identity model &#39;{name}&#39;" in refused.text
        assert "sface-2021dec" in refused.text
    assert getattr(app_client.app.state, "model_switch", None) is None  # type: ignore[attr-defined]
