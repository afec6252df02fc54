"""`watchkeeper serve`: the web app for the shop's staff, and recognition on its cameras."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy import select

from watchkeeper.cli.admin import initialise, report_initialised
from watchkeeper.cli.app import app, stderr
from watchkeeper.cli.records import OrganisationOption, cli_errors
from watchkeeper.config import Settings
from watchkeeper.governance import access
from watchkeeper.models.provision import embedder_chosen, ensure_models
from watchkeeper.store.database import Store, open_store
from watchkeeper.store.lock import DataFolderLock
from watchkeeper.store.models import Role, User

FIRST_ORGANISATION = "My shop"
"""The organisation a first start creates when none is named."""


def first_start(settings: Settings) -> bool:
    """Nothing has been set up yet: no encryption key exists (its file or WATCHKEEPER_KEY)."""
    return settings.key is None and not settings.key_file.exists()


def open_or_initialise(ctx: typer.Context, organisation: str | None) -> tuple[Store, str]:
    """The store and the organisation's name; on a first start, both are created first."""
    if first_start(ctx.obj.settings()):
        report_initialised(initialise(ctx, organisation or FIRST_ORGANISATION, None))
    store = open_store(ctx.obj.settings())
    try:
        with store.session() as session:
            found = access.organisation(session, organisation)
            name = found.name
            can_sign_in = session.scalars(
                select(User).where(
                    User.organisation_id == found.id,
                    User.role == Role.ADMIN,
                    User.active,
                    User.password_hash.is_not(None),
                )
            ).first()
    except BaseException:
        store.close()
        raise
    if can_sign_in is None:
        stderr.print(
            "[bold]No administrator can sign in yet.[/bold] In another terminal, run "
            "`watchkeeper users create NAME --role admin` (it asks for a password)."
        )
    return store, name


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

    from watchkeeper.governance.live import StoredAlert
    from watchkeeper.notify.notifier import Notifier
    from watchkeeper.service.broadcast import AlertBroadcaster
    from watchkeeper.service.supervisor import CameraHealth, Supervisor
    from watchkeeper.web.app import create_app
    from watchkeeper.web.routes.alerts import alert_message

    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    with cli_errors():
        # Held until this process ends (kept referenced: closing the file releases it),
        # so that a second serve on the same data folder is refused.
        lock = DataFolderLock(ctx.obj.settings().data_dir)
        lock.acquire()
        store, name = open_or_initialise(ctx, organisation)
        settings = ctx.obj.settings(**({"web": overrides} if overrides else {}))
        settings = ensure_models(settings, embedder_chosen(ctx.obj.config_file), stderr)
        notifier = Notifier(settings, store)
    web = settings.web
    stderr.print(f"Watchkeeper for {name} on http://{web.host}:{web.port}/ (Ctrl-C stops it).")
    broadcaster = AlertBroadcaster()

    def on_alert(camera: CameraHealth, alert: StoredAlert) -> None:
        broadcaster.publish(alert_message(camera, alert))
        notifier.wake()  # its webhooks and MQTT messages were queued with the alert

    supervisor = Supervisor(settings, store, on_alert)
    notifier.start()
    try:
        uvicorn.run(
            create_app(settings, store, supervisor, broadcaster),
            host=web.host,
            port=web.port,
            log_level="warning",
            server_header=False,
            # Live alert pages hold their connection open: on Ctrl-C they are closed
            # after this many seconds, then every camera stores its last alerts.
            timeout_graceful_shutdown=3,
        )
    finally:
        notifier.stop()  # what is not delivered yet stays queued for the next start
        store.close()
        lock.release()
