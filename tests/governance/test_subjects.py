"""Watchlist entries: each rule of enrolment, approval, renewal, suspension and
restriction, and which entries live matching may search. Every test runs on SQLite and
on PostgreSQL (the ``shop`` fixture)."""

from __future__ import annotations

import datetime as dt
import errno
import uuid
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from tests.support.data import lfw_photos
from tests.support.shop import Shop, Tx, enrol_subject, photos_of, set_up_shop
from watchkeeper.errors import PolicyError
from watchkeeper.governance import audit, retention
from watchkeeper.governance.organisation import Policy, add_site, set_policy
from watchkeeper.governance.subjects import (
    FACE_IMAGE,
    EnrolmentPhoto,
    PhotosRefused,
    approve,
    enrol,
    make_template,
    renew,
    restrict,
    retemplate,
    searchable_gallery,
    suspend,
    template_vector,
)
from watchkeeper.matching.gallery import Gallery
from watchkeeper.pipeline import FaceModels
from watchkeeper.store.database import Store
from watchkeeper.store.models import (
    AuditEvent,
    FaceImage,
    Incident,
    Organisation,
    Site,
    Subject,
    SubjectIncident,
    SubjectSite,
    SubjectStatus,
    Template,
    utcnow,
)
from watchkeeper.vision.images import read_image

OTHER_MODEL = "other-model@1"


# --- helpers ---------------------------------------------------------------------------


def held(store: Store) -> dict[str, int]:
    """How many watchlist rows of each kind, and encrypted files, the store holds."""
    with store.session() as session:
        counts = {
            model.__tablename__: session.scalar(select(func.count()).select_from(model))
            for model in (Subject, FaceImage, Template, SubjectIncident, SubjectSite)
        }
    counts["files"] = len(list(store.files.all_files()))
    return counts


NOTHING = {
    "subject": 0,
    "face_image": 0,
    "template": 0,
    "subject_incident": 0,
    "subject_site": 0,
    "files": 0,
}


def audit_count(shop: Shop) -> int:
    with shop.store.session() as session:
        return session.get_one(Organisation, shop.organisation_id).audit_count


def newest_actions(shop: Shop, count: int) -> list[str]:
    with shop.store.session() as session:
        actions = session.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.organisation_id == shop.organisation_id)
            .order_by(AuditEvent.sequence.desc())
            .limit(count)
        ).all()
    return list(reversed(actions))


def assert_logged(shop: Shop, *actions: str) -> None:
    """The newest audit events are ``actions``, and the chain still verifies."""
    assert newest_actions(shop, len(actions)) == list(actions)
    with shop.store.session() as session:
        organisation = session.get_one(Organisation, shop.organisation_id)
        report = audit.verify(session, shop.store.keys, organisation)
    assert report.intact, report.problems


def propose(
    shop: Shop,
    models: FaceModels,
    photos: list[EnrolmentPhoto],
    actor: str = "bob",
    **options: Any,
) -> uuid.UUID:
    """Enrol through :func:`enrol` with valid defaults; an option given as a function is
    called with the transaction (for rows that must come from its session)."""
    with shop.tx() as tx:
        arguments: dict[str, Any] = {
            "label": "tall man, red cap",
            "reason": "seen taking goods",
            "incidents": [tx.incident],
            "photos": photos,
            "attest_not_child_or_vulnerable": True,
        }
        arguments |= {k: v(tx) if callable(v) else v for k, v in options.items()}
        subject = enrol(
            tx.session, shop.store, tx.organisation, tx.user(actor), models, **arguments
        )
        return subject.id


def change_policy(shop: Shop, **policy: Any) -> None:
    with shop.tx() as tx:
        set_policy(tx.session, shop.store.keys, tx.organisation, tx.user("alice"), Policy(**policy))


def add_york(shop: Shop) -> uuid.UUID:
    with shop.tx() as tx:
        return add_site(tx.session, shop.store.keys, tx.organisation, tx.user("alice"), "York").id


def site_named(name: str) -> Callable[[Tx], list[Site]]:
    def sites(tx: Tx) -> list[Site]:
        found = tx.session.scalars(
            select(Site).where(Site.organisation_id == tx.organisation.id, Site.name == name)
        ).one()
        return [found]

    return sites


def act(
    shop: Shop,
    action: Callable[..., Any],
    actor: str,
    subject_id: uuid.UUID,
    *args: Any,
    **kwargs: Any,
) -> None:
    """Run a subject action (approve, suspend, ...) by ``actor`` in its own transaction."""
    with shop.tx() as tx:
        subject = tx.session.get_one(Subject, subject_id)
        action(
            tx.session, shop.store.keys, tx.organisation, tx.user(actor), subject, *args, **kwargs
        )


def status_of(shop: Shop, subject_id: uuid.UUID) -> Subject:
    with shop.store.session() as session:
        return session.get_one(Subject, subject_id)


def gallery(
    shop: Shop,
    models: FaceModels,
    site_id: uuid.UUID | None = None,
    model_id: str | None = None,
    now: dt.datetime | None = None,
    organisation_id: uuid.UUID | None = None,
) -> Gallery:
    with shop.store.session() as session:
        return searchable_gallery(
            session,
            shop.store.keys,
            organisation_id or shop.organisation_id,
            site_id or shop.site_id,
            model_id or models.embedder.model_id,
            now=now,
        )


def searched(shop: Shop, models: FaceModels, **where: Any) -> set[str]:
    """Ids of the entries in the gallery."""
    return set(gallery(shop, models, **where).subjects)


def jpeg(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return encoded.tobytes()


def biden(index: int = 0) -> np.ndarray:
    return read_image(lfw_photos("Joseph_Biden")[index])


def gradient() -> bytes:
    across = np.tile(np.linspace(0, 255, 320, dtype=np.float32), (240, 1))
    down = np.tile(np.linspace(0, 255, 240, dtype=np.float32)[:, None], (1, 320))
    return jpeg(np.dstack([across, down, np.full_like(across, 128)]).astype(np.uint8))


def background() -> bytes:
    """The top-left corner of an LFW photo (wall and hair, no face), enlarged."""
    return jpeg(cv2.resize(biden()[0:60, 0:60], (240, 240)))


def two_faces() -> bytes:
    return (lfw_photos("Joseph_Biden")[1]).read_bytes()


def too_small() -> bytes:
    return jpeg(cv2.resize(biden(), (48, 48), interpolation=cv2.INTER_AREA))


def blurred() -> bytes:
    return jpeg(cv2.GaussianBlur(biden(), (0, 0), 6))


def not_an_image() -> bytes:
    return b"%PDF-1.4 this is a scanned form, not a photo"


def empty() -> bytes:
    return b""


# --- enrolment ---------------------------------------------------------------------------


def test_an_enrolment_stores_photos_templates_and_links(
    shop: Shop, face_models: FaceModels
) -> None:
    now = utcnow()
    subject_id = propose(shop, face_models, photos_of("Joseph_Biden", 2), now=now)
    with shop.store.session() as session:
        subject = session.get_one(Subject, subject_id)
        assert subject.status == SubjectStatus.PENDING
        assert subject.created_by.name == "bob"
        assert subject.approved_by_id is None
        assert subject.not_child_or_vulnerable
        assert subject.expires_at == now + dt.timedelta(days=365)
        assert [i.id for i in subject.incidents] == [shop.incident_id]
        assert [s.id for s in subject.sites] == [shop.site_id]
        images = subject.images
        assert len(images) == 2
        for image in images:
            assert [t.model_id for t in image.templates] == [face_models.embedder.model_id]
            vector = template_vector(shop.store.keys, image.templates[0], subject.id)
            assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-3)
            assert shop.store.files.path(FACE_IMAGE, image.id).is_file()
        event = session.scalars(
            select(AuditEvent).order_by(AuditEvent.sequence.desc()).limit(1)
        ).one()
    assert held(shop.store) == {
        **NOTHING,
        "subject": 1,
        "face_image": 2,
        "template": 2,
        "subject_incident": 1,
        "subject_site": 1,
        "files": 2,
    }
    assert event.object_id == str(subject_id)
    assert event.details["photos"] == 2
    assert event.details["model"] == face_models.embedder.model_id
    assert "tall man" not in str(event.details)
    assert_logged(shop, "subject.enrol")


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (gradient, "no face found"),
        (background, "no face found"),
        (two_faces, "2 usable faces; an enrolment photo must show one person only"),
        (too_small, "too small"),
        (blurred, "blurred"),
        (not_an_image, "not a readable image"),
        (empty, "empty file"),
    ],
    ids=["gradient", "background", "two-faces", "too-small", "blurred", "not-an-image", "empty"],
)
def test_an_unusable_photo_refuses_the_whole_enrolment(
    shop: Shop, face_models: FaceModels, make: Callable[[], bytes], reason: str
) -> None:
    """The refusal names the bad photo with its reason; the good photo beside it is not
    stored either, even when the caller's transaction goes on to commit."""
    before = audit_count(shop)
    bad = EnrolmentPhoto("upload-2.jpg", make())
    with shop.tx() as tx, pytest.raises(PhotosRefused) as refused:
        enrol(
            tx.session,
            shop.store,
            tx.organisation,
            tx.user("bob"),
            face_models,
            label="tall man, red cap",
            reason="seen taking goods",
            incidents=[tx.incident],
            photos=[*photos_of("Joseph_Biden", 1), bad],
            attest_not_child_or_vulnerable=True,
        )
    assert list(refused.value.refusals) == ["upload-2.jpg"]
    reasons = refused.value.refusals["upload-2.jpg"]
    assert any(reason in r for r in reasons), reasons
    assert "upload-2.jpg" in str(refused.value)
    assert "nothing stored" in str(refused.value)
    assert held(shop.store) == NOTHING
    assert audit_count(shop) == before


def test_every_unusable_photo_is_listed(shop: Shop, face_models: FaceModels) -> None:
    photos = [
        EnrolmentPhoto("a.jpg", gradient()),
        *photos_of("Joseph_Biden", 1),
        EnrolmentPhoto("b.jpg", not_an_image()),
    ]
    with pytest.raises(PhotosRefused) as refused:
        propose(shop, face_models, photos)
    assert set(refused.value.refusals) == {"a.jpg", "b.jpg"}
    assert held(shop.store) == NOTHING


def _other_incident(tx: Tx) -> list[Incident]:
    return list(
        tx.session.scalars(select(Incident).where(Incident.organisation_id != tx.organisation.id))
    )


def _other_site(tx: Tx) -> list[Site]:
    return list(tx.session.scalars(select(Site).where(Site.organisation_id != tx.organisation.id)))


NOW = utcnow()

REFUSED_ENROLMENTS: dict[str, tuple[dict[str, Any], str]] = {
    "no-incident": ({"incidents": []}, r"at least one recorded incident"),
    "incident-of-another-organisation": (
        {"incidents": _other_incident},
        r"incident of another organisation",
    ),
    "site-of-another-organisation": ({"sites": _other_site}, r"site of another organisation"),
    "no-attestation": (
        {"attest_not_child_or_vulnerable": False},
        r"attest that the person is not known to be a child or a vulnerable person",
    ),
    "expiry-in-the-past": (
        {"expires_at": NOW - dt.timedelta(days=1), "now": NOW},
        r"is not in the future",
    ),
    "expiry-now": ({"expires_at": NOW, "now": NOW}, r"is not in the future"),
    "expiry-beyond-730-days": (
        {"expires_at": NOW + dt.timedelta(days=730, seconds=1), "now": NOW},
        r"beyond the policy maximum of 730 days",
    ),
    "no-label": ({"label": "  "}, r"needs a label and a reason"),
    "no-reason": ({"reason": ""}, r"needs a label and a reason"),
    "no-photos": ({"photos": []}, r"at least one photo"),
    "by-a-reviewer": ({"actor": "dave"}, r"'dave' \(reviewer\) may not propose"),
    "by-an-auditor": ({"actor": "frank"}, r"'frank' \(auditor\) may not propose"),
}


@pytest.mark.parametrize("case", REFUSED_ENROLMENTS.values(), ids=REFUSED_ENROLMENTS.keys())
def test_an_enrolment_against_policy_is_refused(
    shop: Shop, face_models: FaceModels, case: tuple[dict[str, Any], str]
) -> None:
    options, message = case
    set_up_shop(shop.store, "Other Org")
    before = audit_count(shop)
    options = {"photos": photos_of("Joseph_Biden", 1), **options}
    with pytest.raises(PolicyError, match=message):
        propose(shop, face_models, **options)
    assert held(shop.store) == NOTHING
    assert audit_count(shop) == before


def test_the_exact_maximum_expiry_is_accepted(shop: Shop, face_models: FaceModels) -> None:
    now = utcnow()
    subject_id = propose(
        shop,
        face_models,
        photos_of("Joseph_Biden", 1),
        expires_at=now + dt.timedelta(days=730),
        now=now,
    )
    assert status_of(shop, subject_id).expires_at == now + dt.timedelta(days=730)
    assert_logged(shop, "subject.enrol")


def test_an_expiry_beyond_the_policy_maximum_is_refused(
    shop: Shop, face_models: FaceModels
) -> None:
    change_policy(shop, max_retention_days=90, default_retention_days=30)
    now = utcnow()
    with pytest.raises(PolicyError, match=r"beyond the policy maximum of 90 days"):
        propose(
            shop,
            face_models,
            photos_of("Joseph_Biden", 1),
            expires_at=now + dt.timedelta(days=91),
            now=now,
        )
    assert held(shop.store) == NOTHING
    subject_id = propose(shop, face_models, photos_of("Joseph_Biden", 1), now=now)
    assert status_of(shop, subject_id).expires_at == now + dt.timedelta(days=30)
    assert_logged(shop, "organisation.policy", "subject.enrol")


@pytest.mark.parametrize("days", [731, 800, 10_000])
def test_no_policy_allows_more_than_730_days(days: int) -> None:
    with pytest.raises(PolicyError, match=r"maximum retention must be 1 to 730 days"):
        Policy(max_retention_days=days).check()


def test_730_days_is_the_ceiling_even_if_the_database_says_more(
    shop: Shop, face_models: FaceModels
) -> None:
    """A policy row edited past the ceiling (bypassing Policy.check) still cannot make an
    entry live longer than 730 days."""
    with shop.store.session() as session:
        session.get_one(Organisation, shop.organisation_id).max_retention_days = 800
    now = utcnow()
    with pytest.raises(PolicyError, match=r"beyond the policy maximum of 730 days"):
        propose(
            shop,
            face_models,
            photos_of("Joseph_Biden", 1),
            expires_at=now + dt.timedelta(days=800),
            now=now,
        )
    assert held(shop.store) == NOTHING


# --- approval ----------------------------------------------------------------------------

APPROVALS: dict[str, tuple[str, str, str | None, str | None]] = {
    # creator, approver, approver_roles policy, refusal (None: accepted)
    "manager-approves-reporters-entry": ("bob", "carol", None, None),
    "admin-approves-reporters-entry": ("bob", "alice", None, None),
    "admin-approves-managers-entry": ("carol", "alice", None, None),
    "manager-approves-own-entry": ("carol", "carol", None, r"someone other than the person"),
    "admin-approves-own-entry": ("alice", "alice", None, r"someone other than the person"),
    "reporter": ("carol", "bob", None, r"'bob' \(reporter\) may not approve"),
    "reviewer": ("carol", "dave", None, r"'dave' \(reviewer\) may not approve"),
    "auditor": ("carol", "frank", None, r"'frank' \(auditor\) may not approve"),
    "manager-when-only-admins-approve": ("bob", "carol", "admin", r"only admin may approve"),
    "admin-when-only-admins-approve": ("bob", "alice", "admin", None),
    "admin-when-only-managers-approve": ("bob", "alice", "manager", r"only manager may approve"),
    "manager-when-only-managers-approve": ("bob", "carol", "manager", None),
}


@pytest.mark.parametrize("case", APPROVALS.values(), ids=APPROVALS.keys())
def test_approval_needs_an_approver_other_than_the_creator(
    shop: Shop, face_models: FaceModels, case: tuple[str, str, str | None, str | None]
) -> None:
    """Only approved entries are searched; a refused approval leaves the entry pending."""
    creator, approver, roles, refusal = case
    if roles is not None:
        change_policy(shop, approver_roles=roles)
    subject_id = propose(shop, face_models, photos_of("Joseph_Biden", 1), actor=creator)
    assert searched(shop, face_models) == set()
    if refusal is None:
        act(shop, approve, approver, subject_id)
        subject = status_of(shop, subject_id)
        assert subject.status == SubjectStatus.ACTIVE
        assert subject.approved_at is not None
        assert searched(shop, face_models) == {str(subject_id)}
        assert_logged(shop, "subject.enrol", "subject.approve")
    else:
        with pytest.raises(PolicyError, match=refusal):
            act(shop, approve, approver, subject_id)
        subject = status_of(shop, subject_id)
        assert subject.status == SubjectStatus.PENDING
        assert subject.approved_by_id is None
        assert searched(shop, face_models) == set()
        assert_logged(shop, "subject.enrol")


def test_an_active_or_expired_entry_cannot_be_approved(shop: Shop, face_models: FaceModels) -> None:
    now = utcnow()
    active = enrol_subject(shop, face_models, "Joseph_Biden")
    with pytest.raises(PolicyError, match=r"already active"):
        act(shop, approve, "alice", active)
    pending = propose(
        shop,
        face_models,
        photos_of("Donald_Trump", 1),
        expires_at=now + dt.timedelta(days=1),
        now=now,
    )
    with pytest.raises(PolicyError, match=r"has expired"):
        act(shop, approve, "carol", pending, now=now + dt.timedelta(days=2))
    assert status_of(shop, pending).status == SubjectStatus.PENDING


# --- the watchlist cap -------------------------------------------------------------------


def test_a_site_is_searched_by_no_more_entries_than_the_cap(
    shop: Shop, face_models: FaceModels
) -> None:
    """Pending entries count (they are about to be searched); an entry at another site
    does not; a suspended entry frees its place, and cannot be reinstated while full."""
    change_policy(shop, watchlist_cap_per_site=1)
    first = propose(shop, face_models, photos_of("Joseph_Biden", 1))
    after_first = held(shop.store)
    before = audit_count(shop)
    with pytest.raises(PolicyError, match=r"site 'Leeds' already has 1 watchlist entries"):
        propose(shop, face_models, photos_of("Donald_Trump", 1))
    assert held(shop.store) == after_first
    assert audit_count(shop) == before

    add_york(shop)
    york_entry = propose(shop, face_models, photos_of("Donald_Trump", 1), sites=site_named("York"))
    assert_logged(shop, "site.create", "subject.enrol")

    act(shop, suspend, "carol", first, "wrong person photographed")
    second = propose(shop, face_models, photos_of("Colin_Powell", 1))
    act(shop, approve, "carol", second)
    with pytest.raises(PolicyError, match=r"already has 1 watchlist entries"):
        act(shop, approve, "carol", first)
    assert status_of(shop, first).status == SubjectStatus.SUSPENDED
    assert searched(shop, face_models) == {str(second)}
    assert str(york_entry) not in searched(shop, face_models)


def test_expired_entries_do_not_count_against_the_cap(shop: Shop, face_models: FaceModels) -> None:
    change_policy(shop, watchlist_cap_per_site=1)
    now = utcnow()
    propose(
        shop,
        face_models,
        photos_of("Joseph_Biden", 1),
        expires_at=now + dt.timedelta(days=1),
        now=now,
    )
    later = now + dt.timedelta(days=2)
    propose(shop, face_models, photos_of("Donald_Trump", 1), now=later)
    assert held(shop.store)["subject"] == 2


# --- renewal -----------------------------------------------------------------------------

RENEWALS: dict[str, tuple[str, str, int, int | None, str | None]] = {
    # creator, renewer, days from now, policy maximum, refusal (None: accepted)
    "within-the-maximum": ("bob", "carol", 700, None, None),
    "to-the-maximum": ("bob", "alice", 730, None, None),
    "beyond-730-days": ("bob", "carol", 731, None, r"beyond the policy maximum of 730 days"),
    "within-a-lower-maximum": ("bob", "carol", 90, 100, None),
    "beyond-a-lower-maximum": ("bob", "carol", 101, 100, r"beyond the policy maximum of 100"),
    "into-the-past": ("bob", "carol", -1, None, r"not in the future"),
    "by-the-creator": ("carol", "carol", 200, None, r"renewed by someone other than"),
    "by-a-reporter": ("carol", "bob", 200, None, r"'bob' \(reporter\) may not approve"),
    "by-a-reviewer": ("bob", "dave", 200, None, r"'dave' \(reviewer\) may not approve"),
}


@pytest.mark.parametrize("case", RENEWALS.values(), ids=RENEWALS.keys())
def test_renewal_follows_the_approval_and_expiry_rules(
    shop: Shop, face_models: FaceModels, case: tuple[str, str, int, int | None, str | None]
) -> None:
    creator, renewer, days, maximum, refusal = case
    now = utcnow()
    subject_id = propose(shop, face_models, photos_of("Joseph_Biden", 1), actor=creator, now=now)
    approver = "alice" if creator != "alice" else "carol"
    act(shop, approve, approver, subject_id, now=now)
    if maximum is not None:
        change_policy(shop, max_retention_days=maximum, default_retention_days=30)
    before = status_of(shop, subject_id).expires_at
    new_expiry = now + dt.timedelta(days=days)
    if refusal is None:
        act(shop, renew, renewer, subject_id, new_expiry, "reoffended", now=now)
        assert status_of(shop, subject_id).expires_at == new_expiry
        assert_logged(shop, "subject.renew")
    else:
        with pytest.raises(PolicyError, match=refusal):
            act(shop, renew, renewer, subject_id, new_expiry, "reoffended", now=now)
        assert status_of(shop, subject_id).expires_at == before
        assert newest_actions(shop, 1) != ["subject.renew"]


def test_a_renewal_needs_a_reason_and_a_live_entry(shop: Shop, face_models: FaceModels) -> None:
    now = utcnow()
    subject_id = enrol_subject(shop, face_models, "Joseph_Biden")
    with pytest.raises(PolicyError, match=r"needs a reason"):
        act(shop, renew, "carol", subject_id, now + dt.timedelta(days=100), " ", now=now)
    expired = now + dt.timedelta(days=366)
    with pytest.raises(PolicyError, match=r"has expired"):
        act(shop, renew, "carol", subject_id, expired + dt.timedelta(days=5), "x", now=expired)


# --- suspension and restriction ------------------------------------------------------------


def test_suspension_and_restriction_stop_searching_and_can_be_undone(
    shop: Shop, face_models: FaceModels
) -> None:
    subject_id = enrol_subject(shop, face_models, "Joseph_Biden", photos=2)
    entry = {str(subject_id)}
    stored = held(shop.store)
    assert searched(shop, face_models) == entry
    assert len(gallery(shop, face_models)) == 2

    with pytest.raises(PolicyError, match=r"'dave' \(reviewer\) may not suspend"):
        act(shop, suspend, "dave", subject_id, "looks wrong")
    act(shop, suspend, "carol", subject_id, "three false matches")
    assert status_of(shop, subject_id).status == SubjectStatus.SUSPENDED
    assert status_of(shop, subject_id).status_note == "three false matches"
    assert searched(shop, face_models) == set()
    with pytest.raises(PolicyError, match=r"already suspended"):
        act(shop, suspend, "carol", subject_id, "again")
    assert_logged(shop, "subject.suspend")

    with pytest.raises(PolicyError, match=r"'bob' \(reporter\) may not approve"):
        act(shop, approve, "bob", subject_id)
    act(shop, approve, "alice", subject_id)
    assert status_of(shop, subject_id).status == SubjectStatus.ACTIVE
    assert status_of(shop, subject_id).status_note is None
    assert searched(shop, face_models) == entry
    assert_logged(shop, "subject.suspend", "subject.reinstate")

    act(shop, restrict, "carol", subject_id, True, "the person objected")
    assert status_of(shop, subject_id).restricted
    assert searched(shop, face_models) == set()
    assert held(shop.store) == stored, "a restricted entry is kept"
    with pytest.raises(PolicyError, match=r"already active"):
        act(shop, approve, "alice", subject_id)
    assert_logged(shop, "subject.restrict")

    act(shop, restrict, "carol", subject_id, False, "objection rejected")
    assert not status_of(shop, subject_id).restricted
    assert searched(shop, face_models) == entry
    assert held(shop.store) == stored
    assert_logged(shop, "subject.restrict", "subject.unrestrict")


# --- what live matching may search ------------------------------------------------------


def _pending(shop: Shop, models: FaceModels) -> tuple[uuid.UUID, dict[str, Any]]:
    return enrol_subject(shop, models, "Donald_Trump", approve_by=None), {}


def _suspended(shop: Shop, models: FaceModels) -> tuple[uuid.UUID, dict[str, Any]]:
    subject_id = enrol_subject(shop, models, "Donald_Trump")
    act(shop, suspend, "carol", subject_id, "review")
    return subject_id, {}


def _restricted(shop: Shop, models: FaceModels) -> tuple[uuid.UUID, dict[str, Any]]:
    subject_id = enrol_subject(shop, models, "Donald_Trump")
    act(shop, restrict, "carol", subject_id, True, "objection")
    return subject_id, {}


def _expired(shop: Shop, models: FaceModels) -> tuple[uuid.UUID, dict[str, Any]]:
    now = utcnow()
    subject_id = enrol_subject(
        shop, models, "Donald_Trump", expires_at=now + dt.timedelta(days=1), now=now
    )
    assert str(subject_id) in searched(shop, models, now=now)
    return subject_id, {"now": now + dt.timedelta(days=1)}


def _out_of_scope(shop: Shop, models: FaceModels) -> tuple[uuid.UUID, dict[str, Any]]:
    york = add_york(shop)
    subject_id = propose(shop, models, photos_of("Donald_Trump", 1), sites=site_named("York"))
    act(shop, approve, "carol", subject_id)
    assert searched(shop, models, site_id=york) == {str(subject_id)}
    return subject_id, {}


def _other_model_only(shop: Shop, models: FaceModels) -> tuple[uuid.UUID, dict[str, Any]]:
    subject_id = enrol_subject(shop, models, "Donald_Trump")
    with shop.store.session() as session:
        image_ids = list(
            session.scalars(select(FaceImage.id).where(FaceImage.subject_id == subject_id))
        )
        session.execute(delete(Template).where(Template.face_image_id.in_(image_ids)))
        for image_id in image_ids:
            session.add(other_model_template(session, shop.store, image_id))
    assert searched(shop, models, model_id=OTHER_MODEL) == {str(subject_id)}
    return subject_id, {}


def _other_organisation(shop: Shop, models: FaceModels) -> tuple[uuid.UUID, dict[str, Any]]:
    other = set_up_shop(shop.store, "Other Org")
    subject_id = enrol_subject(other, models, "Donald_Trump")
    assert searched(other, models) == {str(subject_id)}
    # Neither the other organisation's site nor its entries are ours to search.
    assert searched(shop, models, site_id=other.site_id) == set()
    return subject_id, {}


EXCLUDED: dict[str, Callable[[Shop, FaceModels], tuple[uuid.UUID, dict[str, Any]]]] = {
    "pending": _pending,
    "suspended": _suspended,
    "restricted": _restricted,
    "expired": _expired,
    "out-of-scope-site": _out_of_scope,
    "templates-of-another-model": _other_model_only,
    "another-organisation-same-site-name": _other_organisation,
}


@pytest.mark.parametrize("make", EXCLUDED.values(), ids=EXCLUDED.keys())
def test_the_gallery_holds_only_searchable_entries(
    shop: Shop,
    face_models: FaceModels,
    make: Callable[[Shop, FaceModels], tuple[uuid.UUID, dict[str, Any]]],
) -> None:
    """Beside an active entry that is searched, an entry in each other state is not."""
    searchable = enrol_subject(shop, face_models, "Joseph_Biden")
    excluded, where = make(shop, face_models)
    found = gallery(shop, face_models, **where)
    assert str(excluded) not in found.subjects
    assert set(found.subjects) == {str(searchable)}
    assert len(found) == 1
    assert found.model_id == face_models.embedder.model_id


def other_model_template(session: Session, store: Store, image_id: uuid.UUID) -> Template:
    """A template of a stored photo as another (64-d) model would make it."""
    vector = np.random.default_rng(image_id.int % 2**32).standard_normal(64).astype(np.float32)
    vector /= np.linalg.norm(vector)
    image = session.get_one(FaceImage, image_id)
    return make_template(store.keys, image, image.subject_id, OTHER_MODEL, vector)


def test_galleries_are_per_model(shop: Shop, face_models: FaceModels) -> None:
    """Templates of two models never mix: each gallery holds one model's vectors."""
    both = enrol_subject(shop, face_models, "Joseph_Biden", photos=2)
    dlib_only = enrol_subject(shop, face_models, "Donald_Trump")
    with shop.store.session() as session:
        image_id = session.scalars(
            select(FaceImage.id).where(FaceImage.subject_id == both).limit(1)
        ).one()
        session.add(other_model_template(session, shop.store, image_id))

    dlib = gallery(shop, face_models)
    assert set(dlib.subjects) == {str(both), str(dlib_only)}
    assert len(dlib) == 3
    assert dlib.matrix.shape[1] == 128
    other = gallery(shop, face_models, model_id=OTHER_MODEL)
    assert other.model_id == OTHER_MODEL
    assert other.subjects == (str(both),)
    assert other.matrix.shape == (1, 64)
    assert len(gallery(shop, face_models, model_id="no-such-model@1")) == 0


def test_an_entry_is_searched_at_every_site_in_its_scope(
    shop: Shop, face_models: FaceModels
) -> None:
    york = add_york(shop)
    subject_id = propose(
        shop,
        face_models,
        photos_of("Joseph_Biden", 1),
        sites=lambda tx: [tx.site, *site_named("York")(tx)],
    )
    act(shop, approve, "carol", subject_id)
    assert searched(shop, face_models) == {str(subject_id)}
    assert searched(shop, face_models, site_id=york) == {str(subject_id)}


# --- failures part-way ----------------------------------------------------------------------


def test_a_crash_during_enrolment_leaves_no_half_made_entry(
    shop: Shop, face_models: FaceModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills while the second photo is written: the error reaches the caller,
    and neither rows nor the first photo's file remain."""
    before = audit_count(shop)
    files = shop.store.files
    write = files.write
    calls: list[uuid.UUID] = []

    def full_disk(kind: str, object_id: uuid.UUID, data: bytes, owner: uuid.UUID):
        calls.append(object_id)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(kind, object_id, data, owner)

    monkeypatch.setattr(files, "write", full_disk)
    with pytest.raises(OSError, match="No space left"):
        propose(shop, face_models, photos_of("Joseph_Biden", 2))
    assert len(calls) == 2
    assert held(shop.store) == NOTHING
    assert not files.path(FACE_IMAGE, calls[0]).exists()
    assert audit_count(shop) == before
    with shop.store.session() as session:
        assert retention.remove_orphan_files(session, shop.store, grace=dt.timedelta(0)) == 0

    monkeypatch.undo()
    subject_id = propose(shop, face_models, photos_of("Joseph_Biden", 2))
    assert held(shop.store)["files"] == 2
    assert status_of(shop, subject_id).status == SubjectStatus.PENDING
    assert_logged(shop, "subject.enrol")


def enrol_then_approve_own_entry(shop: Shop, models: FaceModels) -> None:
    with shop.tx() as tx:
        subject = enrol(
            tx.session,
            shop.store,
            tx.organisation,
            tx.user("carol"),
            models,
            label="tall man, red cap",
            reason="seen taking goods",
            incidents=[tx.incident],
            photos=photos_of("Joseph_Biden", 2),
            attest_not_child_or_vulnerable=True,
        )
        assert len(list(shop.store.files.all_files())) == 2
        approve(tx.session, shop.store.keys, tx.organisation, tx.user("carol"), subject)


def test_an_enrolment_undone_by_a_later_failure_leaves_nothing(
    shop: Shop, face_models: FaceModels
) -> None:
    """Enrolment succeeded, but the same transaction then fails (here: the creator tries
    to approve their own entry): rows and photo files go together."""
    before = audit_count(shop)
    with pytest.raises(PolicyError, match=r"someone other than"):
        enrol_then_approve_own_entry(shop, face_models)
    assert held(shop.store) == NOTHING
    assert audit_count(shop) == before


def test_files_left_by_a_killed_process_are_swept(shop: Shop, face_models: FaceModels) -> None:
    """A process killed after writing files but before committing leaves files that no
    row owns: the sweep removes them once past the grace period, and never owned files."""
    enrol_subject(shop, face_models, "Joseph_Biden", photos=2)
    owned = sorted(shop.store.files.all_files())
    assert len(owned) == 2
    orphan = shop.store.files.write(FACE_IMAGE, uuid.uuid4(), b"x", uuid.uuid4())
    partial = owned[0].with_name(f".{owned[0].name}.part")
    partial.write_bytes(b"half-written")
    stray_kind = shop.store.files.write("alert-crop", uuid.uuid4(), b"y", uuid.uuid4())

    with shop.store.session() as session:
        assert retention.remove_orphan_files(session, shop.store) == 0  # still in grace
    assert orphan.exists()
    with shop.store.session() as session:
        assert retention.remove_orphan_files(session, shop.store, grace=dt.timedelta(0)) == 3
    assert not orphan.exists()
    assert not partial.exists()
    assert not stray_kind.exists()
    assert sorted(shop.store.files.all_files()) == owned
    with shop.store.session() as session:
        for image in session.scalars(select(FaceImage)):
            photo = shop.store.files.read(FACE_IMAGE, image.id, image.subject_id)
            assert photo.startswith(b"\xff\xd8\xff")


# --- re-templating --------------------------------------------------------------------------


def test_retemplate_fills_in_missing_templates_only(shop: Shop, face_models: FaceModels) -> None:
    subject_id = enrol_subject(shop, face_models, "Joseph_Biden", photos=2)
    other = enrol_subject(shop, face_models, "Donald_Trump")
    with shop.tx() as tx:
        with pytest.raises(PolicyError, match=r"'bob' \(reporter\) may not approve"):
            retemplate(tx.session, shop.store, tx.organisation, tx.user("bob"), face_models)
        counts = retemplate(tx.session, shop.store, tx.organisation, tx.user("carol"), face_models)
    assert counts == {"templates": 0, "unusable_photos": 0}
    assert held(shop.store)["template"] == 3
    assert_logged(shop, "watchlist.retemplate")

    before = gallery(shop, face_models)
    with shop.store.engine.begin() as connection:
        image_ids = select(FaceImage.id).where(FaceImage.subject_id == subject_id)
        connection.execute(delete(Template).where(Template.face_image_id.in_(image_ids)))
    assert set(gallery(shop, face_models).subjects) == {str(other)}

    with shop.tx() as tx:
        counts = retemplate(tx.session, shop.store, tx.organisation, tx.user("carol"), face_models)
    assert counts == {"templates": 2, "unusable_photos": 0}
    after = gallery(shop, face_models)
    assert set(after.subjects) == {str(subject_id), str(other)}
    assert len(after) == 3
    # The stored photos give (nearly) the templates that the uploads gave.
    mine = [i for i, label in enumerate(before.labels) if label == str(subject_id)]
    similarity = after.matrix[mine] @ before.matrix[mine].T
    assert np.all(np.max(similarity, axis=1) > 0.95), similarity
    assert_logged(shop, "watchlist.retemplate", "watchlist.retemplate")
