"""Moving a shop's stored watchlist from dlib's ResNet to SFace: every entry re-embedded
from its stored photos, one transaction per entry, audited; entries the new model
cannot use listed and never dropped; the model in use changed only when every entry
is ready; templates of different models never compared. Real models and LFW photos,
SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import cv2
import numpy as np
import pytest
from alembic import command
from sqlalchemy import func, select

from tests.support.data import MODELS
from tests.support.shop import (
    Shop,
    Sighting,
    enrol_subject,
    record_sighting,
    set_up_shop,
    sighting_of,
)
from watchkeeper.config import MatchingConfig, QualityConfig, Settings
from watchkeeper.errors import ConfigError, PolicyError, WatchlistError
from watchkeeper.governance import audit
from watchkeeper.governance.model_switch import (
    holdings,
    model_in_use,
    switch_model,
    unsearchable_entries,
)
from watchkeeper.governance.subjects import FACE_IMAGE, searchable_gallery, suspend
from watchkeeper.matching.gallery import ModelMismatchError
from watchkeeper.models.registry import BUILTIN_MODELS, ModelRegistry
from watchkeeper.pipeline import FaceModels
from watchkeeper.store.database import Store, _alembic_config
from watchkeeper.store.models import (
    Alert,
    AuditEvent,
    FaceImage,
    Organisation,
    Subject,
    SubjectStatus,
    Template,
)
from watchkeeper.vision.detection import FaceDetector
from watchkeeper.vision.embedding import Embeddings, create_embedder

DLIB = "dlib-resnet-v1"
SFACE = "sface-2021dec"
DLIB_ID = "dlib-resnet-v1@1"
SFACE_ID = "sface-2021dec@2021dec"


@pytest.fixture(scope="module")
def sface_models(
    registry: ModelRegistry, yunet: FaceDetector, quality: QualityConfig
) -> FaceModels:
    return FaceModels(yunet, create_embedder(SFACE, registry), quality, registry, MatchingConfig())


@pytest.fixture
def settings(store_settings: Settings) -> Settings:
    """The shop's settings with a fixed threshold, so that a switch to SFace is allowed
    whether or not the registry holds a calibration for it yet."""
    return store_settings.model_copy(update={"matching": MatchingConfig(threshold=0.5)})


def templates_by_model(shop: Shop) -> dict[uuid.UUID, set[str]]:
    """Each enrolment photo's models."""
    with shop.tx() as tx:
        found: dict[uuid.UUID, set[str]] = {
            image: set() for image in tx.session.scalars(select(FaceImage.id))
        }
        for image, model in tx.session.execute(select(Template.face_image_id, Template.model_id)):
            found[image].add(model)
    return found


def models_of(shop: Shop, subject_id: uuid.UUID) -> list[set[str]]:
    """The models of each photo of one entry, oldest photo first."""
    with shop.tx() as tx:
        images = tx.session.scalars(
            select(FaceImage)
            .where(FaceImage.subject_id == subject_id)
            .order_by(FaceImage.created_at, FaceImage.id)
        ).all()
        return [{t.model_id for t in image.templates} for image in images]


def actions(shop: Shop) -> list[str]:
    with shop.tx() as tx:
        return list(tx.session.scalars(select(AuditEvent.action).order_by(AuditEvent.sequence)))


def organisation_model(shop: Shop) -> str | None:
    with shop.tx() as tx:
        return tx.organisation.embedder


def blank_photo(store: Store, shop: Shop, subject_id: uuid.UUID, which: int = 0) -> uuid.UUID:
    """Replace one stored enrolment photo of an entry by a picture with no face (validly
    encrypted): a photo that no longer passes the gate. Its id."""
    with shop.tx() as tx:
        image_id = tx.session.scalars(
            select(FaceImage.id)
            .where(FaceImage.subject_id == subject_id)
            .order_by(FaceImage.created_at, FaceImage.id)
        ).all()[which]
    ok, grey = cv2.imencode(".jpg", np.full((240, 240, 3), 128, np.uint8))
    assert ok
    store.files.write(FACE_IMAGE, image_id, grey.tobytes(), subject_id)
    return image_id


def test_a_switch_re_embeds_every_entry_and_only_the_new_model_is_searched(
    shop: Shop,
    settings: Settings,
    face_models: FaceModels,
    sface_models: FaceModels,
    sightings: Callable[[str, int], Sighting],
) -> None:
    assert organisation_model(shop) is None, "a new organisation follows the configuration"
    biden = enrol_subject(shop, face_models, "Joseph_Biden", photos=2)
    assert organisation_model(shop) == DLIB, "the first enrolment fixes the model in use"
    trump = enrol_subject(shop, face_models, "Donald_Trump", approve_by=None)  # pending
    powell = enrol_subject(shop, face_models, "Colin_Powell")
    with shop.tx() as tx:
        seen = sightings("Joseph_Biden", 4)
        alert = record_sighting(tx.session, shop, tx.camera, biden, seen)
        assert alert is not None
        alert_id = alert.id
        subject = tx.session.get_one(Subject, powell)
        suspend(tx.session, shop.store.keys, tx.organisation, tx.user("carol"), subject, "check")
    with shop.tx() as tx:
        before = searchable_gallery(
            tx.session, shop.store.keys, shop.organisation_id, shop.site_id, DLIB_ID
        )
        assert set(before.subjects) == {str(biden)}
        assert (
            len(
                searchable_gallery(
                    tx.session, shop.store.keys, shop.organisation_id, shop.site_id, SFACE_ID
                )
            )
            == 0
        )

    seen_progress: list[tuple[int, int]] = []
    report = switch_model(
        shop.store,
        settings,
        shop.organisation_id,
        "carol",
        sface_models,
        progress=lambda done, total: seen_progress.append((done, total)),
    )

    assert report.switched
    assert not report.already
    assert (report.previous, report.model, report.model_id) == (DLIB, SFACE, SFACE_ID)
    assert (report.entries, report.retemplated, report.templates) == (3, 3, 4)
    assert report.unusable == []
    assert seen_progress == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert organisation_model(shop) == SFACE
    assert all(models == {DLIB_ID, SFACE_ID} for models in templates_by_model(shop).values()), (
        "every photo of every entry (pending and suspended ones too) has both templates"
    )
    with shop.tx() as tx:
        assert model_in_use(tx.organisation, settings) == SFACE
        assert {
            (h.model_id, h.templates, h.entries) for h in holdings(tx.session, shop.organisation_id)
        } == {
            (DLIB_ID, 4, 3),
            (SFACE_ID, 4, 3),
        }
        gallery = searchable_gallery(
            tx.session, shop.store.keys, shop.organisation_id, shop.site_id, SFACE_ID
        )
        assert gallery.model_id == SFACE_ID
        assert set(gallery.subjects) == {str(biden)}, "only active entries are searched"
        assert tx.session.get_one(Alert, alert_id).model_id == DLIB_ID, (
            "alerts are kept as they were"
        )
        statuses = {s.id: s.status for s in tx.session.scalars(select(Subject))}
    assert statuses == {
        biden: SubjectStatus.ACTIVE,
        trump: SubjectStatus.PENDING,
        powell: SubjectStatus.SUSPENDED,
    }

    # A face seen by the new model is found by it; one embedded by the old model cannot
    # be compared with the new gallery at all.
    sface_seen = sighting_of(sface_models, "Joseph_Biden", 4)
    decision = gallery.decide(Embeddings(SFACE_ID, sface_seen.vector[None]), np.ones(1), 0.3, 5)
    assert decision.subject == str(biden)
    dlib_seen = Embeddings(seen.model_id, seen.vector[None])
    with pytest.raises(ModelMismatchError):
        gallery.decide(dlib_seen, np.ones(1), 0.3, 5)

    events = actions(shop)
    started = events.index("models.switch_started")
    assert events[started:] == ["models.switch_started"] + ["subject.retemplate"] * 3 + [
        "models.switch_completed"
    ]
    with shop.tx() as tx:
        completed = tx.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "models.switch_completed")
        ).one()
        assert completed.actor == "carol"
        assert completed.details == {
            "model_from": DLIB,
            "model_to": SFACE,
            "entries": 3,
            "retemplated": 3,
            "templates": 4,
            "unusable": [],
            "dropped_templates": 0,
        }
        assert audit.verify(tx.session, shop.store.keys, tx.organisation).intact

    # The old templates were kept: switching back embeds nothing.
    back = switch_model(shop.store, settings, shop.organisation_id, "alice", face_models)
    assert back.switched
    assert (back.entries, back.templates) == (0, 0)
    assert organisation_model(shop) == DLIB
    again = switch_model(shop.store, settings, shop.organisation_id, "alice", face_models)
    assert again.already, "the model in use: nothing to do"
    assert not again.switched


def test_entries_no_photo_of_which_passes_are_listed_and_kept_and_switch_only_when_accepted(
    shop: Shop, settings: Settings, face_models: FaceModels, sface_models: FaceModels
) -> None:
    biden = enrol_subject(shop, face_models, "Joseph_Biden", photos=2, label="Biden, J.")
    trump = enrol_subject(shop, face_models, "Donald_Trump", label="man, red tie")
    blank_photo(shop.store, shop, biden, which=1)  # Biden keeps one usable photo
    blanked = blank_photo(shop.store, shop, trump)  # Trump has none

    report = switch_model(shop.store, settings, shop.organisation_id, "carol", sface_models)
    assert not report.switched
    assert organisation_model(shop) == DLIB, "searching goes on with the old model"
    [unusable] = report.unusable
    assert (unusable.subject_id, unusable.label, unusable.status) == (
        str(trump),
        "man, red tie",
        "active",
    )
    assert list(unusable.photos) == [str(blanked)]
    assert "no face" in unusable.photos[str(blanked)][0]
    assert models_of(shop, biden) == [{DLIB_ID, SFACE_ID}, {DLIB_ID}]
    assert models_of(shop, trump) == [{DLIB_ID}]
    with shop.tx() as tx:
        incomplete = tx.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "models.switch_incomplete")
        ).one()
        assert incomplete.details["unusable"] == [str(trump)]
        assert "man, red tie" not in str(incomplete.details), "the log holds ids, not labels"

    # Accepted: switched, the entry listed again, kept (never deleted) but not searched.
    accepted = switch_model(
        shop.store,
        settings,
        shop.organisation_id,
        "carol",
        sface_models,
        accept_unusable=True,
        drop_old=True,
    )
    assert accepted.switched
    assert [entry.subject_id for entry in accepted.unusable] == [str(trump)]
    assert (accepted.retemplated, accepted.templates) == (0, 0), "Biden was done already"
    assert accepted.dropped_templates == 3, "with drop_old, the dlib templates are deleted"
    assert organisation_model(shop) == SFACE
    assert models_of(shop, biden) == [{SFACE_ID}, set()]
    with shop.tx() as tx:
        assert tx.session.get_one(Subject, trump).status is SubjectStatus.ACTIVE
        assert unsearchable_entries(tx.session, shop.organisation_id, SFACE_ID) == [trump]
        gallery = searchable_gallery(
            tx.session, shop.store.keys, shop.organisation_id, shop.site_id, SFACE_ID
        )
        assert set(gallery.subjects) == {str(biden)}
        completed = tx.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "models.switch_completed")
        ).one()
        assert completed.details["unusable"] == [str(trump)]
        assert completed.details["dropped_templates"] == 3
        assert audit.verify(tx.session, shop.store.keys, tx.organisation).intact


@pytest.mark.parametrize("database_url", [None], ids=["sqlite"])
def test_each_entry_is_one_transaction_and_an_error_stops_the_switch(
    shop: Shop, settings: Settings, face_models: FaceModels, sface_models: FaceModels
) -> None:
    first = enrol_subject(shop, face_models, "Joseph_Biden", photos=2)
    broken = enrol_subject(shop, face_models, "George_W_Bush", photos=2)
    after = enrol_subject(shop, face_models, "Donald_Trump")
    with shop.tx() as tx:
        damaged = tx.session.scalars(
            select(FaceImage.id)
            .where(FaceImage.subject_id == broken)
            .order_by(FaceImage.created_at, FaceImage.id)
        ).all()[1]
    shop.store.files.path(FACE_IMAGE, damaged).unlink()

    with pytest.raises(WatchlistError, match="cannot be read"):
        switch_model(shop.store, settings, shop.organisation_id, "carol", sface_models)

    assert models_of(shop, first) == [{DLIB_ID, SFACE_ID}] * 2, "the entry before: complete"
    assert models_of(shop, broken) == [{DLIB_ID}] * 2, (
        "the failing entry: its first photo's template was not stored without the second"
    )
    assert models_of(shop, after) == [{DLIB_ID}], "the entry after: untouched"
    assert organisation_model(shop) == DLIB
    events = actions(shop)
    assert events[-2:] == ["subject.retemplate", "models.switch_incomplete"]
    with shop.tx() as tx:
        stopped = tx.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "models.switch_incomplete")
        ).one()
        assert "WatchlistError" in stopped.details["reason"]
        assert audit.verify(tx.session, shop.store.keys, tx.organisation).intact


@pytest.mark.parametrize("database_url", [None], ids=["sqlite"])
def test_what_is_enrolled_during_a_switch_is_embedded_before_the_switch_is_stored(
    shop: Shop, settings: Settings, face_models: FaceModels, sface_models: FaceModels
) -> None:
    enrol_subject(shop, face_models, "Joseph_Biden")
    enrol_subject(shop, face_models, "Donald_Trump")
    late: list[uuid.UUID] = []

    def enrol_meanwhile(done: int, total: int) -> None:
        if done == 1 and not late:  # while the switch runs, with the old model
            late.append(enrol_subject(shop, face_models, "Colin_Powell", approve_by=None))

    report = switch_model(
        shop.store, settings, shop.organisation_id, "carol", sface_models, progress=enrol_meanwhile
    )
    assert report.switched
    assert (report.entries, report.retemplated) == (3, 3)
    assert models_of(shop, late[0]) == [{DLIB_ID, SFACE_ID}]

    # Once switched, an enrolment made with the old model is refused, storing nothing.
    with pytest.raises(PolicyError, match="searched with 'sface-2021dec'"):
        enrol_subject(shop, face_models, "George_W_Bush")
    with shop.tx() as tx:
        assert tx.session.scalar(select(func.count()).select_from(Subject)) == 3
    enrol_subject(shop, sface_models, "George_W_Bush")
    assert all(SFACE_ID in models for models in templates_by_model(shop).values())


@pytest.mark.parametrize("database_url", [None], ids=["sqlite"])
def test_only_approvers_switch_and_a_model_without_threshold_is_refused(
    shop: Shop,
    store_settings: Settings,
    face_models: FaceModels,
    sface_models: FaceModels,
    yunet: FaceDetector,
    quality: QualityConfig,
) -> None:
    enrol_subject(shop, face_models, "Joseph_Biden")
    before = actions(shop)
    settings = store_settings.model_copy(update={"matching": MatchingConfig(threshold=0.5)})
    for name in ("bob", "dave", "frank"):
        with pytest.raises(PolicyError, match="may not approve"):
            switch_model(shop.store, settings, shop.organisation_id, name, sface_models)

    uncalibrated = ModelRegistry(
        MODELS,
        specs=tuple(spec.model_copy(update={"calibration": None}) for spec in BUILTIN_MODELS),
    )
    models = FaceModels(
        yunet, create_embedder(SFACE, uncalibrated), quality, uncalibrated, MatchingConfig()
    )
    unset = store_settings.model_copy(update={"matching": MatchingConfig(threshold=None)})
    with pytest.raises(ConfigError, match="no calibrated threshold"):
        switch_model(shop.store, unset, shop.organisation_id, "carol", models)
    assert actions(shop) == before, "a refused switch records and changes nothing"
    assert organisation_model(shop) == DLIB


def test_upgrading_pins_organisations_with_templates_to_their_model(
    store: Store, face_models: FaceModels
) -> None:
    """Migration 0006: an organisation that holds templates keeps the model they were made
    with, whatever the configuration's default; one that holds none follows it."""
    shop = set_up_shop(store)
    set_up_shop(store, "Empty Shops")
    enrol_subject(shop, face_models, "Joseph_Biden")
    config = _alembic_config(store.engine)
    command.downgrade(config, "0005")
    command.upgrade(config, "head")
    with store.session() as session:
        pinned = {o.name: o.embedder for o in session.scalars(select(Organisation))}
    assert pinned == {"Corner Shops": DLIB, "Empty Shops": None}
