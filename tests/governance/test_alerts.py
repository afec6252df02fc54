"""Alerts: only searchable entries raise them, two reviewers confirm, one rejection
rejects, and repeated false matches suspend the entry (on SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable

import cv2
import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.support.alerts import add_york
from tests.support.shop import (
    ALERT_SCORE,
    ALERT_THRESHOLD,
    Shop,
    Sighting,
    Tx,
    enrol_in,
    enrol_subject,
    photos_of,
    record_sighting,
    set_up_shop,
)
from watchkeeper.config import ReviewConfig
from watchkeeper.errors import NotFoundError, PolicyError
from watchkeeper.governance import audit
from watchkeeper.governance.alerts import (
    browse_alerts,
    probe_vector,
    review,
    show_alert,
    sighting_flags,
)
from watchkeeper.governance.bands import score_band
from watchkeeper.governance.organisation import add_site
from watchkeeper.governance.subjects import (
    ALERT_CROP,
    approve,
    enrol,
    restrict,
    searchable_gallery,
    suspend,
)
from watchkeeper.pipeline import FaceModels
from watchkeeper.store.models import (
    Alert,
    AlertStatus,
    AuditEvent,
    Camera,
    Decision,
    Review,
    Subject,
    SubjectStatus,
    utcnow,
)


@pytest.fixture
def sighting(sightings: Callable[[str, int], Sighting]) -> Callable[..., Sighting]:
    """``sighting(person, index)``: the chip and probe vector of an LFW photo that was not
    used for enrolment (enrolment uses each person's first photos)."""
    return lambda person="Joseph_Biden", index=4: sightings(person, index)


def record(
    session: Session,
    shop: Shop,
    subject_id: uuid.UUID,
    seen: Sighting,
    *,
    camera_id: uuid.UUID | None = None,
    occurred_at: dt.datetime | None = None,
) -> Alert | None:
    """Record a match of ``subject_id`` at a camera (the shop's door by default)."""
    camera = session.get_one(Camera, camera_id or shop.camera_id)
    return record_sighting(session, shop, camera, subject_id, seen, occurred_at)


def raise_alert(
    shop: Shop,
    subject_id: uuid.UUID,
    seen: Sighting,
    *,
    camera_id: uuid.UUID | None = None,
    occurred_at: dt.datetime | None = None,
) -> uuid.UUID | None:
    """:func:`record` in its own transaction, as live matching does; the alert's id."""
    with shop.store.session() as session:
        alert = record(
            session, shop, subject_id, seen, camera_id=camera_id, occurred_at=occurred_at
        )
        return None if alert is None else alert.id


def events(tx: Tx, action: str) -> list[AuditEvent]:
    return list(
        tx.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.organisation_id == tx.organisation.id, AuditEvent.action == action)
            .order_by(AuditEvent.sequence)
        )
    )


def floats_in(value: object) -> list[float]:
    """Every float anywhere in a JSON-like value (a vector would show up here)."""
    if isinstance(value, dict):
        return [f for item in value.values() for f in floats_in(item)]
    if isinstance(value, list):
        return [f for item in value for f in floats_in(item)]
    return [value] if isinstance(value, float) else []


def test_a_recorded_alert_is_pending_with_an_encrypted_snapshot_and_an_audit_event(
    shop: Shop, face_models: FaceModels, sighting: Callable[..., Sighting]
) -> None:
    """An alert is stored pending; its snapshot and probe are encrypted; the audit event
    names the alert, entry and camera but holds no biometric data or label."""
    subject_id = enrol_subject(shop, face_models, "Joseph_Biden", label="tall man, red cap")
    seen = sighting()
    chip, vector = seen.chip, seen.vector
    alert_id = raise_alert(shop, subject_id, seen)
    assert alert_id is not None

    with shop.tx() as tx:
        alert = tx.session.get_one(Alert, alert_id)
        assert alert.status == AlertStatus.PENDING
        assert alert.subject_id == subject_id
        assert alert.camera_id == shop.camera_id
        assert alert.reviews == []
        assert vector.astype(np.float32).tobytes() not in alert.probe_vector_encrypted
        np.testing.assert_allclose(probe_vector(shop.store, alert), vector, atol=1e-6)
        (created,) = events(tx, "alert.create")

    stored = shop.store.files.path(ALERT_CROP, alert_id)
    assert stored.is_file()
    assert not stored.read_bytes().startswith(b"\xff\xd8")  # not a readable JPEG on disk
    jpeg = shop.store.files.read(ALERT_CROP, alert_id, subject_id)
    assert jpeg.startswith(b"\xff\xd8")
    snapshot = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert snapshot is not None
    assert snapshot.shape == chip.shape
    assert np.abs(snapshot.astype(int) - chip.astype(int)).mean() < 4

    assert created.object_type == "alert"
    assert created.object_id == str(alert_id)
    assert created.actor == "camera:door"
    assert created.details["subject"] == str(subject_id)
    assert created.details["camera"] == str(shop.camera_id)
    assert set(created.details) == {"subject", "camera", "score", "threshold", "model"}
    assert created.details["model"] == face_models.embedder.model_id
    assert sorted(floats_in(created.details)) == sorted([ALERT_SCORE, ALERT_THRESHOLD])
    assert "red cap" not in json.dumps(created.details)


def pending_entry(shop: Shop, models: FaceModels) -> tuple[uuid.UUID, dt.datetime | None]:
    return enrol_subject(shop, models, "Joseph_Biden", approve_by=None), None


def suspended_entry(shop: Shop, models: FaceModels) -> tuple[uuid.UUID, dt.datetime | None]:
    subject_id = enrol_subject(shop, models, "Joseph_Biden")
    with shop.tx() as tx:
        subject = tx.session.get_one(Subject, subject_id)
        suspend(tx.session, shop.store.keys, tx.organisation, tx.user("carol"), subject, "check")
    return subject_id, None


def restricted_entry(shop: Shop, models: FaceModels) -> tuple[uuid.UUID, dt.datetime | None]:
    subject_id = enrol_subject(shop, models, "Joseph_Biden")
    with shop.tx() as tx:
        subject = tx.session.get_one(Subject, subject_id)
        restrict(
            tx.session, shop.store.keys, tx.organisation, tx.user("carol"), subject, True, "asked"
        )
    return subject_id, None


def expired_entry(shop: Shop, models: FaceModels) -> tuple[uuid.UUID, dt.datetime | None]:
    expires_at = utcnow() + dt.timedelta(days=1)
    subject_id = enrol_subject(shop, models, "Joseph_Biden", expires_at=expires_at)
    return subject_id, expires_at + dt.timedelta(minutes=1)


def entry_of_another_site(shop: Shop, models: FaceModels) -> tuple[uuid.UUID, dt.datetime | None]:
    with shop.tx() as tx:
        york = add_site(tx.session, shop.store.keys, tx.organisation, tx.user("alice"), "York")
        subject = enrol(
            tx.session,
            shop.store,
            tx.organisation,
            tx.user("bob"),
            models,
            label="Joseph_Biden",
            reason="seen taking goods",
            incidents=[tx.incident],
            photos=photos_of("Joseph_Biden", 1),
            attest_not_child_or_vulnerable=True,
            sites=[york],
        )
        approve(tx.session, shop.store.keys, tx.organisation, tx.user("carol"), subject)
        return subject.id, None


def entry_of_another_organisation(
    shop: Shop, models: FaceModels
) -> tuple[uuid.UUID, dt.datetime | None]:
    other = set_up_shop(shop.store, "Other Shops")
    return enrol_subject(other, models, "Joseph_Biden"), None


def erased_entry(shop: Shop, models: FaceModels) -> tuple[uuid.UUID, dt.datetime | None]:
    return uuid.uuid4(), None


@pytest.mark.parametrize(
    "make_entry",
    [
        pending_entry,
        suspended_entry,
        restricted_entry,
        expired_entry,
        entry_of_another_site,
        entry_of_another_organisation,
        erased_entry,
    ],
    ids=["pending", "suspended", "restricted", "expired", "other-site", "other-org", "erased"],
)
def test_no_alert_is_stored_for_an_entry_that_may_not_be_searched_there(
    shop: Shop,
    face_models: FaceModels,
    sighting: Callable[..., Sighting],
    make_entry: Callable[[Shop, FaceModels], tuple[uuid.UUID, dt.datetime | None]],
) -> None:
    """record_alert stores nothing (no row, no file, no audit event) unless the entry is
    active, unrestricted, unexpired when seen, in the camera's site scope and of the
    camera's organisation."""
    subject_id, occurred_at = make_entry(shop, face_models)
    assert raise_alert(shop, subject_id, sighting(), occurred_at=occurred_at) is None
    with shop.tx() as tx:
        assert tx.session.scalar(select(func.count()).select_from(Alert)) == 0
        assert events(tx, "alert.create") == []
    assert [p for p in shop.store.files.all_files() if p.parent.name == ALERT_CROP] == []


def test_an_alert_from_a_camera_of_another_organisation_is_not_stored(
    shop: Shop, face_models: FaceModels, sighting: Callable[..., Sighting]
) -> None:
    """Another organisation's camera never raises alerts on this organisation's entries."""
    subject_id = enrol_subject(shop, face_models, "Joseph_Biden")
    other = set_up_shop(shop.store, "Other Shops")
    assert raise_alert(shop, subject_id, sighting(), camera_id=other.camera_id) is None
    with shop.tx() as tx:
        assert tx.session.scalar(select(func.count()).select_from(Alert)) == 0
    assert [p for p in shop.store.files.all_files() if p.parent.name == ALERT_CROP] == []


PENDING, CONFIRMED, REJECTED, UNSURE = (
    AlertStatus.PENDING,
    AlertStatus.CONFIRMED,
    AlertStatus.REJECTED,
    AlertStatus.UNSURE,
)
CONFIRM, REJECT, NOT_SURE = Decision.CONFIRM, Decision.REJECT, Decision.UNSURE
REFUSED = PolicyError


@pytest.mark.parametrize(
    "steps",
    [
        pytest.param([("dave", CONFIRM, PENDING)], id="one-confirm-stays-pending"),
        pytest.param(
            [("dave", CONFIRM, PENDING), ("dave", CONFIRM, REFUSED)], id="same-reviewer-twice"
        ),
        pytest.param(
            [("dave", CONFIRM, PENDING), ("dave", REJECT, REFUSED)],
            id="same-reviewer-changes-mind",
        ),
        pytest.param(
            [("dave", CONFIRM, PENDING), ("erin", CONFIRM, CONFIRMED)], id="two-reviewers-confirm"
        ),
        pytest.param([("dave", REJECT, REJECTED)], id="one-reject"),
        pytest.param(
            [("dave", CONFIRM, PENDING), ("erin", REJECT, REJECTED)], id="confirm-then-reject"
        ),
        pytest.param(
            [("dave", NOT_SURE, UNSURE), ("erin", CONFIRM, UNSURE), ("carol", CONFIRM, CONFIRMED)],
            id="unsure-then-two-confirms",
        ),
        pytest.param(
            [("dave", NOT_SURE, UNSURE), ("erin", REJECT, REJECTED)], id="unsure-then-reject"
        ),
        pytest.param(
            [
                ("dave", CONFIRM, PENDING),
                ("erin", CONFIRM, CONFIRMED),
                ("carol", REJECT, REFUSED),
                ("alice", CONFIRM, REFUSED),
            ],
            id="after-confirmed",
        ),
        pytest.param(
            [("dave", REJECT, REJECTED), ("erin", CONFIRM, REFUSED), ("carol", REJECT, REFUSED)],
            id="after-rejected",
        ),
        pytest.param([("bob", CONFIRM, REFUSED)], id="reporter-may-not-review"),
        pytest.param(
            [("frank", REJECT, REFUSED), ("dave", CONFIRM, PENDING)], id="auditor-may-not-review"
        ),
    ],
)
def test_review_rules(
    shop: Shop,
    face_models: FaceModels,
    sighting: Callable[..., Sighting],
    steps: list[tuple[str, Decision, AlertStatus | type[PolicyError]]],
) -> None:
    """Two different reviewers must confirm; any rejection rejects; a reviewer decides
    once; decided alerts take no more reviews; only reviewing roles review; every
    accepted review is audited and a refused one changes nothing."""
    subject_id = enrol_subject(shop, face_models, "Joseph_Biden")
    alert_id = raise_alert(shop, subject_id, sighting())
    assert alert_id is not None
    accepted: list[tuple[str, str, str]] = []
    status = PENDING
    for name, decision, expected in steps:
        if expected is REFUSED:
            with pytest.raises(PolicyError), shop.tx() as tx:
                review(
                    tx.session,
                    shop.store,
                    tx.organisation,
                    tx.user(name),
                    tx.session.get_one(Alert, alert_id),
                    decision,
                )
        else:
            with shop.tx() as tx:
                alert = review(
                    tx.session,
                    shop.store,
                    tx.organisation,
                    tx.user(name),
                    tx.session.get_one(Alert, alert_id),
                    decision,
                    note=f"{name} looked",
                )
                assert alert.status == expected, (name, decision)
            assert isinstance(expected, AlertStatus)
            status = expected
            accepted.append((name, decision.value, status.value))
        with shop.tx() as tx:
            assert tx.session.get_one(Alert, alert_id).status == status, (name, decision)

    with shop.tx() as tx:
        alert = tx.session.get_one(Alert, alert_id)
        assert sorted((r.user.name, r.decision.value) for r in alert.reviews) == sorted(
            (name, decision) for name, decision, _ in accepted
        )
        assert all(r.note == f"{r.user.name} looked" for r in alert.reviews)
        logged = events(tx, "alert.review")
        assert [(e.actor, e.details["decision"], e.details["status"]) for e in logged] == accepted
        assert all(e.object_id == str(alert_id) for e in logged)
        assert tx.session.scalar(select(func.count()).select_from(Review)) == len(accepted)


def test_rejections_count_false_matches_and_suspend_the_entry_at_the_policy_limit(
    shop: Shop, face_models: FaceModels, sighting: Callable[..., Sighting]
) -> None:
    """Each rejected alert counts one false match against its own entry; at the policy's
    limit the entry is suspended by the system (noted and audited) and leaves the
    searchable gallery. Confirmed and unsure alerts do not count."""
    with shop.tx() as tx:
        tx.organisation.false_matches_before_suspension = 2
    biden = enrol_subject(shop, face_models, "Joseph_Biden")
    powell = enrol_subject(shop, face_models, "Colin_Powell")
    biden_seen, powell_seen = sighting("Joseph_Biden", 4), sighting("Colin_Powell", 4)
    alerts = {
        "biden-confirmed": raise_alert(shop, biden, biden_seen),
        "biden-unsure": raise_alert(shop, biden, biden_seen),
        "biden-1": raise_alert(shop, biden, biden_seen),
        "biden-2": raise_alert(shop, biden, biden_seen),
        "biden-3": raise_alert(shop, biden, biden_seen),
        "powell-1": raise_alert(shop, powell, powell_seen),
    }
    assert None not in alerts.values()
    model_id = face_models.embedder.model_id

    def decide(key: str, name: str, decision: Decision) -> None:
        with shop.tx() as tx:
            alert = tx.session.get_one(Alert, alerts[key])
            review(tx.session, shop.store, tx.organisation, tx.user(name), alert, decision)

    def state() -> tuple[int, SubjectStatus, int, SubjectStatus, tuple[str, ...]]:
        with shop.tx() as tx:
            b = tx.session.get_one(Subject, biden)
            p = tx.session.get_one(Subject, powell)
            gallery = searchable_gallery(
                tx.session, shop.store.keys, tx.organisation.id, tx.site.id, model_id
            )
            return b.false_matches, b.status, p.false_matches, p.status, gallery.subjects

    both = tuple(sorted([str(biden), str(powell)]))
    active, suspended = SubjectStatus.ACTIVE, SubjectStatus.SUSPENDED

    steps = [
        # (alert, reviewer, decision) -> (biden fm, status, powell fm, status, gallery)
        (("biden-confirmed", "dave", CONFIRM), (0, active, 0, active, both)),
        (("biden-confirmed", "erin", CONFIRM), (0, active, 0, active, both)),
        (("biden-unsure", "dave", NOT_SURE), (0, active, 0, active, both)),
        (("powell-1", "dave", REJECT), (0, active, 1, active, both)),
        (("biden-1", "dave", CONFIRM), (0, active, 1, active, both)),
        (("biden-1", "erin", REJECT), (1, active, 1, active, both)),
        (("biden-2", "erin", REJECT), (2, suspended, 1, active, (str(powell),))),
        (("biden-3", "dave", REJECT), (3, suspended, 1, active, (str(powell),))),
    ]
    assert state() == (0, active, 0, active, both)
    for (key, name, decision), expected in steps:
        decide(key, name, decision)
        assert state() == expected, (key, name, decision)

    with shop.tx() as tx:
        entry = tx.session.get_one(Subject, biden)
        assert entry.status_note is not None
        assert "2 rejected alerts" in entry.status_note
        (suspension,) = events(tx, "subject.suspend")
        assert suspension.actor == "system"
        assert suspension.object_type == "subject"
        assert suspension.object_id == str(biden)
        assert tx.session.get_one(Subject, powell).status_note is None
    assert raise_alert(shop, biden, biden_seen) is None


def test_an_alert_whose_transaction_rolls_back_leaves_no_snapshot(
    shop: Shop, face_models: FaceModels, sighting: Callable[..., Sighting]
) -> None:
    """The snapshot file is written with the transaction: if it rolls back (a scan
    crashes), neither the row nor the encrypted file remains."""
    subject_id = enrol_subject(shop, face_models, "Joseph_Biden")
    written: list[uuid.UUID] = []

    def record_then_crash() -> None:
        with shop.store.session() as session:
            alert = record(session, shop, subject_id, sighting())
            assert alert is not None
            alert_id = alert.id
            written.append(alert_id)
            assert shop.store.files.path(ALERT_CROP, alert_id).is_file()
            raise RuntimeError("scan crashed")

    with pytest.raises(RuntimeError, match="scan crashed"):
        record_then_crash()
    (alert_id,) = written
    assert not shop.store.files.path(ALERT_CROP, alert_id).exists()
    with shop.tx() as tx:
        assert tx.session.get(Alert, alert_id) is None
        assert events(tx, "alert.create") == []


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize(
    ("first", "second", "second_refused", "status"),
    [
        pytest.param(("dave", CONFIRM), ("erin", CONFIRM), False, CONFIRMED, id="both-confirm"),
        pytest.param(("dave", CONFIRM), ("erin", REJECT), False, REJECTED, id="confirm-reject"),
        pytest.param(("dave", REJECT), ("erin", CONFIRM), True, REJECTED, id="rejected-meanwhile"),
        pytest.param(("dave", CONFIRM), ("dave", CONFIRM), True, PENDING, id="same-reviewer"),
    ],
)
def test_reviews_made_at_the_same_time_are_decided_on_all_of_them(
    shop: Shop,
    face_models: FaceModels,
    sighting: Callable[..., Sighting],
    first: tuple[str, Decision],
    second: tuple[str, Decision],
    second_refused: bool,
    status: AlertStatus,
) -> None:
    """On PostgreSQL (SQLite runs one writer at a time) two people may open the same
    alert at once: the second decision is taken on the alert as the first one left it
    (or refused as on a decided alert), and the audit chain stays unbroken."""
    subject_id = enrol_subject(shop, face_models, "Joseph_Biden")
    alert_id = raise_alert(shop, subject_id, sighting())

    def review_opened_before_the_first_decision() -> None:
        with shop.tx() as late:
            alert = late.session.get_one(Alert, alert_id)
            assert alert.status == PENDING
            assert alert.reviews == []
            with shop.tx() as early:  # the first decision is made and committed meanwhile
                review(
                    early.session,
                    shop.store,
                    early.organisation,
                    early.user(first[0]),
                    early.session.get_one(Alert, alert_id),
                    first[1],
                )
            review(
                late.session, shop.store, late.organisation, late.user(second[0]), alert, second[1]
            )

    if second_refused:
        with pytest.raises(PolicyError):
            review_opened_before_the_first_decision()
    else:
        review_opened_before_the_first_decision()

    decisions = [first] if second_refused else [first, second]
    with shop.tx() as tx:
        alert = tx.session.get_one(Alert, alert_id)
        assert alert.status == status
        assert sorted((r.user.name, r.decision) for r in alert.reviews) == sorted(decisions)
        assert tx.session.get_one(Subject, subject_id).false_matches == int(status == REJECTED)
        assert [(e.actor, e.details["decision"]) for e in events(tx, "alert.review")] == [
            (name, decision.value) for name, decision in decisions
        ]
        assert audit.verify(tx.session, shop.store.keys, tx.organisation).intact


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_rejections_made_at_the_same_time_are_all_counted(
    shop: Shop, face_models: FaceModels, sighting: Callable[..., Sighting]
) -> None:
    """Two alerts on one entry rejected at once (PostgreSQL) count two false matches,
    and reach the suspension limit."""
    with shop.tx() as tx:
        tx.organisation.false_matches_before_suspension = 2
    subject_id = enrol_subject(shop, face_models, "Joseph_Biden")
    first, second = (raise_alert(shop, subject_id, sighting()) for _ in range(2))
    with shop.tx() as late:
        alert = late.session.get_one(Alert, second)
        assert alert.subject.false_matches == 0  # the reviewer sees the entry's record...
        with shop.tx() as early:  # ...while another reviewer rejects the other alert
            review(
                early.session,
                shop.store,
                early.organisation,
                early.user("dave"),
                early.session.get_one(Alert, first),
                REJECT,
            )
        review(late.session, shop.store, late.organisation, late.user("erin"), alert, REJECT)
    with shop.tx() as tx:
        subject = tx.session.get_one(Subject, subject_id)
        assert subject.false_matches == 2
        assert subject.status == SubjectStatus.SUSPENDED
        assert len(events(tx, "subject.suspend")) == 1
        assert audit.verify(tx.session, shop.store.keys, tx.organisation).intact


REVIEW = ReviewConfig()


@pytest.mark.parametrize(
    ("score", "threshold", "band"),
    [
        (0.6155, 0.4555, "strong"),  # exactly strong_margin (0.16) above
        (0.9, 0.4555, "strong"),
        (0.6154, 0.4555, "likely"),
        (0.4955, 0.4555, "likely"),  # exactly likely_margin (0.04) above
        (0.4954, 0.4555, "weak"),
        (0.4555, 0.4555, "weak"),  # at the threshold
        (0.45, 0.4555, "weak"),  # below it (a manually lowered threshold since)
    ],
)
def test_score_band_follows_the_margin_above_the_threshold(
    score: float, threshold: float, band: str
) -> None:
    assert score_band(score, threshold, REVIEW) == band


def test_score_band_margins_come_from_the_configuration() -> None:
    wide = ReviewConfig(strong_margin=0.05, likely_margin=0.03)
    assert [score_band(s, 0.9, wide) for s in (0.95, 0.94, 0.929)] == ["strong", "likely", "weak"]


ORDINARY = {"seconds": 2.5, "frames": 25, "shots": 3, "best_quality": 0.6, "runner_up_margin": None}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, []),
        ({"runner_up_margin": 0.05}, []),
        ({"seconds": 0.4}, ["Brief sighting: the face was in view for only 0.4 s."]),
        (
            {"shots": 1},
            ["Few usable shots: the match rests on 1 usable image of the face (usually 3)."],
        ),
        (
            {"shots": 2},
            ["Few usable shots: the match rests on 2 usable images of the face (usually 3)."],
        ),
        (
            {"best_quality": 0.18},
            ["Low quality: even the best shot scored 0.18 of 1 (small, blurred or turned away)."],
        ),
        (
            {"runner_up_margin": 0.004},
            [
                "Close second: another watchlist entry scored within 0.004 of this one; "
                "the score cannot tell them apart."
            ],
        ),
        ({"best_quality": None}, []),  # nothing known is nothing flagged
        (
            {"seconds": 0.2, "shots": 1, "best_quality": 0.1, "runner_up_margin": 0.0},
            ["Brief sighting", "Few usable shots", "Low quality", "Close second"],
        ),
    ],
)
def test_sighting_flags_warn_in_plain_language(changes: dict, expected: list[str]) -> None:
    flags = sighting_flags(ORDINARY | changes, REVIEW)
    assert len(flags) == len(expected)
    for flag, start in zip(flags, expected, strict=True):
        assert flag.startswith(start)


def test_an_alert_without_a_recorded_sighting_is_flagged_as_unknown() -> None:
    (flag,) = sighting_flags(None, REVIEW)
    assert "not recorded" in flag


def test_sighting_flag_limits_come_from_the_configuration() -> None:
    strict = ReviewConfig(brief_sighting_s=3, min_shots=4, low_quality=0.7, close_runner_up=0.1)
    assert len(sighting_flags(ORDINARY | {"runner_up_margin": 0.05}, strict)) == 4


@pytest.fixture
def york(shop: Shop) -> uuid.UUID:
    """A second site, "York", with a camera and a reviewer "yvonne"; the camera's id."""
    return add_york(shop)


@pytest.mark.parametrize(
    ("viewer", "sees_leeds", "sees_york"),
    [("dave", True, False), ("yvonne", False, True), ("alice", True, True), ("frank", True, True)],
)
def test_users_see_and_review_only_the_alerts_of_their_sites(
    shop: Shop,
    face_models: FaceModels,
    sighting: Callable[..., Sighting],
    york: uuid.UUID,
    viewer: str,
    sees_leeds: bool,
    sees_york: bool,
) -> None:
    """Reviewers bound to a site list, view and review its alerts only; another site's
    alert is "not found". Admins and auditors see every site."""
    with shop.tx() as tx:
        york_site = tx.session.get_one(Camera, york).site
        subject_id = enrol_in(tx, shop, face_models, "Joseph_Biden", sites=[tx.site, york_site]).id
    leeds_alert = raise_alert(shop, subject_id, sighting())
    york_alert = raise_alert(shop, subject_id, sighting(), camera_id=york)
    expected = {leeds_alert} if sees_leeds else set()
    expected |= {york_alert} if sees_york else set()
    with shop.tx() as tx:
        actor = tx.user(viewer)
        listed = browse_alerts(tx.session, shop.store, tx.organisation, actor)
        assert {uuid.UUID(view["id"]) for view in listed} == expected
        for alert_id in (leeds_alert, york_alert):
            alert = tx.session.get_one(Alert, alert_id)
            if alert_id in expected:
                view, _ = show_alert(tx.session, shop.store, tx.organisation, actor, alert)
                assert view["id"] == str(alert_id)
            else:
                with pytest.raises(NotFoundError):
                    show_alert(tx.session, shop.store, tx.organisation, actor, alert)
                if viewer == "dave" or viewer == "yvonne":
                    with pytest.raises(NotFoundError):
                        review(tx.session, shop.store, tx.organisation, actor, alert, CONFIRM)
    with shop.tx() as tx:
        assert tx.session.scalar(select(func.count()).select_from(Review)) == 0


def test_a_note_longer_than_the_limit_is_refused(
    shop: Shop, face_models: FaceModels, sighting: Callable[..., Sighting]
) -> None:
    subject_id = enrol_subject(shop, face_models, "Joseph_Biden")
    alert_id = raise_alert(shop, subject_id, sighting())
    with shop.tx() as tx:
        alert, dave = tx.session.get_one(Alert, alert_id), tx.user("dave")
        with pytest.raises(PolicyError, match="at most 2000"):
            review(tx.session, shop.store, tx.organisation, dave, alert, CONFIRM, "x" * 2001)
    with shop.tx() as tx:
        assert tx.session.scalar(select(func.count()).select_from(Review)) == 0
