"""Bad input to the API is refused with a clear 4xx and stores nothing: dates at the
edges of the calendar, text longer than its field, NUL characters, camera sources of
any length, photos of any shape."""

from __future__ import annotations

import io
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select

from tests.support.shop import Shop
from tests.support.web import api_token
from watchkeeper.pipeline import FaceModels
from watchkeeper.store.models import Camera, Incident, Subject

INCIDENT = {"site": "Leeds", "category": "threats", "description": "shouted at the till"}


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (128, 128, 128)).save(out, "PNG")
    return out.getvalue()


def rows(shop: Shop) -> tuple[int, ...]:
    with shop.tx() as tx:
        return tuple(
            tx.session.scalar(select(func.count()).select_from(kind)) or 0
            for kind in (Incident, Subject, Camera)
        )


@pytest.mark.parametrize(
    ("case", "path", "body", "refusal"),
    [
        (
            "an offset that takes the time past the year 9999",
            "/api/incidents",
            {**INCIDENT, "occurred_at": "9999-12-31T23:59:59-23:59"},
            "outside the years 1 to 9999",
        ),
        (
            "an offset that takes the time before the year 1",
            "/api/incidents",
            {**INCIDENT, "occurred_at": "0001-01-01T00:00:00+01:00"},
            "outside the years 1 to 9999",
        ),
        (
            "a description of 20,000 characters",
            "/api/incidents",
            {**INCIDENT, "description": "x" * 20_000},
            "incident description is too long: 20,000 characters, at most 10,000",
        ),
        (
            "a police reference longer than its field",
            "/api/incidents",
            {**INCIDENT, "police_reference": "P" * 101},
            "incident police reference is too long",
        ),
        (
            "a NUL character",
            "/api/incidents",
            {**INCIDENT, "description": "shouted\x00at the till"},
            "incident description contains a NUL character",
        ),
        (
            "a camera source of 10,000 characters to test",
            "/api/cameras/test",
            {"source": "rtsp://cam/" + "a" * 10_000},
            "at most 500 characters",
        ),
        (
            "a camera source of 10,000 characters to add",
            "/api/cameras",
            {"site": "Leeds", "name": "till", "source": "/" + "a" * 10_000},
            "at most 500 characters",
        ),
        (
            "a path whose name is longer than any file system allows",
            "/api/cameras/test",
            {"source": "/tmp/" + "a" * 400},
            "is not a stream URL, a video file or webcam device",
        ),
        (
            "a camera schedule of 300 characters",
            "/api/cameras",
            {"site": "Leeds", "name": "till", "source": "rtsp://cam/live", "schedule": "s" * 300},
            "a schedule has at most 200 characters",
        ),
    ],
)
def test_bad_json_is_refused_with_the_reason(
    web: TestClient, shop: Shop, case: str, path: str, body: dict[str, Any], refusal: str
) -> None:
    before = rows(shop)
    answer = web.post(path, json=body, headers=api_token(shop, "alice"))
    assert answer.status_code == 422, (case, answer.status_code, answer.text)
    assert refusal in answer.text, (case, answer.text)
    assert rows(shop) == before


def test_renewing_to_a_date_past_the_calendar_is_refused(
    web: TestClient, shop: Shop, biden: uuid.UUID
) -> None:
    answer = web.post(
        f"/api/subjects/{biden}/renew",
        json={"expires_at": "9999-12-31T23:59:59-23:59", "reason": "still seen"},
        headers=api_token(shop, "carol"),
    )
    assert answer.status_code == 422, answer.text
    assert "outside the years 1 to 9999" in answer.text


@pytest.mark.parametrize(("width", "height"), [(6000, 1), (1, 6000), (1, 1), (20000, 2)])
def test_photos_of_any_shape_are_refused_as_having_no_face(
    web: TestClient, shop: Shop, face_models: FaceModels, width: int, height: int
) -> None:
    web.app.state.face_models = face_models  # type: ignore[attr-defined]
    before = rows(shop)
    answer = web.post(
        "/api/subjects",
        data={
            "label": "woman, red coat",
            "reason": "threatened staff",
            "incidents": str(shop.incident_id),
            "attest_not_child_or_vulnerable": "true",
        },
        files=[("photos", ("thin.png", png(width, height), "image/png"))],
        headers=api_token(shop, "bob"),
    )
    assert answer.status_code == 422, answer.text
    assert "thin.png" in answer.text
    assert rows(shop) == before
    assert list(shop.store.files.all_files()) == []
