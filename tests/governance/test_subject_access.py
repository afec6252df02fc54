"""Subject access requests: a person's own photo finds everything held about them, and
the export is a complete, readable copy (on SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import select

from tests.support.data import MODELS, lfw_photos
from tests.support.shop import Shop, Sighting, Tx, enrol_in, record_sighting, set_up_shop
from watchkeeper.errors import NotFoundError, PolicyError, WatchlistError
from watchkeeper.governance import access
from watchkeeper.governance.alerts import review
from watchkeeper.governance.subject_access import Hit, export, search
from watchkeeper.governance.subjects import restrict, suspend, template_vector
from watchkeeper.models.registry import ModelRegistry
from watchkeeper.pipeline import FaceModels
from watchkeeper.store.models import Alert, AuditEvent, Decision, Subject, utcnow

THRESHOLD = ModelRegistry(MODELS).spec("dlib-resnet-v1").calibration.threshold_for(1)
"""The calibrated threshold the command line uses for subject access searches."""

ENROLLED = "Colin_Powell"
"""Enrolled from their first photo; other photos of them are the person's own photo
(index 5) and camera sightings (indices 6 and 7)."""


@pytest.fixture
def sighting(sightings: Callable[[str, int], Sighting]) -> Callable[..., Sighting]:
    """``sighting(person, index)``: the chip and probe vector of an LFW photo."""
    return lambda person=ENROLLED, index=6: sightings(person, index)


def own_photo(person: str = ENROLLED, index: int = 5) -> bytes:
    return lfw_photos(person)[index].read_bytes()


def enrol_entry(
    tx: Tx, shop: Shop, models: FaceModels, person: str = ENROLLED, **options: object
) -> Subject:
    """:func:`enrol_in` with a label that differs from the person's name."""
    return enrol_in(tx, shop, models, person, label=f"{person} (entry label)", **options)  # type: ignore[arg-type]


def raise_alert(
    tx: Tx, shop: Shop, subject: Subject, seen: Sighting, occurred_at: dt.datetime | None = None
) -> Alert:
    alert = record_sighting(tx.session, shop, tx.camera, subject.id, seen, occurred_at)
    assert alert is not None
    return alert


def run_search(shop: Shop, models: FaceModels, photo: bytes, name: str = "me.jpg") -> list[Hit]:
    with shop.tx() as tx:
        return search(
            tx.session,
            shop.store,
            tx.organisation,
            tx.user("carol"),
            models,
            photo,
            name,
            THRESHOLD,
        )


def audit_events(tx: Tx, action: str) -> list[AuditEvent]:
    return list(
        tx.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.organisation_id == tx.organisation.id, AuditEvent.action == action)
            .order_by(AuditEvent.sequence)
        )
    )


@pytest.mark.parametrize("state", ["active", "pending", "suspended", "restricted", "expired"])
def test_the_persons_own_photo_finds_their_entry_and_alerts_whatever_its_status(
    shop: Shop, face_models: FaceModels, sighting: Callable[..., Sighting], state: str
) -> None:
    """Search covers everything held: the entry (pending, suspended, restricted or
    expired too) and every alert about the person, best first; the audit event
    holds ids only."""
    now = utcnow()
    with shop.tx() as tx:
        if state == "pending":
            subject = enrol_entry(tx, shop, face_models, approve_by=None)
            alerts: list[Alert] = []  # a pending entry never raises alerts
        elif state == "expired":
            past = now - dt.timedelta(days=3)
            subject = enrol_entry(
                tx, shop, face_models, now=past, expires_at=past + dt.timedelta(days=1)
            )
            alerts = [raise_alert(tx, shop, subject, sighting(), past + dt.timedelta(hours=2))]
        else:
            subject = enrol_entry(tx, shop, face_models)
            alerts = [raise_alert(tx, shop, subject, sighting(ENROLLED, i)) for i in (6, 7)]
            if state == "suspended":
                suspend(
                    tx.session, shop.store.keys, tx.organisation, tx.user("carol"), subject, "x"
                )
            elif state == "restricted":
                restrict(
                    tx.session,
                    shop.store.keys,
                    tx.organisation,
                    tx.user("carol"),
                    subject,
                    True,
                    "x",
                )
        subject_id = subject.id
        alert_ids = {str(alert.id) for alert in alerts}

    hits = run_search(shop, face_models, own_photo())

    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    assert all(hit.score >= THRESHOLD for hit in hits)
    assert {hit.subject_id for hit in hits} == {str(subject_id)}
    assert [hit.kind for hit in hits].count("watchlist") == 1
    assert {hit.alert_id for hit in hits if hit.kind == "alert"} == alert_ids
    assert all(hit.alert_id is None for hit in hits if hit.kind == "watchlist")

    with shop.tx() as tx:
        (event,) = audit_events(tx, "dsar.search")
        assert event.actor == "carol"
        assert event.details["subjects"] == [str(subject_id)]
        assert set(event.details["alerts"]) == alert_ids
        assert event.details["threshold"] == round(THRESHOLD, 4)
        assert event.details["model"] == face_models.embedder.model_id
        assert set(event.details) == {"subjects", "alerts", "threshold", "model"}
        assert "entry label" not in json.dumps(event.details)


def enrolled_here_seen_stranger(shop: Shop, models: FaceModels) -> bytes:
    with shop.tx() as tx:
        enrol_entry(tx, shop, models)
    return own_photo("Gerhard_Schroeder", 0)


def enrolled_elsewhere(shop: Shop, models: FaceModels) -> bytes:
    other = set_up_shop(shop.store, "Other Shops")
    with other.tx() as tx:
        enrol_entry(tx, other, models)
    return own_photo()


@pytest.mark.parametrize(
    "prepare",
    [enrolled_here_seen_stranger, enrolled_elsewhere],
    ids=["stranger", "held-by-another-organisation"],
)
def test_a_photo_of_someone_not_held_finds_nothing(
    shop: Shop,
    face_models: FaceModels,
    sighting: Callable[..., Sighting],
    prepare: Callable[[Shop, FaceModels], bytes],
) -> None:
    """At the calibrated threshold a stranger's photo matches nothing, and an entry of
    another organisation is never searched; the (empty) search is still audited."""
    photo = prepare(shop, face_models)
    assert run_search(shop, face_models, photo) == []
    with shop.tx() as tx:
        (event,) = audit_events(tx, "dsar.search")
        assert event.details["subjects"] == []
        assert event.details["alerts"] == []


def test_a_photo_without_a_face_is_refused(shop: Shop, face_models: FaceModels) -> None:
    """The search needs one usable face; a photo without one is an error, not 'nothing held'."""
    with shop.tx() as tx:
        enrol_entry(tx, shop, face_models)
    ok, blank = cv2.imencode(".jpg", np.full((400, 300, 3), 128, np.uint8))
    assert ok
    with pytest.raises(WatchlistError, match="no face found"):
        run_search(shop, face_models, blank.tobytes(), "wall.jpg")
    with shop.tx() as tx:
        assert audit_events(tx, "dsar.search") == []


def test_only_approvers_answer_subject_access_requests(shop: Shop, face_models: FaceModels) -> None:
    """Reviewers, reporters and auditors may not search by face."""
    for name in ("bob", "dave", "frank"):
        with pytest.raises(PolicyError), shop.tx() as tx:
            search(
                tx.session,
                shop.store,
                tx.organisation,
                tx.user(name),
                face_models,
                own_photo(),
                "me.jpg",
                THRESHOLD,
            )


def test_export_writes_everything_held_about_the_entry(
    shop: Shop, face_models: FaceModels, sighting: Callable[..., Sighting], tmp_path: Path
) -> None:
    """subject.json holds the entry, its incidents, photos, templates, alerts with their
    reviews and the audit events about it (and none about others); every photo and
    snapshot is a readable JPEG."""
    with shop.tx() as tx:
        subject = enrol_entry(tx, shop, face_models, photos=2)
        alerts = [raise_alert(tx, shop, subject, sighting(ENROLLED, i)) for i in (6, 7)]
        review(
            tx.session, shop.store, tx.organisation, tx.user("dave"), alerts[0], Decision.CONFIRM
        )
        review(
            tx.session, shop.store, tx.organisation, tx.user("erin"), alerts[0], Decision.CONFIRM
        )
        review(tx.session, shop.store, tx.organisation, tx.user("dave"), alerts[1], Decision.REJECT)
        other = enrol_entry(tx, shop, face_models, "Gerhard_Schroeder")
        other_alert = raise_alert(tx, shop, other, sighting("Gerhard_Schroeder", 3))
        subject_id, other_id, other_alert_id = subject.id, other.id, other_alert.id
        images = {str(image.id): (image.width, image.height) for image in subject.images}
        vectors = {
            str(image.id): template_vector(shop.store.keys, template, subject.id)
            for image in subject.images
            for template in image.templates
        }
        alert_ids = {str(alert.id) for alert in alerts}
    run_search(shop, face_models, own_photo())  # audited with the entry's id: exported too

    folder = tmp_path / "request-17"
    with shop.tx() as tx:
        document = export(
            tx.session,
            shop.store,
            tx.organisation,
            tx.user("carol"),
            tx.session.get_one(Subject, subject_id),
            folder,
        )

    assert json.loads((folder / "subject.json").read_text()) == document
    assert document["id"] == str(subject_id)
    assert document["label"] == f"{ENROLLED} (entry label)"
    assert document["reason"] == "seen taking goods"
    assert document["status"] == "active"
    assert [i["description"] for i in document["incidents"]] == [
        "took razor blades from the front shelf"
    ]
    assert {i["id"]: tuple(i["size"]) for i in document["images"]} == images
    assert {t["image"] for t in document["templates"]} == set(images)
    for template in document["templates"]:
        assert template["model"] == face_models.embedder.model_id
        np.testing.assert_allclose(template["vector"], vectors[template["image"]], atol=1e-5)
    assert {a["id"] for a in document["alerts"]} == alert_ids
    reviews = {
        a["status"]: sorted((r["user"], r["decision"]) for r in a["reviews"])
        for a in document["alerts"]
    }
    assert reviews == {
        "confirmed": [("dave", "confirm"), ("erin", "confirm")],
        "rejected": [("dave", "reject")],
    }

    actions = [event["action"] for event in document["audit"]]
    assert actions.count("subject.enrol") == 1
    assert actions.count("subject.approve") == 1
    assert actions.count("alert.create") == 2
    assert actions.count("alert.review") == 3
    assert actions.count("dsar.search") == 1
    exported = json.dumps(document["audit"])
    assert str(other_id) not in exported
    assert str(other_alert_id) not in exported

    photos = sorted(p.name for p in (folder / "photos").iterdir())
    assert photos == sorted(f"{image_id}.jpg" for image_id in images)
    for image_id, (width, height) in images.items():
        decoded = cv2.imread(str(folder / "photos" / f"{image_id}.jpg"))
        assert decoded is not None
        assert decoded.shape[:2] == (height, width)
    snapshots = sorted(p.name for p in (folder / "alerts").iterdir())
    assert snapshots == sorted(f"{alert_id}.jpg" for alert_id in alert_ids)
    for name in snapshots:
        decoded = cv2.imread(str(folder / "alerts" / name))
        assert decoded is not None
        assert decoded.shape == sighting().chip.shape
    assert sorted(p.name for p in folder.iterdir()) == ["alerts", "photos", "subject.json"]

    with shop.tx() as tx:
        (event,) = audit_events(tx, "dsar.export")
        assert event.actor == "carol"
        assert event.object_id == str(subject_id)
        assert event.details == {"photos": 2, "alerts": 2}


def test_export_refuses_an_existing_folder(
    shop: Shop, face_models: FaceModels, tmp_path: Path
) -> None:
    """An export never writes into (or over) a folder that already exists."""
    with shop.tx() as tx:
        subject_id = enrol_entry(tx, shop, face_models).id
    folder = tmp_path / "request-17"
    folder.mkdir()
    (folder / "notes.txt").write_text("earlier request")
    with pytest.raises(PolicyError, match="already exists"), shop.tx() as tx:
        export(
            tx.session,
            shop.store,
            tx.organisation,
            tx.user("carol"),
            tx.session.get_one(Subject, subject_id),
            folder,
        )
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    with shop.tx() as tx:
        assert audit_events(tx, "dsar.export") == []


@pytest.mark.parametrize("form", ["full-id", "short-id"])
def test_an_entry_of_another_organisation_cannot_be_found(
    shop: Shop, face_models: FaceModels, sighting: Callable[..., Sighting], form: str
) -> None:
    """Lookups are scoped to the organisation: another one's entry or alert is 'not
    found', by full id or by the short id that lists show."""
    other = set_up_shop(shop.store, "Other Shops")
    with other.tx() as tx:
        subject = enrol_entry(tx, other, face_models)
        alert = raise_alert(tx, other, subject, sighting())
        idents = {Subject: str(subject.id), Alert: str(alert.id)}
    if form == "short-id":
        idents = {kind: ident[:8] for kind, ident in idents.items()}
    with shop.tx() as tx:
        for kind, ident in idents.items():
            with pytest.raises(NotFoundError):
                access.owned(tx.session, kind, shop.organisation_id, ident)
    with other.tx() as tx:
        for kind, ident in idents.items():
            assert str(access.owned(tx.session, kind, other.organisation_id, ident).id).startswith(
                ident
            )


def test_unknown_ids_are_not_found(shop: Shop) -> None:
    with shop.tx() as tx, pytest.raises(NotFoundError):
        access.owned(tx.session, Subject, shop.organisation_id, str(uuid.uuid4()))
