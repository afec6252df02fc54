"""`watchkeeper models`: list, verify, fetch and build model files."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from watchkeeper.cli.app import app, fail, stderr
from watchkeeper.errors import ModelError, WatchkeeperError
from watchkeeper.models.fetch import fetch_model
from watchkeeper.models.registry import ModelRegistry
from watchkeeper.vision.embedding import converted_model

models_app = typer.Typer(help="Model files: list, verify, fetch, build.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False,
) -> None:
    """Every model Watchkeeper knows, where it was found and whether it verifies."""
    try:
        settings = ctx.obj.settings()
        registry = ModelRegistry(settings.models_dir)
        statuses = [registry.status(spec.name) for spec in registry.specs()]
    except WatchkeeperError as exc:
        raise fail(exc) from None
    if as_json:
        rows = [
            {
                "name": s.spec.name,
                "role": s.spec.role.value,
                "version": s.spec.version,
                "licence": s.spec.licence,
                "sha256": s.spec.sha256,
                "path": str(s.path) if s.path else None,
                "present": s.present,
                "verified": s.verified,
                "calibration": s.spec.calibration.model_dump() if s.spec.calibration else None,
            }
            for s in statuses
        ]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title=f"Models (searched first in {registry.models_dir})")
    for column in ("name", "role", "version", "licence", "sha256", "found at", "status"):
        table.add_column(column, overflow="fold")
    for s in statuses:
        state = "missing" if not s.present else ("ok" if s.verified else "WRONG CHECKSUM")
        if s.path is None:
            where = "-"
        elif s.path.parent == registry.models_dir:
            where = "models folder"
        else:
            where = f"package {s.spec.package}" if s.spec.package else str(s.path)
        table.add_row(
            s.spec.name,
            s.spec.role.value,
            s.spec.version,
            s.spec.licence,
            s.spec.sha256[:12] + "…",
            where,
            state,
        )
    Console().print(table)


@models_app.command("verify")
def models_verify(ctx: typer.Context) -> None:
    """Check every model file found against its pinned checksum (exit 6 if one differs)."""
    try:
        settings = ctx.obj.settings()
        registry = ModelRegistry(settings.models_dir)
    except WatchkeeperError as exc:
        raise fail(exc) from None
    bad = 0
    for spec in registry.specs():
        status = registry.status(spec.name)
        if not status.present:
            sys.stdout.write(f"missing  {spec.name}\n")
        elif status.verified:
            sys.stdout.write(f"ok       {spec.name}  {status.path}\n")
        else:
            bad += 1
            sys.stdout.write(
                f"REFUSED  {spec.name}  {status.path}: sha256 {status.sha256}, "
                f"expected {spec.sha256}\n"
            )
    if bad:
        raise typer.Exit(6)


@models_app.command("fetch")
def models_fetch(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Registry name of the model.")],
    mirror: Annotated[
        str | None,
        typer.Option(help="Base URL of a mirror holding the file under its usual name."),
    ] = None,
) -> None:
    """Download a model to the models folder from its pinned address; refuse a file
    whose checksum differs."""
    try:
        settings = ctx.obj.settings()
        registry = ModelRegistry(settings.models_dir)
        spec = registry.spec(name)
        status = registry.status(name)
        if (
            status.present
            and status.verified
            and status.path == settings.models_dir / spec.filename
        ):
            sys.stdout.write(f"{name} already present and verified at {status.path}\n")
            return
        with Progress(console=stderr, transient=True) as progress:
            task = progress.add_task(f"fetching {name}", total=spec.size_bytes)
            path = fetch_model(
                spec,
                settings.models_dir,
                mirror=mirror,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
    except WatchkeeperError as exc:
        raise fail(exc) from None
    sys.stdout.write(f"{name} saved to {path} (sha256 verified)\n")


@models_app.command("build")
def models_build(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(help="Registry name of a dlib embedder.")
    ] = "dlib-resnet-v1",
) -> None:
    """Convert a dlib embedder to ONNX in the models folder (otherwise done on first use);
    the result must match its pinned checksum. Nothing is downloaded."""
    try:
        settings = ctx.obj.settings()
        registry = ModelRegistry(settings.models_dir)
        spec = registry.spec(name)
        if spec.onnx_sha256 is None:
            raise ModelError(f"model {name!r} has no ONNX conversion")
        with stderr.status(f"converting {name} to ONNX", spinner="dots"):
            built = converted_model(spec, registry)
    except WatchkeeperError as exc:
        raise fail(exc) from None
    if not isinstance(built, Path):
        raise fail(ModelError(f"cannot write the conversion into {settings.models_dir}"))
    sys.stdout.write(f"{name} converted to {built} (sha256 {spec.onnx_sha256} verified)\n")
