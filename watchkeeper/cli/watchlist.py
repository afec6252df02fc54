"""`watchkeeper incidents` and `watchkeeper subjects`: the stored watchlist."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import select

from watchkeeper.cli.app import app, stderr
from watchkeeper.cli.records import (
    JsonOption,
    OrganisationOption,
    UserOption,
    cli_errors,
    emit_fields,
    emit_json,
    emit_table,
    expiry,
    governed,
    parse_when,
)
from watchkeeper.errors import ConfigError, ImageError
from watchkeeper.governance import access
from watchkeeper.governance.incidents import incident_view, record_incident
from watchkeeper.governance.subjects import (
    EXPIRED,
    EnrolmentPhoto,
    PhotosRefused,
    approve,
    enrol,
    erase,
    list_subjects,
    renew,
    restrict,
    retemplate,
    show_subject,
    subject_view,
    suspend,
)
from watchkeeper.store.models import Incident, IncidentCategory, Subject, utcnow

incidents_app = typer.Typer(help="Recorded incidents that entries point to.", no_args_is_help=True)
subjects_app = typer.Typer(help="Watchlist entries (subjects of interest).", no_args_is_help=True)
app.add_typer(incidents_app, name="incidents")
app.add_typer(subjects_app, name="subjects")

SubjectId = Annotated[str, typer.Argument(help="Entry id (or its first 8 hex digits).")]


@incidents_app.command("add")
def incidents_add(
    ctx: typer.Context,
    site: Annotated[str, typer.Option(help="Site where it happened.")],
    category: Annotated[IncidentCategory, typer.Option(help="What kind of incident.")],
    description: Annotated[str, typer.Option(help="What happened.")],
    at: Annotated[
        str | None, typer.Option(help="When (ISO date-time, UTC if no zone); default now.")
    ] = None,
    evidence: Annotated[
        list[str] | None, typer.Option(help="Reference to evidence held elsewhere (repeatable).")
    ] = None,
    police_reference: Annotated[str | None, typer.Option(help="Crime or police reference.")] = None,
    user: UserOption = None,
    organisation: OrganisationOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record an incident; the acting user is its reporter."""
    with cli_errors(), governed(ctx, user, organisation) as g:
        incident = record_incident(
            g.session,
            g.store.keys,
            g.organisation,
            g.actor,
            site=access.site(g.session, g.organisation.id, site),
            occurred_at=parse_when(at) if at else utcnow(),
            category=category,
            description=description,
            evidence=evidence or [],
            police_reference=police_reference,
        )
        view = incident_view(incident)
    if as_json:
        emit_json(view)
    else:
        typer.echo(view["id"])


@incidents_app.command("list")
def incidents_list(
    ctx: typer.Context,
    user: UserOption = None,
    organisation: OrganisationOption = None,
    as_json: JsonOption = False,
) -> None:
    """The organisation's incidents, newest first."""
    with cli_errors(), governed(ctx, user, organisation) as g:
        rows = [
            incident_view(i)
            for i in g.session.scalars(
                select(Incident)
                .where(Incident.organisation_id == g.organisation.id)
                .order_by(Incident.occurred_at.desc())
            )
        ]
    if as_json:
        emit_json(rows)
    else:
        emit_table("Incidents", rows, ["id", "occurred_at", "site", "category", "description"])


@subjects_app.command("add")
def subjects_add(
    ctx: typer.Context,
    label: Annotated[str, typer.Option(help="How staff refer to the entry.")],
    reason: Annotated[str, typer.Option(help="Why this person is on the watchlist.")],
    incident: Annotated[list[str], typer.Option(help="Incident id (repeatable; at least one).")],
    photo: Annotated[
        list[Path], typer.Option(help="Enrolment photo showing one face (repeatable).")
    ],
    attest_not_child_or_vulnerable: Annotated[
        bool,
        typer.Option(
            "--attest-not-child-or-vulnerable",
            help="Required: you attest the person is not known to be a child or vulnerable.",
        ),
    ] = False,
    site: Annotated[
        list[str] | None,
        typer.Option(help="Site that searches the entry (repeatable); default: incidents' sites."),
    ] = None,
    expires: Annotated[str | None, typer.Option(help="Expiry date (YYYY-MM-DD, UTC).")] = None,
    days: Annotated[int | None, typer.Option(help="Expiry in days from now.")] = None,
    user: UserOption = None,
    organisation: OrganisationOption = None,
    as_json: JsonOption = False,
) -> None:
    """Propose a watchlist entry; it is searched only after someone else approves it."""
    with cli_errors():
        photos = []
        for path in photo:
            try:
                photos.append(EnrolmentPhoto(path.name, path.read_bytes()))
            except OSError as exc:
                raise ImageError(f"{path}: {exc.strerror or exc}") from None
        try:
            with governed(ctx, user, organisation) as g:
                subject = enrol(
                    g.session,
                    g.store,
                    g.organisation,
                    g.actor,
                    g.face_models(),
                    label=label,
                    reason=reason,
                    incidents=[
                        access.owned(g.session, Incident, g.organisation.id, i) for i in incident
                    ],
                    photos=photos,
                    attest_not_child_or_vulnerable=attest_not_child_or_vulnerable,
                    sites=[access.site(g.session, g.organisation.id, s) for s in site or []],
                    expires_at=expiry(expires, days),
                )
                view = subject_view(g.session, subject, utcnow())
        except PhotosRefused as refused:
            if as_json:
                emit_json({"refused": {k: list(v) for k, v in refused.refusals.items()}})
            raise
    if as_json:
        emit_json(view)
    else:
        typer.echo(view["id"])
        stderr.print("entry pending: another approver must run `watchkeeper subjects approve`")


@subjects_app.command("approve")
def subjects_approve(
    ctx: typer.Context,
    subject: SubjectId,
    user: UserOption = None,
    organisation: OrganisationOption = None,
) -> None:
    """Approve a pending entry (or reinstate a suspended one); never one's own."""
    with cli_errors(), governed(ctx, user, organisation) as g:
        found = access.owned(g.session, Subject, g.organisation.id, subject)
        approve(g.session, g.store.keys, g.organisation, g.actor, found)
    stderr.print(f"entry {subject} is active")


@subjects_app.command("list")
def subjects_list(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option(help="Only this status: pending, active, suspended, expired.")
    ] = None,
    user: UserOption = None,
    organisation: OrganisationOption = None,
    as_json: JsonOption = False,
) -> None:
    """The watchlist entries (no biometric data)."""
    if status is not None and status not in ("pending", "active", "suspended", EXPIRED):
        raise typer.BadParameter(f"unknown status {status!r}", param_hint="--status")
    with cli_errors(), governed(ctx, user, organisation) as g:
        rows = list_subjects(g.session, g.store.keys, g.organisation, g.actor, status)
    if as_json:
        emit_json(rows)
    else:
        emit_table(
            "Watchlist",
            [r | {"id": r["id"][:8]} for r in rows],
            [
                "id",
                "label",
                "status",
                "restricted",
                "expires_at",
                "sites",
                "photos",
                "false_matches",
            ],
        )


@subjects_app.command("show")
def subjects_show(
    ctx: typer.Context,
    subject: SubjectId,
    user: UserOption = None,
    organisation: OrganisationOption = None,
    as_json: JsonOption = False,
) -> None:
    """Everything staff may see about one entry."""
    with cli_errors(), governed(ctx, user, organisation) as g:
        found = access.owned(g.session, Subject, g.organisation.id, subject)
        view = show_subject(g.session, g.store.keys, g.organisation, g.actor, found)
    if as_json:
        emit_json(view)
        return
    simple = {k: v for k, v in view.items() if not isinstance(v, list) or k == "sites"}
    emit_fields(f"Entry {view['id']}", simple)
    emit_table(
        "Incidents", view["incidents"], ["id", "occurred_at", "site", "category", "description"]
    )
    emit_table("Photos", view["images"], ["id", "quality", "size", "models"])
    emit_table("Alerts", view["alerts"], ["id", "occurred_at", "status"])


@subjects_app.command("renew")
def subjects_renew(
    ctx: typer.Context,
    subject: SubjectId,
    reason: Annotated[str, typer.Option(help="Why the entry is still needed.")],
    expires: Annotated[str | None, typer.Option(help="New expiry (YYYY-MM-DD, UTC).")] = None,
    days: Annotated[int | None, typer.Option(help="New expiry in days from now.")] = None,
    user: UserOption = None,
    organisation: OrganisationOption = None,
) -> None:
    """Set a new expiry, within the policy maximum from today."""
    with cli_errors(), governed(ctx, user, organisation) as g:
        new_expiry = expiry(expires, days)
        if new_expiry is None:
            raise ConfigError("give the new expiry with --expires or --days")
        found = access.owned(g.session, Subject, g.organisation.id, subject)
        renew(g.session, g.store.keys, g.organisation, g.actor, found, new_expiry, reason)
    stderr.print(f"entry {subject} now expires {new_expiry:%Y-%m-%d}")


@subjects_app.command("suspend")
def subjects_suspend(
    ctx: typer.Context,
    subject: SubjectId,
    note: Annotated[str, typer.Option(help="Why.")],
    user: UserOption = None,
    organisation: OrganisationOption = None,
) -> None:
    """Stop searching an entry until it is approved again."""
    with cli_errors(), governed(ctx, user, organisation) as g:
        found = access.owned(g.session, Subject, g.organisation.id, subject)
        suspend(g.session, g.store.keys, g.organisation, g.actor, found, note)
    stderr.print(f"entry {subject} suspended")


@subjects_app.command("restrict")
def subjects_restrict(
    ctx: typer.Context,
    subject: SubjectId,
    note: Annotated[str, typer.Option(help="The request or reason.")],
    lift: Annotated[bool, typer.Option("--lift", help="Lift the restriction.")] = False,
    user: UserOption = None,
    organisation: OrganisationOption = None,
) -> None:
    """Restrict processing at the person's request: the entry is kept but never searched."""
    with cli_errors(), governed(ctx, user, organisation) as g:
        found = access.owned(g.session, Subject, g.organisation.id, subject)
        restrict(g.session, g.store.keys, g.organisation, g.actor, found, not lift, note)
    stderr.print(f"entry {subject} {'no longer restricted' if lift else 'restricted'}")


@subjects_app.command("erase")
def subjects_erase(
    ctx: typer.Context,
    subject: SubjectId,
    reason: Annotated[str, typer.Option(help="Why (an erasure request, withdrawn, ...).")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    user: UserOption = None,
    organisation: OrganisationOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete everything held about an entry: photos, templates, alerts, snapshots."""
    if not yes and not typer.confirm(f"Erase entry {subject} and everything about it?"):
        raise typer.Exit(1)
    with cli_errors(), governed(ctx, user, organisation) as g:
        found = access.owned(g.session, Subject, g.organisation.id, subject)
        removed = vars(erase(g.session, g.store, g.organisation, g.actor, found, reason))
    if as_json:
        emit_json(removed)
    else:
        stderr.print(
            "erased: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in removed.items())
        )


@subjects_app.command("retemplate")
def subjects_retemplate(
    ctx: typer.Context,
    user: UserOption = None,
    organisation: OrganisationOption = None,
    as_json: JsonOption = False,
) -> None:
    """Embed every stored photo that has no template of the model in use yet (to move
    to another model, `watchkeeper models use`)."""
    with cli_errors(), governed(ctx, user, organisation) as g:
        counts = retemplate(g.session, g.store, g.organisation, g.actor, g.face_models())
    if as_json:
        emit_json(counts)
    else:
        stderr.print(
            f"{counts['templates']} templates made; {counts['unusable_photos']} photos unusable"
        )
