"""`watchkeeper backup` and `restore`: the database and the encrypted files in one archive
that never holds the key (see ``watchkeeper.service.backup``)."""

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
    emit_json,
)
from watchkeeper.errors import ConfigError
from watchkeeper.service import backup as backups
from watchkeeper.store.database import open_store


def _size(count: int) -> str:
    size = float(count)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} bytes"


@app.command("backup")
def backup_command(
    ctx: typer.Context,
    out: Annotated[Path, typer.Argument(help="The archive to write (a .tar; never overwritten).")],
    user: UserOption = None,
    organisation: OrganisationOption = None,
    as_json: JsonOption = False,
) -> None:
    """Back up the database and the encrypted photos and snapshots to one archive, while
    the service runs (administrators only; audited). The key is not in it: keep the key
    separately."""
    with cli_errors():
        if not user:
            raise ConfigError("say who is backing up with --user NAME (or WATCHKEEPER_USER)")
        store = open_store(ctx.obj.settings())
        try:
            manifest = backups.backup(store, out, user, organisation)
        finally:
            store.close()
    counts = manifest.counts()
    if as_json:
        emit_json({"archive": str(out), "backup_id": str(manifest.backup_id), **counts})
        return
    stderr.print(
        f"backup {str(manifest.backup_id)[:8]} written to {out}: {counts['subjects']} "
        f"entries, {counts['alerts']} alerts, {counts['audit_events']} audit events, "
        f"{counts['files']} files ({_size(counts['file_bytes'])}) and the "
        f"{manifest.database_kind} database ({_size(counts['database_bytes'])}). "
        "The key is not in it: keep the key separately.",
        markup=False,
    )


@app.command("restore")
def restore_command(
    ctx: typer.Context,
    archive: Annotated[Path, typer.Argument(help="An archive written by `watchkeeper backup`.")],
    user: Annotated[
        str | None,
        typer.Option(
            "--user",
            envvar="WATCHKEEPER_USER",
            help="The administrator (in the backup) restoring it; recorded in the audit "
            "log. Without it: the console.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace the data the target database and folder hold."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Restore a backup into the configured database and data folder, with the key it
    was made with (exit 8 with another key, before anything is written). Refused into a
    target that holds data (unless --force) and while `serve` runs on it. Checks every
    checksum first and the audit log afterwards."""
    with cli_errors():
        report = backups.restore(archive, ctx.obj.settings(), user, force)
    manifest = report.manifest
    if as_json:
        emit_json(
            {
                "backup_id": str(manifest.backup_id),
                "created_at": manifest.created_at.isoformat(),
                "database": manifest.database_kind,
                "tables": report.tables,
                "files": report.files,
                "audit": [
                    {"organisation": r.organisation, "events": r.events, "intact": r.intact}
                    for r in report.audit
                ],
            }
        )
        return
    tables = report.tables
    stderr.print(
        f"restored backup {str(manifest.backup_id)[:8]} of "
        f"{manifest.created_at:%Y-%m-%d %H:%M} UTC ({manifest.database_kind}): "
        f"{tables.get('subject', 0)} entries, {tables.get('alert', 0)} alerts, "
        f"{tables.get('incident', 0)} incidents, {tables.get('app_user', 0)} users, "
        f"{report.files} files",
        markup=False,
    )
    for r in report.audit:
        stderr.print(f"{r.organisation}: {r.events} audit events, chain intact", markup=False)
