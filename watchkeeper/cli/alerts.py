"""`watchkeeper alerts`: candidate matches and their review."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from watchkeeper.cli.app import app, stderr
from watchkeeper.cli.records import (
    JsonOption,
    OrganisationOption,
    UserOption,
    cli_errors,
    emit_fields,
    emit_json,
    emit_table,
    governed,
)
from watchkeeper.errors import PolicyError
from watchkeeper.governance import access
from watchkeeper.governance.alerts import alert_view, browse_alerts, review, show_alert
from watchkeeper.store.models import Alert, AlertStatus, Decision

alerts_app = typer.Typer(help="Alerts: candidate matches for human review.", no_args_is_help=True)
app.add_typer(alerts_app, name="alerts")

AlertId = Annotated[str, typer.Argument(help="Alert id (or its first 8 hex digits).")]


@alerts_app.command("list")
def alerts_list(
    ctx: typer.Context,
    status: Annotated[AlertStatus | None, typer.Option(help="Only this status.")] = None,
    user: UserOption = None,
    organisation: OrganisationOption = None,
    as_json: JsonOption = False,
) -> None:
    """Alerts, newest first."""
    with cli_errors(), governed(ctx, user, organisation) as g:
        rows = browse_alerts(g.session, g.store, g.organisation, g.actor, status)
    if as_json:
        emit_json(rows)
    else:
        emit_table(
            "Alerts",
            [r | {"id": r["id"][:8]} for r in rows],
            ["id", "occurred_at", "camera", "subject_label", "score", "status"],
        )


@alerts_app.command("show")
def alerts_show(
    ctx: typer.Context,
    alert: AlertId,
    snapshot: Annotated[
        Path | None, typer.Option(help="Write the decrypted snapshot (JPEG) to this new file.")
    ] = None,
    user: UserOption = None,
    organisation: OrganisationOption = None,
    as_json: JsonOption = False,
) -> None:
    """One alert with its reviews; optionally its snapshot for the reviewer."""
    with cli_errors(), governed(ctx, user, organisation) as g:
        found = access.owned(g.session, Alert, g.organisation.id, alert)
        if snapshot is not None and snapshot.exists():
            raise PolicyError(f"{snapshot} exists; give a new file name")
        view, image = show_alert(
            g.session, g.store, g.organisation, g.actor, found, snapshot is not None
        )
        if snapshot is not None and image is not None:
            snapshot.write_bytes(image)
    if as_json:
        emit_json(view)
        return
    reviews = view.pop("reviews")
    emit_fields(f"Alert {view['id']}", view)
    emit_table("Reviews", reviews, ["user", "decision", "at", "note"])


@alerts_app.command("review")
def alerts_review(
    ctx: typer.Context,
    alert: AlertId,
    decision: Annotated[Decision, typer.Option(help="Your decision.")],
    note: Annotated[str | None, typer.Option(help="Why.")] = None,
    user: UserOption = None,
    organisation: OrganisationOption = None,
    as_json: JsonOption = False,
) -> None:
    """Record your decision; two different reviewers must confirm before anyone acts."""
    with cli_errors(), governed(ctx, user, organisation) as g:
        found = access.owned(g.session, Alert, g.organisation.id, alert)
        view = alert_view(
            review(g.session, g.store, g.organisation, g.actor, found, decision, note, g.settings)
        )
    if as_json:
        emit_json(view)
    else:
        stderr.print(f"alert {alert} is {view['status']}")
