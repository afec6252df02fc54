"""Enrolment and approval throughput of the stored watchlist, done as the CLI does them.

A temporary data folder and encryption key, a new store (SQLite in the data
folder, a PostgreSQL database given by URL, or with --postgres a temporary
PostgreSQL server) and one organisation with a reporter who enrols and a
manager who approves. The first N LFW identities (sorted by name) that have a
usable single-face photo are enrolled with one photo each, each enrolment in its
own transaction; a refused photo is counted with its reasons and the identity's
next photo is tried. Then every entry is approved, each in its own transaction.

Enrolment time is split into the face models' part (from the detector's start to
the embedder's end: detection, alignment, quality gate, embedding) and the
store's part (everything else in the transaction: policy checks, photo decoding
and re-encoding, AES-GCM encryption, the encrypted file, rows, the audit chain,
the commit). Prints one JSON object.

    uv run python benchmarks/enrolment.py [--subjects 100] [--database-url URL | --postgres]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import statistics
import tempfile
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs.api
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from watchkeeper.config import load_settings
from watchkeeper.errors import PolicyError
from watchkeeper.governance import access, audit
from watchkeeper.governance.incidents import record_incident
from watchkeeper.governance.organisation import add_site, add_user, create_organisation
from watchkeeper.governance.subjects import EnrolmentPhoto, PhotosRefused, approve, enrol
from watchkeeper.pipeline import FaceModels
from watchkeeper.store.crypto import encode_key, generate_key
from watchkeeper.store.database import Store, database_url, open_store
from watchkeeper.store.models import (
    AuditEvent,
    Incident,
    IncidentCategory,
    Organisation,
    Role,
    Subject,
    SubjectStatus,
    utcnow,
)
from watchkeeper.vision.detection import FaceDetector
from watchkeeper.vision.embedding import Embeddings, FaceEmbedder

SHARED = Path(os.environ.get("WATCHKEEPER_SHARED", Path(__file__).resolve().parents[2] / "shared"))
REPORTER = "reporter"
MANAGER = "manager"


class FaceClock:
    """When the face models started and finished on the current enrolment."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.finished: float | None = None

    def reset(self) -> None:
        self.started = self.finished = None

    @property
    def seconds(self) -> float:
        assert self.started is not None
        assert self.finished is not None
        return self.finished - self.started


class TimedDetector:
    """The detector, noting when the first detection of an enrolment starts."""

    def __init__(self, inner: FaceDetector, clock: FaceClock) -> None:
        self._inner = inner
        self._clock = clock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def detect(self, image: np.ndarray) -> Any:
        if self._clock.started is None:
            self._clock.started = time.perf_counter()
        return self._inner.detect(image)


class TimedEmbedder:
    """The embedder, noting when an enrolment's embedding ends."""

    def __init__(self, inner: FaceEmbedder, clock: FaceClock) -> None:
        self._inner = inner
        self._clock = clock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def embed(self, chips: Sequence[np.ndarray]) -> Embeddings:
        embeddings = self._inner.embed(chips)
        self._clock.finished = time.perf_counter()
        return embeddings


def seconds_summary(values: list[float]) -> dict[str, float]:
    return {
        "total_s": round(sum(values), 3),
        "per_subject_s": round(statistics.fmean(values), 4) if values else 0.0,
        "median_s": round(statistics.median(values), 4) if values else 0.0,
        "max_s": round(max(values), 4) if values else 0.0,
    }


def reason_kind(reason: str) -> str:
    """A refusal reason without its measurements, for counting."""
    return re.sub(r"[-+]?\d+(?:\.\d+)?", "#", reason)


def set_up(store: Store) -> tuple[uuid.UUID, uuid.UUID]:
    """An organisation with a site, a reporter, a manager and one incident."""
    with store.session() as session:
        organisation, admin = create_organisation(
            session, store.keys, f"Enrolment benchmark {uuid.uuid4().hex[:8]}", "admin"
        )
        site = add_site(session, store.keys, organisation, admin, "Leeds")
        reporter = add_user(
            session, store.keys, organisation, admin, REPORTER, Role.REPORTER, [site]
        )
        add_user(session, store.keys, organisation, admin, MANAGER, Role.MANAGER, [site])
        incident = record_incident(
            session,
            store.keys,
            organisation,
            reporter,
            site=site,
            occurred_at=utcnow(),
            category=IncidentCategory.THEFT,
            description="benchmark incident",
        )
        return organisation.id, incident.id


def run(
    subjects: int, lfw: Path, url: str | None, models_dir: Path | None, data_dir: Path
) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": url,
        "key": encode_key(generate_key()),
    }
    if models_dir is not None:
        overrides["models_dir"] = models_dir
    settings = load_settings(**overrides)
    mark = time.perf_counter()
    loaded = FaceModels.load(settings)
    model_load = time.perf_counter() - mark
    clock = FaceClock()
    models = dataclasses.replace(
        loaded,
        detector=TimedDetector(loaded.detector, clock),  # type: ignore[arg-type]
        embedder=TimedEmbedder(loaded.embedder, clock),  # type: ignore[arg-type]
    )

    store = open_store(settings, create=True)
    try:
        organisation_id, incident_id = set_up(store)
        enrolled: list[uuid.UUID] = []
        totals: list[float] = []
        faces: list[float] = []
        refused: list[dict[str, Any]] = []
        refused_seconds = 0.0
        skipped: list[str] = []
        identities = sorted(p for p in lfw.iterdir() if p.is_dir())
        for identity in identities:
            if len(enrolled) == subjects:
                break
            for photo in sorted(identity.glob("*.jpg")):
                data = photo.read_bytes()
                clock.reset()
                started = time.perf_counter()
                try:
                    with store.session() as session:
                        organisation = session.get_one(Organisation, organisation_id)
                        actor = access.user(session, organisation_id, REPORTER)
                        incident = access.owned(
                            session, Incident, organisation_id, str(incident_id)
                        )
                        subject = enrol(
                            session,
                            store,
                            organisation,
                            actor,
                            models,
                            label=identity.name.replace("_", " "),
                            reason="benchmark",
                            incidents=[incident],
                            photos=[EnrolmentPhoto(photo.name, data)],
                            attest_not_child_or_vulnerable=True,
                        )
                        subject_id = subject.id
                except PhotosRefused as exc:
                    refused_seconds += time.perf_counter() - started
                    refused.append({"photo": photo.name, "reasons": list(exc.refusals[photo.name])})
                    continue
                totals.append(time.perf_counter() - started)
                faces.append(clock.seconds)
                enrolled.append(subject_id)
                break
            else:
                skipped.append(identity.name)
        if len(enrolled) < subjects:
            raise SystemExit(f"only {len(enrolled)} of {subjects} identities could be enrolled")

        approvals: list[float] = []
        approval_refusals: Counter[str] = Counter()
        for subject_id in enrolled:
            started = time.perf_counter()
            try:
                with store.session() as session:
                    organisation = session.get_one(Organisation, organisation_id)
                    actor = access.user(session, organisation_id, MANAGER)
                    subject = access.owned(session, Subject, organisation_id, str(subject_id))
                    approve(session, store.keys, organisation, actor, subject)
            except PolicyError as exc:
                approval_refusals[str(exc)] += 1
                continue
            approvals.append(time.perf_counter() - started)

        with store.session() as session:
            organisation = session.get_one(Organisation, organisation_id)
            mark = time.perf_counter()
            report = audit.verify(session, store.keys, organisation)
            verify_seconds = time.perf_counter() - mark
            active = session.scalar(
                select(func.count())
                .select_from(Subject)
                .where(
                    Subject.organisation_id == organisation_id,
                    Subject.status == SubjectStatus.ACTIVE,
                )
            )
            events = session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.organisation_id == organisation_id)
            )
    finally:
        store.close()

    stores = [total - face for total, face in zip(totals, faces, strict=True)]
    return {
        "database": make_url(database_url(settings)).get_backend_name(),
        "subjects": len(enrolled),
        "detector": loaded.detector.name,
        "embedder": loaded.embedder.model_id,
        "model_load_s": round(model_load, 3),
        "enrolment": seconds_summary(totals)
        | {
            "face_models": seconds_summary(faces),
            "store": seconds_summary(stores),
        },
        "refused": {
            "photos": len(refused),
            "seconds": round(refused_seconds, 3),
            "reasons": dict(Counter(reason_kind(r) for item in refused for r in item["reasons"])),
            "detail": refused,
            "identities_without_a_usable_photo": skipped,
        },
        "approval": seconds_summary(approvals)
        | {"approved": len(approvals), "refused": dict(approval_refusals)},
        "active_entries": active,
        "audit": {"events": events, "intact": report.intact, "verify_s": round(verify_seconds, 3)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=100, help="Entries to enrol (100).")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--database-url", help="SQLAlchemy URL of an empty database (default: SQLite, temporary)."
    )
    where.add_argument(
        "--postgres", action="store_true", help="Start a temporary PostgreSQL server (pgserver)."
    )
    parser.add_argument(
        "--lfw",
        type=Path,
        default=SHARED / "eval" / "data" / "lfw-deepfunneled",
        help="LFW folder.",
    )
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=None
        if os.environ.get("WATCHKEEPER_MODELS_DIR") or not (SHARED / "models").is_dir()
        else SHARED / "models",
        help="Model folder (default: WATCHKEEPER_MODELS_DIR, else the shared models folder).",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="watchkeeper-bench-") as folder:
        url = args.database_url
        server = None
        if args.postgres:
            # pgserver asks platformdirs for a runtime folder that containers do not set.
            warnings.filterwarnings("ignore", category=platformdirs.api.RuntimeDirWarning)
            import pgserver

            server = pgserver.get_server(Path(folder) / "postgres", cleanup_mode="stop")
            url = server.get_uri().replace("postgresql://", "postgresql+psycopg://")
        try:
            result = run(args.subjects, args.lfw, url, args.models_dir, Path(folder) / "data")
        finally:
            if server is not None:
                server.cleanup()
    print(json.dumps(result, indent=2))  # noqa: T201 - a command-line report


if __name__ == "__main__":
    main()
