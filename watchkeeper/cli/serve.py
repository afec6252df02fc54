"""`watchkeeper serve`: the web app for the shop's staff, and recognition on its cameras."""

from __future__ import annotations

import sys
import uuid
from typing import Annotated

import typer
from sqlalchemy import select

from watchkeeper.cli.admin import initialise, report_initialised
from watchkeeper.cli.app import app, stderr
from watchkeeper.cli.records import OrganisationOption, cli_errors
from watchkeeper.config import Settings
from watchkeeper.errors import PolicyError
from watchkeeper.governance import access
from watchkeeper.governance.accounts import check_password_rules, set_password
from watchkeeper.governance.organisation import first_administrator
from watchkeeper.governance.subjects import model_in_use
from watchkeeper.models.provision import embedder_chosen, ensure_models
from watchkeeper.models.registry import ModelRegistry
from watchkeeper.store.database import Store, database_is_empty, open_store
from watchkeeper.store.lock import DataFolderLock
from watchkeeper.store.models import Organisation, Role, User
from watchkeeper.vision.detection import detector_backend

FIRST_ORGANISATION = "My shop"
"""The organisation a first start creates when none is named."""


def first_start(settings: Settings) -> bool:
    """Nothing has been set up yet: no encryption key exists (its file or WATCHKEEPER_KEY),
    or there is a key but no database (a new one is made with that key)."""
    no_key = settings.key is None and not settings.key_file.exists()
    return no_key or database_is_empty(settings)


def open_or_initialise(ctx: typer.Context, organisation: str | None) -> tuple[Store, str]:
    """The store and the organisation's name; on a first start, both are created first."""
    if first_start(ctx.obj.settings()):
        report_initialised(initialise(ctx, organisation or FIRST_ORGANISATION, None))
    store = open_store(ctx.obj.settings())
    try:
        with store.session() as session:
            found = access.organisation(session, organisation)
            name = found.name
            admins = session.scalars(
                select(User).where(
                    User.organisation_id == found.id, User.role == Role.ADMIN, User.active
                )
            ).all()
            waiting = [admin.name for admin in admins if admin.password_hash is None]
            can_sign_in = len(waiting) < len(admins)
        if not can_sign_in:
            if sys.stdin.isatty() and stderr.is_terminal:
                make_first_administrator(store, found.id, waiting[0] if waiting else None)
            else:
                say_how_to_make_the_first_administrator(waiting)
    except BaseException:
        store.close()
        raise
    return store, name


def make_first_administrator(store: Store, organisation_id: uuid.UUID, waiting: str | None) -> None:
    """On a terminal: ask for the first administrator's name and password now (or the
    password of the one `init --admin` made without one), so that the shop can sign
    in as soon as the service answers."""
    stderr.print("[bold]No administrator can sign in yet.[/bold] Make one now.")
    if waiting is None:
        name = typer.prompt("Administrator's user name", default="admin")
    else:
        name = waiting
        stderr.print(f"{name!r} is the administrator; choose their password.")
    while True:
        password = typer.prompt(
            "Password (12 characters or more)", hide_input=True, confirmation_prompt=True
        )
        try:
            check_password_rules(password)
        except PolicyError as exc:
            stderr.print(f"{exc}; try again.")
            continue
        break
    with store.session() as session:
        found = session.get_one(Organisation, organisation_id)
        if waiting is None:
            admin = first_administrator(session, store.keys, found, name)
        else:
            admin = access.user(session, organisation_id, name)
        set_password(session, store.keys, admin, admin, password)
    stderr.print(f"{name!r} can sign in now.")


def say_how_to_make_the_first_administrator(waiting: list[str]) -> None:
    """Not on a terminal (a service manager, a script): say what to run elsewhere."""
    if waiting:
        name = waiting[0]
        command = f"`watchkeeper users password {name} --user {name}`"
        what = f"the administrator {name!r} has no password yet"
    else:
        command = "`watchkeeper users create NAME --role admin`"
        what = "there is no administrator yet"
    stderr.print(
        f"[bold]No administrator can sign in yet[/bold] ({what}). In another terminal, "
        f"run {command} (it asks for a password)."
    )


def models_in_use(settings: Settings, store: Store, organisation: str) -> tuple[str, str]:
    """The detector the cameras run ('auto' resolved) and the organisation's embedder."""
    with store.session() as session:
        embedder = model_in_use(access.organisation(session, organisation), settings)
    return detector_backend(settings.detection, ModelRegistry(settings.models_dir)), embedder


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Address to listen on (web.host).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (web.port).")] = None,
    organisation: OrganisationOption = None,
) -> None:
    """Run the web app and recognition on every enabled camera until Ctrl-C (which stops
    the cameras after they store their last alerts). The first start creates the
    encryption key, the database and the organisation (--organisation, or "My shop")."""
    # Imported here: the web stack takes most of a second to import, which every other
    # command would pay at start.
    import uvicorn

    from watchkeeper.service.runtime import Runtime
    from watchkeeper.web.app import create_app

    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    with cli_errors():
        # Held until this process ends (kept referenced: closing the file releases it),
        # so that a second serve on the same data folder is refused.
        lock = DataFolderLock(ctx.obj.settings().data_dir)
        lock.acquire()
        store, name = open_or_initialise(ctx, organisation)
        settings = ctx.obj.settings(**({"web": overrides} if overrides else {}))
        settings = ensure_models(settings, embedder_chosen(ctx.obj.config_file), stderr)
        runtime = Runtime(settings, store)
        detector, embedder = models_in_use(settings, store, name)
    web = settings.web
    stderr.print(f"Watchkeeper for {name} on http://{web.host}:{web.port}/ (Ctrl-C stops it).")
    stderr.print(f"Recognition runs the {detector} face detector and the {embedder} embedder.")
    try:
        uvicorn.run(
            create_app(settings, store, runtime),
            host=web.host,
            port=web.port,
            log_level="warning",
            server_header=False,
            # Live alert pages hold their connection open: on Ctrl-C they are closed
            # after this many seconds, then every camera stores its last alerts.
            timeout_graceful_shutdown=3,
        )
    finally:
        store.close()
        lock.release()
