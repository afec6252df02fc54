"""Moving an organisation's stored watchlist from one identity model to another.

Templates of different models are never compared, so a switch re-embeds, from its
stored (encrypted) enrolment photos, every entry that is or could again become
searchable (pending, active, suspended or restricted; not expired, since an expired
entry can only be erased). Each entry is one transaction: it gets every new template
or none, and its ``subject.retemplate`` event. Cameras go on searching with the old
model meanwhile: the organisation's model in use
(:func:`~watchkeeper.governance.subjects.model_in_use`) changes only when every such
entry holds a template of the new model, or when the actor accepts that the entries
listed as unusable (no photo passes the new model's gate) stop being searched. That
change is made in a transaction that holds the organisation's row and first finds
anything enrolled meanwhile without a new template (which is then embedded, and the
check made again); an enrolment that ends after the change is refused
(:func:`~watchkeeper.governance.subjects.hold_model`). Running cameras notice the
change when they next reload their watchlist and restart with the new model.

The old model's templates are kept by default, so that switching back needs no
re-embedding; ``drop_old`` deletes every template of another model once the switch
is stored (less biometric data held, at the cost of re-embedding to go back). An
error part-way (a photo file that cannot be read) stops the switch: the entries
done so far keep their new templates (a new run carries on from there), the one that
failed has none, and the model in use is unchanged.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from watchkeeper.config import Settings
from watchkeeper.errors import ConfigError, ImageError, PolicyError, WatchlistError
from watchkeeper.governance import access, audit
from watchkeeper.governance.access import Permission, require
from watchkeeper.governance.subjects import (
    FACE_IMAGE,
    effective_status,
    locked_organisation,
    make_template,
    model_in_use,
    visible_to,
)
from watchkeeper.matching.watchlist import PhotoRefused, enrolment_face
from watchkeeper.pipeline import FaceModels, model_name
from watchkeeper.store.database import Store
from watchkeeper.store.models import FaceImage, Organisation, Subject, Template, User, utcnow
from watchkeeper.vision.images import decode_image

__all__ = [
    "ModelHoldings",
    "SwitchReport",
    "UnusableEntry",
    "holdings",
    "model_in_use",
    "model_name",
    "switch_model",
    "unsearchable_entries",
]

Progress = Callable[[int, int], None]
"""Called with (entries done, entries to do) as a switch goes."""

MAX_ROUNDS = 5
"""Times the final check may find entries enrolled meanwhile before a switch gives up."""


@dataclass(frozen=True)
class UnusableEntry:
    """An entry none of whose photos gives a template of the new model."""

    subject_id: str
    label: str
    status: str
    photos: dict[str, list[str]]
    """Each photo's id and why the new model's gate refused it."""


@dataclass
class SwitchReport:
    previous: str
    """Registry name of the model in use before."""
    model: str
    """Registry name of the new model."""
    model_id: str
    entries: int = 0
    """Entries that had to hold a template of the new model."""
    retemplated: int = 0
    """Entries given new templates by this run."""
    templates: int = 0
    """Templates made by this run."""
    unusable: list[UnusableEntry] = field(default_factory=list)
    switched: bool = False
    """The organisation now searches with ``model``."""
    already: bool = False
    """``model`` was already the model in use: nothing was done."""
    dropped_templates: int = 0
    """Templates of other models deleted (``drop_old``)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ModelHoldings:
    """What an organisation holds of one model: templates, and entries with one."""

    model_id: str
    templates: int
    entries: int


def holdings(session: Session, organisation_id: uuid.UUID) -> list[ModelHoldings]:
    """Templates and entries held per model (counts only), most templates first."""
    rows = session.execute(
        select(
            Template.model_id, func.count(Template.id), func.count(FaceImage.subject_id.distinct())
        )
        .join(FaceImage, Template.face_image_id == FaceImage.id)
        .join(Subject, FaceImage.subject_id == Subject.id)
        .where(Subject.organisation_id == organisation_id)
        .group_by(Template.model_id)
    ).all()
    found = [ModelHoldings(model_id, templates, entries) for model_id, templates, entries in rows]
    return sorted(found, key=lambda h: (-h.templates, h.model_id))


def _lacking(session: Session, organisation_id: uuid.UUID, model_id: str) -> list[uuid.UUID]:
    """Unexpired entries with no template of ``model_id``, oldest first."""
    holding = (
        select(FaceImage.subject_id)
        .join(Template, Template.face_image_id == FaceImage.id)
        .where(Template.model_id == model_id)
    )
    return list(
        session.scalars(
            select(Subject.id)
            .where(
                Subject.organisation_id == organisation_id,
                Subject.expires_at > utcnow(),
                Subject.id.not_in(holding),
            )
            .order_by(Subject.created_at, Subject.id)
        )
    )


def unsearchable_entries(
    session: Session, organisation_id: uuid.UUID, model_id: str
) -> list[uuid.UUID]:
    """Ids of the unexpired entries that the model ``model_id`` cannot search (no template
    of it): after a switch that accepted unusable entries, those entries."""
    return _lacking(session, organisation_id, model_id)


def _approver(session: Session, organisation_id: uuid.UUID, actor: str) -> User:
    user = access.user(session, organisation_id, actor)
    require(user, Permission.APPROVE)
    return user


def switch_model(
    store: Store,
    settings: Settings,
    organisation_id: uuid.UUID,
    actor: str,
    models: FaceModels,
    *,
    accept_unusable: bool = False,
    drop_old: bool = False,
    progress: Progress | None = None,
) -> SwitchReport:
    """Move the organisation's stored watchlist to ``models.embedder`` (see the module's
    description); ``actor`` (a user name) needs the approve permission. Returns what
    was done; ``switched`` says whether the model in use changed (not when entries are
    unusable and ``accept_unusable`` is false: they are listed, and nothing else
    changes). Raises the error that stopped a switch part-way, after logging it."""
    spec = models.embedder.spec
    name, model_id = spec.name, spec.model_id
    with store.session() as session:
        organisation = session.get_one(Organisation, organisation_id)
        _approver(session, organisation_id, actor)
        previous = model_in_use(organisation, settings)
        report = SwitchReport(previous, name, model_id)
        if organisation.embedder == name:
            report.already = True
            return report
        if spec.calibration is None and settings.matching.threshold is None:
            raise ConfigError(
                f"model {name!r} has no calibrated threshold, so cameras could not match with "
                "it; measure one (`watchkeeper calibrate ... --save`) or set matching.threshold"
            )
        entries = _lacking(session, organisation_id, model_id)
        report.entries = len(entries)
        audit.record(
            session, store.keys, organisation_id, actor, "models.switch_started",
            "organisation", organisation_id, model_from=previous, model_to=name,
            entries=len(entries),
        )  # fmt: skip
    refusals: dict[uuid.UUID, dict[str, list[str]]] = {}
    """Entries this run tried, with each refused photo's reasons."""
    total = len(entries)

    def retemplate_all(subject_ids: Iterable[uuid.UUID]) -> None:
        for subject_id in subject_ids:
            made, refused = _retemplate_entry(store, organisation_id, actor, models, subject_id)
            refusals[subject_id] = refused
            report.templates += made
            report.retemplated += 1 if made else 0
            if progress is not None:
                progress(len(refusals), total)

    try:
        if progress is not None:
            progress(0, total)
        retemplate_all(entries)
        for _ in range(MAX_ROUNDS):
            with store.session() as session:
                organisation = locked_organisation(session, organisation_id)
                lacking = _lacking(session, organisation_id, model_id)
                enrolled_meanwhile = [s for s in lacking if s not in refusals]
                if not enrolled_meanwhile:
                    report.unusable = _unusable(session, organisation_id, actor, lacking, refusals)
                    _finish(session, store, organisation, actor, report, accept_unusable, drop_old)
                    return report
            total += len(enrolled_meanwhile)
            report.entries += len(enrolled_meanwhile)
            retemplate_all(enrolled_meanwhile)
        raise PolicyError("entries kept being enrolled during the switch; run it again")
    except (Exception, KeyboardInterrupt) as exc:
        _stopped(store, organisation_id, actor, report, exc)
        raise


def _finish(
    session: Session,
    store: Store,
    organisation: Organisation,
    actor: str,
    report: SwitchReport,
    accept_unusable: bool,
    drop_old: bool,
) -> None:
    """In the transaction that holds the organisation's row: store the switch, or log
    why not (entries unusable and not accepted)."""
    unusable = [entry.subject_id for entry in report.unusable]
    counts = {
        "model_from": report.previous,
        "model_to": report.model,
        "entries": report.entries,
        "retemplated": report.retemplated,
        "templates": report.templates,
        "unusable": unusable,
    }
    if unusable and not accept_unusable:
        audit.record(
            session, store.keys, organisation.id, actor, "models.switch_incomplete",
            "organisation", organisation.id, reason="unusable entries not accepted", **counts,
        )  # fmt: skip
        return
    _approver(session, organisation.id, actor)  # still allowed at the end
    organisation.embedder = report.model
    if drop_old:
        images = (
            select(FaceImage.id)
            .join(Subject, FaceImage.subject_id == Subject.id)
            .where(Subject.organisation_id == organisation.id)
        )
        report.dropped_templates = session.execute(
            delete(Template)
            .where(Template.model_id != report.model_id, Template.face_image_id.in_(images))
            .execution_options(synchronize_session=False)
        ).rowcount
    report.switched = True
    audit.record(
        session, store.keys, organisation.id, actor, "models.switch_completed", "organisation",
        organisation.id, dropped_templates=report.dropped_templates, **counts,
    )  # fmt: skip


def _stopped(
    store: Store, organisation_id: uuid.UUID, actor: str, report: SwitchReport, error: BaseException
) -> None:
    """Log a switch that an error stopped part-way (best effort: the error is what matters)."""
    try:
        with store.session() as session:
            audit.record(
                session, store.keys, organisation_id, actor, "models.switch_incomplete",
                "organisation", organisation_id, model_from=report.previous,
                model_to=report.model, reason=f"{type(error).__name__}: {error}"[:300],
                retemplated=report.retemplated, templates=report.templates,
            )  # fmt: skip
    except Exception:  # the database may be what failed
        pass


HIDDEN_LABEL = "(an entry at a site you do not see)"


def _unusable(
    session: Session,
    organisation_id: uuid.UUID,
    actor: str,
    lacking: list[uuid.UUID],
    refusals: dict[uuid.UUID, dict[str, list[str]]],
) -> list[UnusableEntry]:
    """The entries ``lacking`` a template of the new model, as ``actor`` may see them (the
    label of an entry at none of their sites is withheld)."""
    user = access.user(session, organisation_id, actor)
    now = utcnow()
    listed = []
    for subject_id in lacking:
        subject = session.get(Subject, subject_id)
        if subject is None:
            continue
        status = effective_status(subject, now) + (", restricted" if subject.restricted else "")
        label = subject.label if visible_to(subject, user) else HIDDEN_LABEL
        listed.append(UnusableEntry(str(subject_id), label, status, refusals.get(subject_id, {})))
    return listed


def _retemplate_entry(
    store: Store,
    organisation_id: uuid.UUID,
    actor: str,
    models: FaceModels,
    subject_id: uuid.UUID,
) -> tuple[int, dict[str, list[str]]]:
    """Give one entry a template of the new model for each of its photos that passes the
    gate, in one transaction; the templates made, and each refused photo's reasons.

    The photos are read and embedded outside any transaction (the database is not held
    while the network runs); the entry is then locked, and what is still missing stored.
    """
    model_id = models.embedder.model_id
    with store.session() as session:
        images = _photos_lacking(session, subject_id, model_id)
    chips: list[np.ndarray] = []
    embedded: list[uuid.UUID] = []
    refused: dict[str, list[str]] = {}
    for image_id in images:
        try:
            data = store.files.read(FACE_IMAGE, image_id, subject_id)
        except OSError as exc:
            with store.session() as session:
                if session.get(FaceImage, image_id) is None:
                    return 0, {}  # the entry was erased meanwhile
            raise WatchlistError(
                f"photo {image_id} of entry {str(subject_id)[:8]} cannot be read "
                f"({exc.strerror or exc}); the files folder is damaged"
            ) from None
        try:
            image = decode_image(data, f"photo {image_id}")
            chips.append(
                enrolment_face(image, models.detector, models.embedder, models.quality).chip
            )
        except ImageError as exc:
            refused[str(image_id)] = [str(exc)]
        except PhotoRefused as exc:
            refused[str(image_id)] = list(exc.reasons)
        else:
            embedded.append(image_id)
    if not images:
        return 0, refused
    vectors = models.embedder.embed(chips).vectors
    try:
        with store.session() as session:
            subject = session.scalars(
                select(Subject).where(Subject.id == subject_id).with_for_update()
            ).one_or_none()
            if subject is None:
                return 0, {}
            still = {
                image.id: image for image in _photos_lacking(session, subject_id, model_id, True)
            }
            made = 0
            for image_id, vector in zip(embedded, vectors, strict=True):
                if image_id in still:
                    session.add(
                        make_template(store.keys, still[image_id], subject_id, model_id, vector)
                    )
                    made += 1
            audit.record(
                session, store.keys, organisation_id, actor, "subject.retemplate", "subject",
                subject_id, model=model_id, templates=made, unusable_photos=len(refused),
            )  # fmt: skip
    finally:
        vectors.fill(0)
    return made, refused


def _photos_lacking(
    session: Session, subject_id: uuid.UUID, model_id: str, rows: bool = False
) -> list[Any]:
    """The entry's photos (ids, or rows) with no template of ``model_id``, oldest first."""
    holding = select(Template.face_image_id).where(Template.model_id == model_id)
    query = (
        select(FaceImage)
        .where(FaceImage.subject_id == subject_id, FaceImage.id.not_in(holding))
        .order_by(FaceImage.created_at, FaceImage.id)
    )
    found = session.scalars(query).all()
    return list(found) if rows else [image.id for image in found]
