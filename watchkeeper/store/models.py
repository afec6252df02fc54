"""The database schema: SQLAlchemy 2 models, the same on SQLite and PostgreSQL.

Biometric data never sits here in the clear: templates and alert probe
vectors are AES-GCM ciphertext, and face images and alert snapshots are
encrypted files named by the rows that own them. Free text that describes
people (incident descriptions, entry labels and reasons, review notes) is
encrypted in its column by the types of ``watchkeeper.store.sealed``. Every
table that holds people's data belongs to one organisation; every query
filters by it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    event,
)
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, Mapper, mapped_column, relationship

from watchkeeper.errors import PolicyError
from watchkeeper.store.sealed import EncryptedJSON, EncryptedText

MAX_RETENTION_DAYS = 730
"""The ceiling on any watchlist entry's life: 24 months, whatever a policy says."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every database (SQLite stores no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; use timezone-aware UTC times")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _enum(kind: type[StrEnum]) -> Enum:
    return Enum(
        kind,
        native_enum=False,
        validate_strings=True,
        length=16,
        values_callable=lambda k: [m.value for m in k],
    )


class Role(StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    REPORTER = "reporter"
    REVIEWER = "reviewer"
    AUDITOR = "auditor"


class IncidentCategory(StrEnum):
    THEFT = "theft"
    VIOLENCE = "violence"
    THREATS = "threats"
    OTHER = "other"


class SubjectStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    SUSPENDED = "suspended"


class AlertStatus(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    UNSURE = "unsure"


class Decision(StrEnum):
    CONFIRM = "confirm"
    REJECT = "reject"
    UNSURE = "unsure"


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict] = {dt.datetime: UTCDateTime(), uuid.UUID: Uuid()}


FREE_TEXT_LIMIT = 10_000
"""The most characters a free-text field (an incident's description, an entry's reason,
a note) holds."""


@event.listens_for(Base, "before_insert", propagate=True)
@event.listens_for(Base, "before_update", propagate=True)
def _text_fits(_mapper: Mapper, _connection: Connection, row: Base) -> None:
    """Refuse, naming the field, text that the database would cut, refuse or store
    unevenly: longer than its column (SQLite does not enforce lengths, PostgreSQL answers
    with a driver error) or than :data:`FREE_TEXT_LIMIT`, or holding a NUL character
    (which PostgreSQL cannot store). Encrypted text is measured before encryption, against
    the length its type declares. One check for every way in: pages, API, commands."""
    mapper = row.__mapper__
    for column in mapper.columns:
        plain_text = isinstance(column.type, String) and not isinstance(column.type, Enum)
        if not (plain_text or isinstance(column.type, EncryptedText)):
            continue
        value = getattr(row, mapper.get_property_by_column(column).key, None)
        if not isinstance(value, str):
            continue
        field = f"{mapper.class_.__name__.lower()} {column.name.replace('_', ' ')}"
        limit = column.type.length or FREE_TEXT_LIMIT
        if len(value) > limit:
            raise PolicyError(f"{field} is too long: {len(value):,} characters, at most {limit:,}")
        if "\x00" in value:
            raise PolicyError(f"{field} contains a NUL character")


class Organisation(Base):
    __tablename__ = "organisation"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    max_retention_days: Mapped[int] = mapped_column(Integer, default=MAX_RETENTION_DAYS)
    default_retention_days: Mapped[int] = mapped_column(Integer, default=365)
    alert_retention_days: Mapped[int] = mapped_column(Integer, default=30)
    watchlist_cap_per_site: Mapped[int] = mapped_column(Integer, default=500)
    false_matches_before_suspension: Mapped[int] = mapped_column(Integer, default=3)
    approver_roles: Mapped[str] = mapped_column(String(100), default="admin,manager")
    embedder: Mapped[str | None] = mapped_column(String(100))
    """Registry name of the identity embedder the stored watchlist is searched with; set
    by the first enrolment and changed only by a model switch
    (``watchkeeper.governance.model_switch``). None: the configured one
    (``Settings.embedder``), until something is enrolled."""
    key_check: Mapped[bytes] = mapped_column(LargeBinary)
    audit_count: Mapped[int] = mapped_column(Integer, default=0)
    audit_head: Mapped[bytes] = mapped_column(LargeBinary, default=bytes(32))
    """MAC of the newest audit event (zeros before the first)."""
    audit_head_mac: Mapped[bytes] = mapped_column(LargeBinary, default=bytes(32))
    """MAC over (audit_count, audit_head): cutting events off the end shows."""


class Site(Base):
    __tablename__ = "site"
    __table_args__ = (UniqueConstraint("organisation_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisation.id"))
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Camera(Base):
    __tablename__ = "camera"
    __table_args__ = (UniqueConstraint("site_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    site_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("site.id"))
    name: Mapped[str] = mapped_column(String(200))
    source_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    """The stream URL with any credentials, encrypted."""
    source_display: Mapped[str] = mapped_column(String(500))
    """The URL with its password masked, for lists."""
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    schedule: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    site: Mapped[Site] = relationship()


class UserSite(Base):
    __tablename__ = "user_site"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("app_user.id", ondelete="CASCADE"), primary_key=True
    )
    site_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("site.id"), primary_key=True)


class User(Base):
    __tablename__ = "app_user"
    __table_args__ = (UniqueConstraint("organisation_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisation.id"))
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[Role] = mapped_column(_enum(Role))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    password_hash: Mapped[str | None] = mapped_column(String(200))
    """argon2id hash (PHC string); None: the user cannot sign in to the web app."""
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    sites: Mapped[list[Site]] = relationship(secondary="user_site")


class SignInThrottle(Base):
    """A counter of failed sign-ins that slows guessing down (governance/throttle.py).

    ``key`` says what is counted: ``pair:ADDRESS NAME`` (one name from one address),
    ``address:ADDRESS`` (any name from one address), ``global`` (every failure in the
    current window, which began at ``last_at``), or ``known:ADDRESS`` (an address where
    someone signed in successfully, last at ``last_at``; ``failures`` unused)."""

    __tablename__ = "sign_in_throttle"
    __table_args__ = (UniqueConstraint("organisation_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisation.id"))
    key: Mapped[str] = mapped_column(String(250))
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_at: Mapped[dt.datetime]
    """The last failure (or success, for a known address; the window's start, for global)."""
    blocked_until: Mapped[dt.datetime | None] = mapped_column()
    """Sign-ins this counter covers are refused until then."""


class LoginSession(Base):
    """A signed-in browser. The cookie holds a random token; only its SHA-256 is stored,
    so a copy of the database opens no session."""

    __tablename__ = "login_session"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("app_user.id", ondelete="CASCADE"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    """Sent back in every form of this session; a request without it changes nothing."""
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()
    ended_at: Mapped[dt.datetime | None] = mapped_column()

    user: Mapped[User] = relationship()


class ApiToken(Base):
    """A bearer token for an integration, acting as one user (with that user's role).
    Only its SHA-256 is stored; ``prefix`` tells tokens apart in lists."""

    __tablename__ = "api_token"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("app_user.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()
    last_used_at: Mapped[dt.datetime | None] = mapped_column()
    revoked_at: Mapped[dt.datetime | None] = mapped_column()

    user: Mapped[User] = relationship()


class SubjectIncident(Base):
    __tablename__ = "subject_incident"

    subject_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("subject.id", ondelete="CASCADE"), primary_key=True
    )
    incident_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("incident.id"), primary_key=True)


class SubjectSite(Base):
    __tablename__ = "subject_site"

    subject_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("subject.id", ondelete="CASCADE"), primary_key=True
    )
    site_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("site.id"), primary_key=True)


class Incident(Base):
    __tablename__ = "incident"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisation.id"))
    site_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("site.id"))
    occurred_at: Mapped[dt.datetime]
    category: Mapped[IncidentCategory] = mapped_column(_enum(IncidentCategory))
    description: Mapped[str] = mapped_column(EncryptedText("incident.description"))
    reporter_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("app_user.id"))
    evidence: Mapped[list[str]] = mapped_column(EncryptedJSON("incident.evidence"), default=list)
    """References to evidence held elsewhere (CCTV export names, crime numbers)."""
    police_reference: Mapped[str | None] = mapped_column(
        EncryptedText("incident.police_reference", length=100)
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    site: Mapped[Site] = relationship()
    reporter: Mapped[User] = relationship()


class Subject(Base):
    """A watchlist entry: someone linked to recorded incidents, for a limited time."""

    __tablename__ = "subject"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisation.id"))
    label: Mapped[str] = mapped_column(EncryptedText("subject.label", length=200))
    """How staff refer to the entry (a description or a reference, not necessarily a name)."""
    reason: Mapped[str] = mapped_column(EncryptedText("subject.reason"))
    status: Mapped[SubjectStatus] = mapped_column(_enum(SubjectStatus))
    restricted: Mapped[bool] = mapped_column(Boolean, default=False)
    """Processing restricted at the person's request: kept, never searched."""
    not_child_or_vulnerable: Mapped[bool] = mapped_column(Boolean)
    """The enroller's attestation at enrolment."""
    created_by_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("app_user.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    approved_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("app_user.id"))
    approved_at: Mapped[dt.datetime | None]
    expires_at: Mapped[dt.datetime]
    false_matches: Mapped[int] = mapped_column(Integer, default=0)
    status_note: Mapped[str | None] = mapped_column(EncryptedText("subject.status_note"))

    incidents: Mapped[list[Incident]] = relationship(secondary="subject_incident")
    sites: Mapped[list[Site]] = relationship(secondary="subject_site")
    images: Mapped[list[FaceImage]] = relationship(
        back_populates="subject", cascade="all, delete-orphan", passive_deletes=True
    )
    created_by: Mapped[User] = relationship(foreign_keys=[created_by_id])
    approved_by: Mapped[User | None] = relationship(foreign_keys=[approved_by_id])


class FaceImage(Base):
    """An enrolment photo: the encrypted file is ``files/face-image/<id>``."""

    __tablename__ = "face_image"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    subject_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("subject.id", ondelete="CASCADE"))
    quality: Mapped[float] = mapped_column(Float)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    subject: Mapped[Subject] = relationship(back_populates="images")
    templates: Mapped[list[Template]] = relationship(
        back_populates="image", cascade="all, delete-orphan", passive_deletes=True
    )


class Template(Base):
    """An embedding of one enrolment photo by one model, encrypted."""

    __tablename__ = "template"
    __table_args__ = (UniqueConstraint("face_image_id", "model_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    face_image_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("face_image.id", ondelete="CASCADE")
    )
    model_id: Mapped[str] = mapped_column(String(100))
    vector_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    image: Mapped[FaceImage] = relationship(back_populates="templates")


class Alert(Base):
    """A candidate match for human review; its snapshot is ``files/alert-crop/<id>``."""

    __tablename__ = "alert"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisation.id"))
    camera_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("camera.id"))
    subject_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("subject.id", ondelete="CASCADE"))
    occurred_at: Mapped[dt.datetime]
    score: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    model_id: Mapped[str] = mapped_column(String(100))
    probe_vector_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    sighting: Mapped[dict | None] = mapped_column(JSON)
    """How the face was seen (see ``MatchEvent.sighting``): counts and scores only."""
    status: Mapped[AlertStatus] = mapped_column(_enum(AlertStatus), default=AlertStatus.PENDING)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    camera: Mapped[Camera] = relationship()
    subject: Mapped[Subject] = relationship()
    reviews: Mapped[list[Review]] = relationship(
        back_populates="alert",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Review.created_at",
    )


class Review(Base):
    __tablename__ = "review"
    __table_args__ = (UniqueConstraint("alert_id", "user_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    alert_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("alert.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("app_user.id"))
    decision: Mapped[Decision] = mapped_column(_enum(Decision))
    note: Mapped[str | None] = mapped_column(EncryptedText("review.note"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    alert: Mapped[Alert] = relationship(back_populates="reviews")
    user: Mapped[User] = relationship()


class AuditEvent(Base):
    """One entry of the append-only audit log. ``mac`` chains it to the one before."""

    __tablename__ = "audit_event"
    __table_args__ = (UniqueConstraint("organisation_id", "sequence"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisation.id"))
    sequence: Mapped[int] = mapped_column(Integer)
    at: Mapped[dt.datetime]
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(100))
    object_type: Mapped[str | None] = mapped_column(String(50))
    object_id: Mapped[str | None] = mapped_column(String(100))
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    previous_mac: Mapped[bytes] = mapped_column(LargeBinary)
    mac: Mapped[bytes] = mapped_column(LargeBinary)


class OutboxMessage(Base):
    """A notification of an alert to one destination (a webhook or the MQTT broker),
    queued in the transaction that stored or decided the alert and kept until delivered
    or given up (``watchkeeper.notify``). Its payload holds names, scores and times,
    never a face or a vector; it is deleted with its alert."""

    __tablename__ = "notification_outbox"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    """Sent as the delivery id: a receiver that sees it twice has seen it once."""
    alert_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("alert.id", ondelete="CASCADE"), index=True
    )
    event: Mapped[str] = mapped_column(String(32))
    destination: Mapped[str] = mapped_column(String(120))
    """``webhook:<name>`` or ``mqtt``."""
    payload: Mapped[dict] = mapped_column(EncryptedJSON("notification_outbox.payload"))
    """Encrypted: it names the entry (its label)."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(index=True)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[dt.datetime | None] = mapped_column()
    failed_at: Mapped[dt.datetime | None] = mapped_column()
    """When the last allowed attempt failed; such a row is kept but not retried."""


class EstateDevice(Base):
    """A camera or recorder of the organisation's estate (``watchkeeper.estate``): found
    on the network, imported from an asset list, or a recognition camera. What it said
    about itself is in its probes; who made it is the identification's verdict."""

    __tablename__ = "estate_device"
    __table_args__ = (UniqueConstraint("site_id", "address"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisation.id"))
    site_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("site.id"))
    camera_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("camera.id", ondelete="SET NULL"), unique=True
    )
    """The recognition camera this device is, if it is one."""
    address: Mapped[str] = mapped_column(String(255))
    """IP address or host name."""
    ports: Mapped[dict] = mapped_column(JSON, default=dict)
    """Open ports by service (``http``, ``rtsp``, ``onvif`` ...), as found or imported."""
    origin: Mapped[str] = mapped_column(String(16))
    """``discovered``, ``imported`` or ``camera``."""
    location: Mapped[str | None] = mapped_column(String(200))
    label_brand: Mapped[str | None] = mapped_column(String(100))
    """The brand on the asset list or the box (not necessarily the maker)."""
    label_model: Mapped[str | None] = mapped_column(String(100))
    installer: Mapped[str | None] = mapped_column(String(200))
    maker: Mapped[str | None] = mapped_column(String(100))
    """The real maker, as identified; None until a probe or the label tells."""
    maker_confidence: Mapped[str | None] = mapped_column(String(16))
    model: Mapped[str | None] = mapped_column(String(100))
    firmware: Mapped[str | None] = mapped_column(String(200))
    serial: Mapped[str | None] = mapped_column(String(100))
    mac: Mapped[str | None] = mapped_column(String(17))
    capabilities: Mapped[list] = mapped_column(JSON, default=list)
    evidence: Mapped[list] = mapped_column(JSON, default=list)
    """Why the verdict names ``maker``: one line per clue, with its source."""
    first_seen_at: Mapped[dt.datetime | None] = mapped_column()
    last_seen_at: Mapped[dt.datetime | None] = mapped_column()
    """When it last answered a probe or a discovery."""
    latest_probe_id: Mapped[uuid.UUID | None] = mapped_column()
    """Its newest probe, whose findings are its current ones (no foreign key: the probe
    table points here)."""
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    site: Mapped[Site] = relationship()
    probes: Mapped[list[EstateProbe]] = relationship(
        back_populates="device",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="EstateProbe.at.desc()",
    )


class EstateProbe(Base):
    """One read-only look at a device: what it answered (or that it did not)."""

    __tablename__ = "estate_probe"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    device_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("estate_device.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    answered: Mapped[bool] = mapped_column(Boolean)
    seconds: Mapped[float] = mapped_column(Float)
    facts: Mapped[dict] = mapped_column(JSON, default=dict)
    """What the device said: ONVIF fields, banners, certificate subject, open ports."""
    problems: Mapped[list] = mapped_column(JSON, default=list)
    """What went wrong while asking (time-outs, oversized or malformed answers)."""

    device: Mapped[EstateDevice] = relationship(back_populates="probes")
    findings: Mapped[list[EstateFinding]] = relationship(
        back_populates="probe", cascade="all, delete-orphan", passive_deletes=True
    )


class EstateFinding(Base):
    """A risk rule that a probe's facts meet; a device's current findings are those of
    its latest probe."""

    __tablename__ = "estate_finding"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    probe_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("estate_probe.id", ondelete="CASCADE"), index=True
    )
    rule: Mapped[str] = mapped_column(String(50))
    severity: Mapped[str] = mapped_column(String(16))
    why: Mapped[str] = mapped_column(Text)
    evidence: Mapped[list] = mapped_column(JSON, default=list)

    probe: Mapped[EstateProbe] = relationship(back_populates="findings")


class EstateSensitiveSite(Base):
    """A site marked sensitive for the estate audit (UK guidance on sensitive sites
    applies in full there, and its devices come first in the replacement order)."""

    __tablename__ = "estate_sensitive_site"

    site_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("site.id", ondelete="CASCADE"), primary_key=True
    )
    note: Mapped[str | None] = mapped_column(String(500))
    marked_by: Mapped[str] = mapped_column(String(100))
    marked_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class WatchlistChange(Base):
    """A change to what may be searched (an entry approved, renewed, suspended,
    restricted, re-templated, erased or expired; or, with no entry, the whole watchlist
    after a model switch): the journal from which the core sends each edge the changes
    since the revision it holds (``watchkeeper.governance.edges``). ``revision`` only
    grows."""

    __tablename__ = "watchlist_change"

    revision: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisation.id"), index=True)
    subject_id: Mapped[uuid.UUID | None] = mapped_column(Uuid())
    """The entry that changed (not a foreign key: an erased entry's change outlives it);
    None: every entry (a model switch)."""
    changed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Edge(Base):
    """A store's edge box (`watchkeeper edge`): it runs its site's cameras with a copy of
    the site's templates and sends its alerts and audit events to the core. It enrols
    once with a one-time code, then authenticates with its own credential until revoked.
    The core keeps hashes of both, never the secrets."""

    __tablename__ = "edge"
    __table_args__ = (UniqueConstraint("organisation_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    organisation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organisation.id"))
    site_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("site.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    code_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    """SHA-256 of the one-time enrolment code; cleared once used."""
    code_expires_at: Mapped[dt.datetime | None]
    credential_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    """SHA-256 of the edge's credential; None until it enrols."""
    audit_key_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    """The key of the edge's own audit chain (HMAC), encrypted with the organisation's."""
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    enrolled_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
    last_contact_at: Mapped[dt.datetime | None]
    revision: Mapped[int] = mapped_column(Integer, default=0)
    """The watchlist revision the edge last said it holds."""
    audit_count: Mapped[int] = mapped_column(Integer, default=0)
    audit_head: Mapped[bytes] = mapped_column(LargeBinary, default=bytes(32))
    """The edge's audit chain as far as the core has verified and recorded it."""
    status: Mapped[dict | None] = mapped_column(JSON)
    """What the edge last said of itself: version, staleness, cameras and their health."""

    site: Mapped[Site] = relationship()
