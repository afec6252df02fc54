"""`watchkeeper models use` and `models status`: the model the stored watchlist is
searched with, and moving it to another one."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from watchkeeper.cli.app import stderr
from watchkeeper.cli.models import models_app
from watchkeeper.cli.records import (
    JsonOption,
    OrganisationOption,
    UserOption,
    cli_errors,
    emit_json,
    emit_table,
    stdout,
)
from watchkeeper.errors import ConfigError, PolicyError
from watchkeeper.governance import access
from watchkeeper.governance.model_switch import (
    SwitchReport,
    holdings,
    model_in_use,
    switch_model,
    unsearchable_entries,
)
from watchkeeper.models.registry import ModelRegistry
from watchkeeper.pipeline import FaceModels
from watchkeeper.store.database import open_store


@models_app.command("use")
def models_use(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Registry name of the identity embedder.")],
    accept_unusable: Annotated[
        bool,
        typer.Option(
            "--accept-unusable",
            help="Switch even if some entries have no photo the new model can use; those "
            "entries (listed) are no longer searched.",
        ),
    ] = False,
    drop_old: Annotated[
        bool,
        typer.Option(
            "--drop-old",
            help="Once switched, delete the templates of every other model (default: keep "
            "them, so that switching back is instant).",
        ),
    ] = False,
    user: UserOption = None,
    organisation: OrganisationOption = None,
    as_json: JsonOption = False,
) -> None:
    """Move the stored watchlist to another identity model: every entry is re-embedded
    from its stored photos (one transaction per entry, audited) while cameras go on
    with the old model; the new one is used once every entry has its templates. Exit
    9 when entries have no usable photo (listed) and --accept-unusable is not given."""
    with cli_errors():
        if not user:
            raise ConfigError("say who is acting with --user NAME (or WATCHKEEPER_USER)")
        settings = ctx.obj.settings()
        store = open_store(settings)
        try:
            with store.session() as session:
                found = access.organisation(session, organisation)
                organisation_id = found.id
                access.user(session, organisation_id, user)  # "no user" before models load
            with stderr.status(f"loading {name}", spinner="dots"):
                models = FaceModels.load(settings, name)
            with Progress(
                TextColumn("re-embedding entries"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=stderr,
                transient=True,
            ) as progress:
                task = progress.add_task("entries", total=None)
                report = switch_model(
                    store,
                    settings,
                    organisation_id,
                    user,
                    models,
                    accept_unusable=accept_unusable,
                    drop_old=drop_old,
                    progress=lambda done, total: progress.update(task, completed=done, total=total),
                )
        finally:
            store.close()
        show(report, as_json)
        if report.unusable and not report.switched:
            raise PolicyError(
                f"{len(report.unusable)} entries have no photo that {name} can use, so the "
                f"watchlist is still searched with {report.previous}; erase or re-enrol them, "
                "or switch with --accept-unusable (they are then no longer searched)"
            )


def show(report: SwitchReport, as_json: bool) -> None:
    if as_json:
        emit_json(report.as_dict())
        return
    if report.already:
        stderr.print(f"{report.model} is already the model in use; nothing to do")
        return
    if report.unusable:
        emit_table(
            f"Entries with no photo that {report.model} can use",
            [
                {
                    "entry": entry.subject_id[:8],
                    "label": entry.label,
                    "status": entry.status,
                    "photos": [
                        f"{image[:8]}: {', '.join(reasons)}"
                        for image, reasons in entry.photos.items()
                    ],
                }
                for entry in report.unusable
            ],
            ["entry", "label", "status", "photos"],
        )
    done = (
        f"{report.retemplated} of {report.entries} entries re-embedded, "
        f"{report.templates} templates made"
    )
    if report.switched and report.previous == report.model:
        stderr.print(f"{report.model} is now the model in use, whatever the configuration says")
    elif report.switched:
        dropped = (
            f"; {report.dropped_templates} templates of other models deleted"
            if report.dropped_templates
            else "; the old model's templates are kept (switching back is instant)"
        )
        stderr.print(
            f"switched from {report.previous} to {report.model}: {done}{dropped}. Running "
            "cameras restart with it at their next watchlist reload."
        )
    else:
        stderr.print(f"not switched: {done}")


@models_app.command("status")
def models_status(
    ctx: typer.Context,
    organisation: OrganisationOption = None,
    as_json: JsonOption = False,
) -> None:
    """The model the stored watchlist is searched with, the templates held per model
    (counts only) and how many entries the model in use cannot search."""
    with cli_errors():
        settings = ctx.obj.settings()
        registry = ModelRegistry(settings.models_dir)
        store = open_store(settings)
        try:
            with store.session() as session:
                found = access.organisation(session, organisation)
                in_use = model_in_use(found, settings)
                held = holdings(session, found.id)
                model_id = registry.spec(in_use).model_id
                missing = len(unsearchable_entries(session, found.id, model_id))
                document = {
                    "organisation": found.name,
                    "model_in_use": in_use,
                    "model_id": model_id,
                    "from_configuration": found.embedder is None,
                    "templates": [vars(h) for h in held],
                    "entries_without_template_of_model_in_use": missing,
                }
        finally:
            store.close()
    if as_json:
        emit_json(document)
        return
    origin = " (the configured one: nothing enrolled yet)" if found.embedder is None else ""
    stdout.print(f"{document['organisation']}: the watchlist is searched with {in_use}{origin}")
    emit_table(
        "Templates held",
        [vars(h) | {"in_use": "yes" if h.model_id == model_id else ""} for h in held],
        ["model_id", "templates", "entries", "in_use"],
    )
    if missing:
        stdout.print(f"{missing} entries have no template of {in_use} and are not searched")
