"""Watchlist entries: enrolment, two-person approval, renewal, suspension, restriction,
erasure, re-templating, and the gallery that live matching may search.

The rules, each enforced here and nowhere else:

- an entry is linked to at least one recorded incident of its organisation;
- the enroller attests that the person is not known to be a child or vulnerable;
- every photo shows exactly one usable face, or the whole enrolment is refused
  with each photo's reasons;
- the expiry is in the future and no later than the policy maximum (at most 730
  days) from now; renewal sets a new expiry under the same rule;
- an entry is searched only once approved by an approver who did not create it;
- no site is searched by more entries than the policy's cap;
- matching sees only active, unrestricted, unexpired, in-scope entries whose
  templates come from the model in use, of the camera's own organisation;
- the model in use is the organisation's (:func:`model_in_use`): an entry is enrolled
  with it or not at all, and only a model switch
  (:mod:`watchkeeper.governance.model_switch`) changes it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.orm import Session

from watchkeeper.config import Settings
from watchkeeper.errors import ImageError, NotFoundError, PolicyError, WatchlistError
from watchkeeper.governance import audit
from watchkeeper.governance.access import (
    Permission,
    ensure_owned,
    require,
    require_approver,
    short_id,
    site_scope,
)
from watchkeeper.matching.gallery import Gallery
from watchkeeper.matching.watchlist import PhotoRefused, enrolment_face
from watchkeeper.pipeline import FaceModels
from watchkeeper.store.crypto import KeyRing
from watchkeeper.store.database import Store
from watchkeeper.store.models import (
    MAX_RETENTION_DAYS,
    Alert,
    FaceImage,
    Incident,
    Organisation,
    Review,
    Site,
    Subject,
    SubjectIncident,
    SubjectSite,
    SubjectStatus,
    Template,
    User,
    utcnow,
)
from watchkeeper.vision.images import decode_image

FACE_IMAGE = "face-image"
ALERT_CROP = "alert-crop"
"""Kinds (sub-folders) of encrypted files."""

EXPIRED = "expired"
"""Shown instead of the stored status once an entry's expiry has passed (the
sweep then deletes it; "erased" entries exist only as audit events)."""


@dataclass(frozen=True)
class EnrolmentPhoto:
    name: str
    """Where the photo came from (file name), for refusal messages only."""
    data: bytes
    """The file's bytes; the decoded image is stored re-encoded, without metadata."""


class PhotosRefused(WatchlistError):
    """Some enrolment photos are unusable; nothing was stored."""

    def __init__(self, refusals: dict[str, tuple[str, ...]]) -> None:
        self.refusals = refusals
        detail = "; ".join(f"{name}: {', '.join(reasons)}" for name, reasons in refusals.items())
        super().__init__(f"enrolment refused, nothing stored ({detail})")


def model_in_use(organisation: Organisation, settings: Settings) -> str:
    """Registry name of the identity embedder that ``organisation``'s stored watchlist is
    enrolled and searched with: the organisation's own (set by its first enrolment, or by
    a model switch), else, while it holds nothing, the configured one. Everything that
    embeds or searches for the stored watchlist asks this, and nothing else."""
    return organisation.embedder or settings.embedder


def locked_organisation(session: Session, organisation_id: uuid.UUID) -> Organisation:
    """The organisation's row as stored now, locked until ``session`` commits: enrolment
    and a model switch's last step take it, so neither finishes in the other's middle."""
    return session.scalars(
        select(Organisation)
        .where(Organisation.id == organisation_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()


def hold_model(session: Session, organisation: Organisation, name: str) -> None:
    """Make sure what ``session`` stores was made with the organisation's model in use,
    ``name``; an organisation that has none yet is given ``name``. Locks the
    organisation's row until commit, so that a model switch cannot finish in between."""
    current = locked_organisation(session, organisation.id)
    if current.embedder is None:
        current.embedder = name
    elif current.embedder != name:
        raise PolicyError(
            f"the watchlist is searched with {current.embedder!r}, not {name!r} (a model "
            "switch finished meanwhile); nothing was stored, try again"
        )


def effective_status(subject: Subject, now: dt.datetime) -> str:
    return EXPIRED if subject.expires_at <= now else subject.status.value


def check_expiry(organisation: Organisation, expires_at: dt.datetime, now: dt.datetime) -> None:
    """Refuse an expiry in the past or beyond the policy maximum (never above 730 days)."""
    limit_days = min(organisation.max_retention_days, MAX_RETENTION_DAYS)
    if expires_at <= now:
        raise PolicyError(f"expiry {expires_at:%Y-%m-%d} is not in the future")
    if expires_at > now + dt.timedelta(days=limit_days):
        raise PolicyError(
            f"expiry {expires_at:%Y-%m-%d} is beyond the policy maximum of {limit_days} days "
            f"(latest {now + dt.timedelta(days=limit_days):%Y-%m-%d})"
        )


def _searching_count(
    session: Session, site: Site, now: dt.datetime, exclude: uuid.UUID | None
) -> int:
    query = (
        select(func.count())
        .select_from(Subject)
        .join(SubjectSite, SubjectSite.subject_id == Subject.id)
        .where(
            SubjectSite.site_id == site.id,
            Subject.status.in_([SubjectStatus.PENDING, SubjectStatus.ACTIVE]),
            Subject.expires_at > now,
        )
    )
    if exclude is not None:
        query = query.where(Subject.id != exclude)
    return session.scalar(query) or 0


def _check_cap(
    session: Session,
    organisation: Organisation,
    sites: Iterable[Site],
    now: dt.datetime,
    exclude: uuid.UUID | None = None,
) -> None:
    for site in sites:
        if _searching_count(session, site, now, exclude) >= organisation.watchlist_cap_per_site:
            raise PolicyError(
                f"site {site.name!r} already has {organisation.watchlist_cap_per_site} "
                "watchlist entries, the policy's cap"
            )


def _encode_photo(image: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise ImageError("cannot encode the enrolment photo")
    return encoded.tobytes()


def _template_context(template_id: uuid.UUID, subject_id: uuid.UUID) -> str:
    """A template is bound to its entry: moved to another one, it no longer decrypts."""
    return f"template:{template_id}:subject={subject_id}"


def template_vector(keys: KeyRing, template: Template, subject_id: uuid.UUID) -> np.ndarray:
    """The decrypted vector of ``template``, which must belong to entry ``subject_id``."""
    blob = keys.decrypt(template.vector_encrypted, _template_context(template.id, subject_id))
    return np.frombuffer(blob, np.float32)


def make_template(
    keys: KeyRing, image: FaceImage, subject_id: uuid.UUID, model_id: str, vector: np.ndarray
) -> Template:
    """A template row for ``vector``, encrypted and bound to entry ``subject_id``."""
    template_id = uuid.uuid4()
    blob = np.ascontiguousarray(vector, np.float32).tobytes()
    return Template(
        id=template_id,
        face_image_id=image.id,
        model_id=model_id,
        vector_encrypted=keys.encrypt(blob, _template_context(template_id, subject_id)),
    )


def enrol(
    session: Session,
    store: Store,
    organisation: Organisation,
    actor: User,
    models: FaceModels,
    *,
    label: str,
    reason: str,
    incidents: Sequence[Incident],
    photos: Sequence[EnrolmentPhoto],
    attest_not_child_or_vulnerable: bool,
    sites: Sequence[Site] | None = None,
    expires_at: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> Subject:
    """Propose a watchlist entry (status pending until a second person approves it).

    Everything is checked before anything is written; the photos' files and the
    rows are committed together with ``session`` or not at all.
    """
    now = now or utcnow()
    require(actor, Permission.ENROL)
    model = models.embedder.spec.name
    if organisation.embedder not in (None, model):
        raise PolicyError(
            f"the watchlist is searched with {organisation.embedder!r}; entries cannot be "
            f"enrolled with {model!r}"
        )
    if not attest_not_child_or_vulnerable:
        raise PolicyError(
            "the enroller must attest that the person is not known to be a child or a "
            "vulnerable person"
        )
    if not label.strip() or not reason.strip():
        raise PolicyError("an entry needs a label and a reason")
    if not incidents:
        raise PolicyError("an entry must be linked to at least one recorded incident")
    if any(incident.organisation_id != organisation.id for incident in incidents):
        raise PolicyError("an incident of another organisation cannot be linked")
    scope = list(sites) if sites else list({i.site_id: i.site for i in incidents}.values())
    if any(site.organisation_id != organisation.id for site in scope):
        raise PolicyError("a site of another organisation cannot be in scope")
    expires_at = expires_at or now + dt.timedelta(days=organisation.default_retention_days)
    check_expiry(organisation, expires_at, now)
    _check_cap(session, organisation, scope, now)
    if not photos:
        raise PolicyError("an entry needs at least one photo")

    images: list[np.ndarray] = []
    chips: list[np.ndarray] = []
    qualities: list[float] = []
    refusals: dict[str, tuple[str, ...]] = {}
    for photo in photos:
        try:
            image = decode_image(photo.data, photo.name)
            face = enrolment_face(image, models.detector, models.embedder, models.quality)
        except ImageError as exc:
            refusals[photo.name] = (str(exc),)
        except PhotoRefused as refused:
            refusals[photo.name] = refused.reasons
        else:
            images.append(image)
            chips.append(face.chip)
            qualities.append(face.quality.score)
    if refusals:
        raise PhotosRefused(refusals)
    embeddings = models.embedder.embed(chips)
    # Before anything is written (a refusal here must leave nothing to commit).
    hold_model(session, organisation, model)

    subject = Subject(
        id=uuid.uuid4(),
        organisation_id=organisation.id,
        label=label.strip(),
        reason=reason.strip(),
        status=SubjectStatus.PENDING,
        not_child_or_vulnerable=True,
        created_by_id=actor.id,
        created_at=now,
        expires_at=expires_at,
        incidents=list(incidents),
        sites=scope,
    )
    session.add(subject)
    for image, quality, vector in zip(images, qualities, embeddings.vectors, strict=True):
        face_image = FaceImage(
            id=uuid.uuid4(),
            subject=subject,
            quality=quality,
            width=image.shape[1],
            height=image.shape[0],
        )
        session.add(face_image)
        session.add(make_template(store.keys, face_image, subject.id, embeddings.model_id, vector))
        store.write_file(session, FACE_IMAGE, face_image.id, _encode_photo(image), subject.id)
    session.flush()
    audit.record(
        session,
        store.keys,
        organisation.id,
        actor.name,
        "subject.enrol",
        "subject",
        subject.id,
        incidents=[str(i.id) for i in incidents],
        sites=[str(s.id) for s in scope],
        photos=len(images),
        model=embeddings.model_id,
        expires_at=expires_at.isoformat(),
        attested_not_child_or_vulnerable=True,
    )
    return subject


def approve(
    session: Session,
    keys: KeyRing,
    organisation: Organisation,
    actor: User,
    subject: Subject,
    now: dt.datetime | None = None,
) -> None:
    """Make a pending (or reinstate a suspended) entry active; never by its creator."""
    now = now or utcnow()
    require_approver(organisation, actor)
    ensure_owned(subject, organisation)
    if subject.created_by_id == actor.id:
        raise PolicyError("an entry must be approved by someone other than the person who made it")
    if subject.status == SubjectStatus.ACTIVE:
        raise PolicyError(f"entry {short_id(subject)} is already active")
    if subject.expires_at <= now:
        raise PolicyError(f"entry {short_id(subject)} has expired; it can only be erased")
    _check_cap(session, organisation, subject.sites, now, exclude=subject.id)
    previous = subject.status
    subject.status = SubjectStatus.ACTIVE
    subject.approved_by_id = actor.id
    subject.approved_at = now
    subject.status_note = None
    audit.record(
        session,
        keys,
        organisation.id,
        actor.name,
        "subject.approve" if previous == SubjectStatus.PENDING else "subject.reinstate",
        "subject",
        subject.id,
    )


def renew(
    session: Session,
    keys: KeyRing,
    organisation: Organisation,
    actor: User,
    subject: Subject,
    expires_at: dt.datetime,
    reason: str,
    now: dt.datetime | None = None,
) -> None:
    """Set a new expiry (within the policy maximum from now); an approver other than the
    creator decides, as for approval."""
    now = now or utcnow()
    require_approver(organisation, actor)
    ensure_owned(subject, organisation)
    if subject.created_by_id == actor.id:
        raise PolicyError("an entry must be renewed by someone other than the person who made it")
    if not reason.strip():
        raise PolicyError("a renewal needs a reason")
    if subject.expires_at <= now:
        raise PolicyError(f"entry {short_id(subject)} has expired; it can only be erased")
    check_expiry(organisation, expires_at, now)
    before = subject.expires_at
    subject.expires_at = expires_at
    audit.record(
        session,
        keys,
        organisation.id,
        actor.name,
        "subject.renew",
        "subject",
        subject.id,
        expires_before=before.isoformat(),
        expires_at=expires_at.isoformat(),
        reason=reason,
    )


def suspend(
    session: Session,
    keys: KeyRing,
    organisation: Organisation,
    actor: User | None,
    subject: Subject,
    note: str,
) -> None:
    """Stop searching an entry until it is approved again. ``actor`` None: the system
    (the false-match limit)."""
    ensure_owned(subject, organisation)
    if actor is not None:
        require(actor, Permission.SUSPEND)
    if subject.status == SubjectStatus.SUSPENDED:
        raise PolicyError(f"entry {short_id(subject)} is already suspended")
    subject.status = SubjectStatus.SUSPENDED
    subject.status_note = note
    audit.record(
        session,
        keys,
        organisation.id,
        actor.name if actor else "system",
        "subject.suspend",
        "subject",
        subject.id,
        note=note,
    )


def restrict(
    session: Session,
    keys: KeyRing,
    organisation: Organisation,
    actor: User,
    subject: Subject,
    restricted: bool,
    note: str,
) -> None:
    """Restrict processing at the person's request (kept, never searched), or lift it."""
    require(actor, Permission.SUSPEND)
    ensure_owned(subject, organisation)
    subject.restricted = restricted
    audit.record(
        session,
        keys,
        organisation.id,
        actor.name,
        "subject.restrict" if restricted else "subject.unrestrict",
        "subject",
        subject.id,
        note=note,
    )


@dataclass(frozen=True)
class Removed:
    """What deleting entries removed: row and file counts."""

    subjects: int = 0
    face_images: int = 0
    templates: int = 0
    alerts: int = 0
    reviews: int = 0
    incidents: int = 0

    def __add__(self, other: Removed) -> Removed:
        return Removed(
            *(a + b for a, b in zip(vars(self).values(), vars(other).values(), strict=True))
        )


def delete_alerts(session: Session, store: Store, alert_ids: Sequence[uuid.UUID]) -> Removed:
    """Hard-delete alerts, their reviews and (after commit) their snapshots."""
    if not alert_ids:
        return Removed()
    reviews = session.execute(delete(Review).where(Review.alert_id.in_(alert_ids))).rowcount
    session.execute(delete(Alert).where(Alert.id.in_(alert_ids)))
    for alert_id in alert_ids:
        store.remove_file(session, ALERT_CROP, alert_id)
    return Removed(alerts=len(alert_ids), reviews=reviews)


def delete_subject(session: Session, store: Store, subject: Subject) -> Removed:
    """Hard-delete an entry with its photos, templates, alerts and reviews, and the
    incidents no other entry refers to (their descriptions are about this person)."""
    image_ids = list(
        session.scalars(select(FaceImage.id).where(FaceImage.subject_id == subject.id))
    )
    alert_ids = list(session.scalars(select(Alert.id).where(Alert.subject_id == subject.id)))
    incident_ids = list(
        session.scalars(
            select(SubjectIncident.incident_id).where(SubjectIncident.subject_id == subject.id)
        )
    )
    removed = delete_alerts(session, store, alert_ids)
    templates = 0
    if image_ids:
        templates = session.execute(
            delete(Template).where(Template.face_image_id.in_(image_ids))
        ).rowcount
        session.execute(delete(FaceImage).where(FaceImage.id.in_(image_ids)))
    for image_id in image_ids:
        store.remove_file(session, FACE_IMAGE, image_id)
    session.execute(delete(SubjectIncident).where(SubjectIncident.subject_id == subject.id))
    session.execute(delete(SubjectSite).where(SubjectSite.subject_id == subject.id))
    session.execute(delete(Subject).where(Subject.id == subject.id))
    orphaned = [
        incident_id
        for incident_id in incident_ids
        if not session.scalar(
            select(func.count())
            .select_from(SubjectIncident)
            .where(SubjectIncident.incident_id == incident_id)
        )
    ]
    if orphaned:
        session.execute(delete(Incident).where(Incident.id.in_(orphaned)))
    session.expunge(subject)
    return removed + Removed(
        subjects=1, face_images=len(image_ids), templates=templates, incidents=len(orphaned)
    )


def erase(
    session: Session,
    store: Store,
    organisation: Organisation,
    actor: User,
    subject: Subject,
    reason: str,
) -> Removed:
    """Remove everything held about an entry (an erasure request, or an entry withdrawn)."""
    require(actor, Permission.ERASE)
    ensure_owned(subject, organisation)
    if not reason.strip():
        raise PolicyError("an erasure needs a reason")
    subject_id = subject.id
    removed = delete_subject(session, store, subject)
    audit.record(
        session,
        store.keys,
        organisation.id,
        actor.name,
        "subject.erase",
        "subject",
        subject_id,
        reason=reason,
        **vars(removed),
    )
    return removed


def retemplate(
    session: Session,
    store: Store,
    organisation: Organisation,
    actor: User,
    models: FaceModels,
) -> dict[str, int]:
    """Embed every stored photo that has no template from ``models.embedder`` yet, so the
    watchlist can be searched with a new model. Photos in which the new model's
    alignment finds no usable face are counted, not deleted."""
    require(actor, Permission.APPROVE)
    model_id = models.embedder.model_id
    has_template = select(Template.face_image_id).where(Template.model_id == model_id)
    images = session.scalars(
        select(FaceImage)
        .join(Subject)
        .where(Subject.organisation_id == organisation.id)
        .where(FaceImage.id.not_in(has_template))
    ).all()
    made = unusable = 0
    for face_image in images:
        photo = store.files.read(FACE_IMAGE, face_image.id, face_image.subject_id)
        image = decode_image(photo, f"photo {face_image.id}")
        try:
            face = enrolment_face(image, models.detector, models.embedder, models.quality)
        except PhotoRefused:
            unusable += 1
            continue
        vector = models.embedder.embed([face.chip]).vectors[0]
        session.add(make_template(store.keys, face_image, face_image.subject_id, model_id, vector))
        made += 1
    session.flush()
    counts = {"templates": made, "unusable_photos": unusable}
    audit.record(
        session,
        store.keys,
        organisation.id,
        actor.name,
        "watchlist.retemplate",
        None,
        None,
        model=model_id,
        **counts,
    )
    return counts


def searchable_at(
    organisation_id: uuid.UUID, site_id: uuid.UUID, now: dt.datetime
) -> tuple[ColumnElement[bool], ...]:
    """The conditions under which live matching may search an entry at ``site_id`` (a
    query joining ``SubjectSite``); :func:`is_searchable` is the same rule for one
    loaded entry."""
    return (
        Subject.organisation_id == organisation_id,
        Subject.status == SubjectStatus.ACTIVE,
        Subject.restricted.is_(False),
        Subject.expires_at > now,
        SubjectSite.site_id == site_id,
    )


def searchable_gallery(
    session: Session,
    keys: KeyRing,
    organisation_id: uuid.UUID,
    site_id: uuid.UUID,
    model_id: str,
    now: dt.datetime | None = None,
) -> Gallery:
    """The templates live matching may search at ``site_id``: active, unrestricted,
    unexpired entries of this organisation with ``site_id`` in scope, made by
    ``model_id``. Labels are subject ids."""
    now = now or utcnow()
    rows = session.execute(
        select(Template, Subject.id)
        .join(FaceImage, Template.face_image_id == FaceImage.id)
        .join(Subject, FaceImage.subject_id == Subject.id)
        .join(SubjectSite, SubjectSite.subject_id == Subject.id)
        .where(*searchable_at(organisation_id, site_id, now), Template.model_id == model_id)
    ).all()
    vectors = (
        np.stack([template_vector(keys, template, subject_id) for template, subject_id in rows])
        if rows
        else np.zeros((0, 0), np.float32)
    )
    gallery = Gallery(model_id, vectors, [str(subject_id) for _, subject_id in rows])
    vectors.fill(0)
    return gallery


def is_searchable(subject: Subject, site_id: uuid.UUID, now: dt.datetime) -> bool:
    """Whether live matching may still report ``subject`` at ``site_id`` now."""
    return (
        subject.status == SubjectStatus.ACTIVE
        and not subject.restricted
        and subject.expires_at > now
        and any(site.id == site_id for site in subject.sites)
    )


def subject_view(
    session: Session, subject: Subject, now: dt.datetime, full: bool = False
) -> dict[str, Any]:
    """What staff see of an entry (never vectors)."""
    view: dict[str, Any] = {
        "id": str(subject.id),
        "label": subject.label,
        "status": effective_status(subject, now),
        "restricted": subject.restricted,
        "expires_at": subject.expires_at.isoformat(),
        "sites": sorted(site.name for site in subject.sites),
        "photos": len(subject.images),
        "false_matches": subject.false_matches,
    }
    if full:
        alerts = session.scalars(
            select(Alert).where(Alert.subject_id == subject.id).order_by(Alert.occurred_at)
        ).all()
        view |= {
            "reason": subject.reason,
            "status_note": subject.status_note,
            "created_by": subject.created_by.name,
            "created_at": subject.created_at.isoformat(),
            "approved_by": subject.approved_by.name if subject.approved_by else None,
            "approved_at": subject.approved_at.isoformat() if subject.approved_at else None,
            "attested_not_child_or_vulnerable": subject.not_child_or_vulnerable,
            "incidents": [
                {
                    "id": str(incident.id),
                    "site": incident.site.name,
                    "occurred_at": incident.occurred_at.isoformat(),
                    "category": incident.category.value,
                    "description": incident.description,
                    "police_reference": incident.police_reference,
                }
                for incident in subject.incidents
            ],
            "images": [
                {
                    "id": str(image.id),
                    "quality": round(image.quality, 3),
                    "size": [image.width, image.height],
                    "models": sorted(t.model_id for t in image.templates),
                }
                for image in subject.images
            ],
            "alerts": [
                {
                    "id": str(a.id),
                    "occurred_at": a.occurred_at.isoformat(),
                    "status": a.status.value,
                }
                for a in alerts
            ],
        }
    return view


def list_subjects(
    session: Session,
    keys: KeyRing,
    organisation: Organisation,
    actor: User,
    status: str | None = None,
    now: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """The entries (optionally of one effective status) as staff see them; audited."""
    now = now or utcnow()
    require(actor, Permission.VIEW)
    subjects = session.scalars(
        select(Subject)
        .where(Subject.organisation_id == organisation.id)
        .order_by(Subject.created_at)
    )
    views = [
        subject_view(session, subject, now)
        for subject in subjects
        if visible_to(subject, actor)
        and (status is None or effective_status(subject, now) == status)
    ]
    audit.record(
        session,
        keys,
        organisation.id,
        actor.name,
        "subject.list",
        None,
        None,
        status=status,
        shown=len(views),
    )
    return views


def show_subject(
    session: Session, keys: KeyRing, organisation: Organisation, actor: User, subject: Subject
) -> dict[str, Any]:
    """Everything staff may see about one entry (never vectors); audited."""
    require(actor, Permission.VIEW)
    ensure_owned(subject, organisation)
    ensure_visible(subject, actor)
    view = subject_view(session, subject, utcnow(), full=True)
    audit.record(session, keys, organisation.id, actor.name, "subject.view", "subject", subject.id)
    return view


def visible_to(subject: Subject, user: User) -> bool:
    """Whether ``user`` may see ``subject``: one of its sites is one of theirs (admins and
    auditors see every entry; see :func:`~watchkeeper.governance.access.site_scope`)."""
    scope = site_scope(user)
    return scope is None or any(site.id in scope for site in subject.sites)


def ensure_visible(subject: Subject, user: User) -> None:
    """An entry outside ``user``'s sites is "not found", never shown."""
    if not visible_to(subject, user):
        raise NotFoundError(f"no subject {short_id(subject)}")


def read_photo(
    session: Session, store: Store, organisation: Organisation, actor: User, image_id: str
) -> bytes:
    """The stored JPEG of enrolment photo ``image_id`` (the full id), for a user who may
    view the watchlist and see the photo's entry; audited as ``subject.photo``. A photo
    of another organisation, or outside the user's sites, is "not found"."""
    require(actor, Permission.VIEW)
    try:
        image = session.get(FaceImage, uuid.UUID(image_id))
    except ValueError:
        image = None
    if image is None or image.subject.organisation_id != organisation.id:
        raise NotFoundError(f"no photo {image_id!r}")
    ensure_visible(image.subject, actor)
    data = store.files.read(FACE_IMAGE, image.id, image.subject_id)
    audit.record(
        session,
        store.keys,
        organisation.id,
        actor.name,
        "subject.photo",
        "subject",
        image.subject_id,
        image=str(image.id),
    )
    return data
