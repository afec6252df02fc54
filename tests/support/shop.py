"""A real database (SQLite file, or a PostgreSQL server started from the `pgserver`
wheel) with one organisation set up as a small shop chain, for governance tests."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

from tests.support.data import lfw_photos
from watchkeeper.governance.alerts import record_alert
from watchkeeper.governance.incidents import record_incident
from watchkeeper.governance.organisation import add_camera, add_site, add_user, create_organisation
from watchkeeper.governance.subjects import EnrolmentPhoto, approve, enrol
from watchkeeper.matching.watchlist import enrolment_face
from watchkeeper.pipeline import FaceModels
from watchkeeper.store.database import Store, create_database_engine, upgrade_schema
from watchkeeper.store.models import (
    Alert,
    Camera,
    Incident,
    IncidentCategory,
    Organisation,
    Role,
    Site,
    Subject,
    User,
    utcnow,
)
from watchkeeper.vision.images import read_image

TEMPLATE_DATABASE = "watchkeeper_template"
"""Migrated once per test session; each test's database is a copy of it."""

USERS = {
    "alice": Role.ADMIN,
    "bob": Role.REPORTER,
    "carol": Role.MANAGER,
    "dave": Role.REVIEWER,
    "erin": Role.REVIEWER,
    "frank": Role.AUDITOR,
}
"""The shop's staff: ``alice`` created the organisation."""


class PostgresServer:
    """One PostgreSQL server for the test session, with a database per test."""

    def __init__(self, folder: Path) -> None:
        import pgserver  # only the PostgreSQL tests need the server's wheel

        self._server = pgserver.get_server(folder, cleanup_mode="stop")
        self.base_url = self._server.get_uri().replace("postgresql://", "postgresql+psycopg://")
        self._admin = create_database_engine(self.base_url).execution_options(
            isolation_level="AUTOCOMMIT"
        )
        with self._admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {TEMPLATE_DATABASE}"))
        template = create_database_engine(self.url(TEMPLATE_DATABASE))
        upgrade_schema(template)
        template.dispose()

    def url(self, database: str) -> str:
        return self.base_url.replace("/postgres?", f"/{database}?")

    def new_database(self, migrated: bool = True) -> str:
        """A fresh database: a copy of the migrated template, or (``migrated`` False)
        one without a table, for building a database at an older schema."""
        name = f"test_{uuid.uuid4().hex[:12]}"
        template = f" TEMPLATE {TEMPLATE_DATABASE}" if migrated else ""
        with self._admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name}{template}"))
        return self.url(name)

    def stop(self) -> None:
        self._admin.dispose()
        self._server.cleanup()


@dataclass
class Tx:
    """One transaction over the shop's records."""

    session: Session
    organisation: Organisation
    site: Site
    camera: Camera
    incident: Incident

    def user(self, name: str) -> User:
        found = (
            self.session.query(User)
            .filter_by(organisation_id=self.organisation.id, name=name)
            .one()
        )
        return found


@dataclass
class Shop:
    """An organisation with a site ("Leeds"), a camera ("door"), a theft incident and
    the staff in :data:`USERS`."""

    store: Store
    organisation_id: uuid.UUID
    site_id: uuid.UUID
    camera_id: uuid.UUID
    incident_id: uuid.UUID

    @contextmanager
    def tx(self) -> Iterator[Tx]:
        with self.store.session() as session:
            yield Tx(
                session,
                session.get_one(Organisation, self.organisation_id),
                session.get_one(Site, self.site_id),
                session.get_one(Camera, self.camera_id),
                session.get_one(Incident, self.incident_id),
            )


def set_up_shop(store: Store, name: str = "Corner Shops") -> Shop:
    with store.session() as session:
        organisation, admin = create_organisation(session, store.keys, name, "alice")
        assert admin is not None
        site = add_site(session, store.keys, organisation, admin, "Leeds")
        for user, role in USERS.items():
            if user != "alice":
                add_user(session, store.keys, organisation, admin, user, role, [site])
        camera = add_camera(
            session, store.keys, organisation, admin, site, "door", "rtsp://cam:pw@10.0.0.9/s"
        )
        reporter = session.query(User).filter_by(organisation_id=organisation.id, name="bob").one()
        incident = record_incident(
            session,
            store.keys,
            organisation,
            reporter,
            site=site,
            occurred_at=utcnow(),
            category=IncidentCategory.THEFT,
            description="took razor blades from the front shelf",
        )
        return Shop(store, organisation.id, site.id, camera.id, incident.id)


def photos_of(person: str, count: int, skip: int = 0) -> list[EnrolmentPhoto]:
    """``count`` LFW photos of ``person`` that each show one usable face."""
    usable = [p for p in lfw_photos(person) if p.name not in TWO_FACE_PHOTOS]
    chosen = usable[skip : skip + count]
    if len(chosen) < count:
        raise ValueError(f"LFW has only {len(usable)} single-face photos of {person}")
    return [EnrolmentPhoto(p.name, p.read_bytes()) for p in chosen]


TWO_FACE_PHOTOS = {"Joseph_Biden_0002.jpg"}
"""LFW photos in which the gate finds two usable faces (refused for enrolment)."""


def enrol_in(
    tx: Tx,
    shop: Shop,
    models: FaceModels,
    person: str,
    *,
    photos: int = 1,
    approve_by: str | None = "carol",
    label: str | None = None,
    incidents: list[Incident] | None = None,
    now: dt.datetime | None = None,
    expires_at: dt.datetime | None = None,
    **options: object,
) -> Subject:
    """Enrol ``person`` in ``tx`` (by ``bob``, linked to the shop's incident unless
    ``incidents`` are given) and, unless ``approve_by`` is None, approve it as at ``now``."""
    subject = enrol(
        tx.session,
        shop.store,
        tx.organisation,
        tx.user("bob"),
        models,
        label=label or person,
        reason="seen taking goods",
        incidents=incidents or [tx.incident],
        photos=photos_of(person, photos),
        attest_not_child_or_vulnerable=True,
        expires_at=expires_at,
        now=now,
        **options,  # type: ignore[arg-type]
    )
    if approve_by is not None:
        approve(tx.session, shop.store.keys, tx.organisation, tx.user(approve_by), subject, now)
    return subject


def enrol_subject(
    shop: Shop,
    models: FaceModels,
    person: str,
    photos: int = 1,
    approve_by: str | None = "carol",
    label: str | None = None,
    **options: object,
) -> uuid.UUID:
    """:func:`enrol_in` in a transaction of its own; the subject id."""
    with shop.tx() as tx:
        return enrol_in(
            tx, shop, models, person, photos=photos, approve_by=approve_by, label=label, **options
        ).id  # type: ignore[arg-type]


@dataclass(frozen=True)
class Sighting:
    """A face chip as a camera would see it, and its embedding."""

    chip: np.ndarray
    vector: np.ndarray
    model_id: str


def sighting_of(models: FaceModels, person: str, index: int) -> Sighting:
    """The chip and probe vector of LFW photo ``index`` of ``person``."""
    image = read_image(lfw_photos(person)[index])
    face = enrolment_face(image, models.detector, models.embedder, models.quality)
    vector = models.embedder.embed([face.chip]).vectors[0]
    return Sighting(face.chip, vector, models.embedder.model_id)


ALERT_SCORE = 0.65
ALERT_THRESHOLD = 0.46
"""The score and threshold recorded with test alerts."""


def record_sighting(
    session: Session,
    shop: Shop,
    camera: Camera,
    subject_id: uuid.UUID,
    seen: Sighting,
    occurred_at: dt.datetime | None = None,
) -> Alert | None:
    """Record a match of ``subject_id`` seen at ``camera``, as live matching does."""
    return record_alert(
        session,
        shop.store,
        camera,
        subject_id,
        score=ALERT_SCORE,
        threshold=ALERT_THRESHOLD,
        model_id=seen.model_id,
        probe=seen.vector,
        crop=seen.chip,
        occurred_at=occurred_at,
    )
