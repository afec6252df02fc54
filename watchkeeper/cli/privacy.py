"""`watchkeeper purge`, `audit` and `dsar`: retention, the audit log and subject access."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import select

from watchkeeper.cli.app import app, fail, stderr
from watchkeeper.cli.records import (
    JsonOption,
    OrganisationOption,
    UserOption,
    cli_errors,
    emit_json,
    emit_table,
    governed,
)
from watchkeeper.errors import AuditError, ConfigError, ImageError
from watchkeeper.governance import access, audit, subject_access
from watchkeeper.governance.retention import purge
from watchkeeper.models.registry import ModelRegistry
from watchkeeper.store.database import open_store
from watchkeeper.store.models import AuditEvent, Organisation, Subject

audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
dsar_app = typer.Typer(help="Subject access requests.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
app.add_typer(dsar_app, name="dsar")


@app.command("purge")
def purge_command(
    ctx: typer.Context,
    user: UserOption = None,
    organisation: OrganisationOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete expired entries and old alerts with all their files, now."""
    with cli_errors():
        if not user:
            raise ConfigError("say who is purging with --user NAME (or WATCHKEEPER_USER)")
        store = open_store(ctx.obj.settings())
        try:
            reports, orphans = purge(store, user, organisation)
        finally:
            store.close()
    report = reports[0]
    result = {
        "expired_subjects": report.subject_ids,
        "old_alerts": report.alert_ids,
        "removed": vars(report.removed),
        "unowned_files": orphans,
    }
    if as_json:
        emit_json(result)
    else:
        stderr.print(
            f"deleted {len(report.subject_ids)} expired entries and {len(report.alert_ids)} "
            f"old alerts ({', '.join(f'{v} {k}' for k, v in vars(report.removed).items())}); "
            f"{orphans} unowned files"
        )


@audit_app.command("verify")
def audit_verify(
    ctx: typer.Context,
    as_json: JsonOption = False,
) -> None:
    """Check every organisation's audit chain; exit 12 if anything was changed."""
    with cli_errors():
        store = open_store(ctx.obj.settings())
        try:
            with store.session() as session:
                reports = [
                    audit.verify(session, store.keys, o)
                    for o in session.scalars(select(Organisation).order_by(Organisation.name))
                ]
        finally:
            store.close()
    if as_json:
        emit_json(
            [
                {
                    "organisation": r.organisation,
                    "events": r.events,
                    "intact": r.intact,
                    "problems": r.problems,
                }
                for r in reports
            ]
        )
    else:
        for r in reports:
            if r.intact:
                stderr.print(f"{r.organisation}: {r.events} events, chain intact")
            else:
                stderr.print(f"[bold red]{r.organisation}: {len(r.problems)} problems[/bold red]")
                for problem in r.problems:
                    stderr.print(f"  {problem}", markup=False)
    if not all(r.intact for r in reports):
        raise fail(AuditError("the audit log was tampered with"))


MAX_AUDIT_LIST = 100_000
"""The most events `audit list` shows at once (the audit page exports more, as CSV)."""


@audit_app.command("list")
def audit_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="Newest events to show.")] = 50,
    user: UserOption = None,
    organisation: OrganisationOption = None,
    as_json: JsonOption = False,
) -> None:
    """The newest audit events."""
    with cli_errors(), governed(ctx, user, organisation) as g:
        if not 1 <= limit <= MAX_AUDIT_LIST:
            raise ConfigError(f"--limit must be 1 to {MAX_AUDIT_LIST:,}, not {limit}")
        rows = [
            {
                "sequence": e.sequence,
                "at": e.at.isoformat(),
                "actor": e.actor,
                "action": e.action,
                "object": e.object_id,
                "details": e.details,
            }
            for e in g.session.scalars(
                select(AuditEvent)
                .where(AuditEvent.organisation_id == g.organisation.id)
                .order_by(AuditEvent.sequence.desc())
                .limit(limit)
            )
        ]
    if as_json:
        emit_json(rows)
    else:
        emit_table(
            "Audit log",
            [r | {"details": json.dumps(r["details"])} for r in rows],
            ["sequence", "at", "actor", "action", "object", "details"],
        )


@dsar_app.command("search")
def dsar_search(
    ctx: typer.Context,
    photo: Annotated[Path, typer.Argument(help="A photo of the person making the request.")],
    threshold: Annotated[
        float | None,
        typer.Option(help="Cosine threshold; default the model's most lenient calibrated one."),
    ] = None,
    user: UserOption = None,
    organisation: OrganisationOption = None,
    as_json: JsonOption = False,
) -> None:
    """Find entries and alerts that may be this person (watchlist and alert archive only)."""
    with cli_errors(), governed(ctx, user, organisation) as g:
        models = g.face_models()
        if threshold is None:
            calibration = ModelRegistry(g.settings.models_dir).spec(g.embedder).calibration
            threshold = (
                calibration.threshold_for(1) if calibration else g.settings.matching.threshold
            )
        if threshold is None:
            raise ConfigError("no calibrated threshold for this model; give --threshold")
        try:
            data = photo.read_bytes()
        except OSError as exc:
            raise ImageError(f"{photo}: {exc.strerror or exc}") from None
        hits = subject_access.search(
            g.session, g.store, g.organisation, g.actor, models, data, photo.name, threshold
        )
    rows = [vars(hit) | {"score": round(hit.score, 4)} for hit in hits]
    if as_json:
        emit_json({"threshold": round(threshold, 4), "hits": rows})
    else:
        emit_table(
            f"Possible matches (threshold {threshold:.3f})",
            rows,
            ["kind", "subject_id", "alert_id", "score"],
        )


@dsar_app.command("export")
def dsar_export(
    ctx: typer.Context,
    subject: Annotated[str, typer.Argument(help="Entry id (or its first 8 hex digits).")],
    out: Annotated[Path, typer.Option(help="New folder to write subject.json and images to.")],
    user: UserOption = None,
    organisation: OrganisationOption = None,
) -> None:
    """Export everything held about an entry: JSON and images."""
    with cli_errors(), governed(ctx, user, organisation) as g:
        found = access.owned(g.session, Subject, g.organisation.id, subject)
        document = subject_access.export(g.session, g.store, g.organisation, g.actor, found, out)
    stderr.print(
        f"wrote {out}: {len(document['images'])} photos, {len(document['alerts'])} alerts, "
        f"{len(document['audit'])} audit events"
    )
