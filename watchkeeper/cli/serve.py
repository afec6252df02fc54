"""`watchkeeper serve`: the web app for the shop's staff."""

from __future__ import annotations

from typing import Annotated

import typer

from watchkeeper.cli.app import app, stderr
from watchkeeper.cli.records import cli_errors
from watchkeeper.governance import access
from watchkeeper.store.database import open_store


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Address to listen on (web.host).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (web.port).")] = None,
) -> None:
    """Run the web app and recognition on every enabled camera until Ctrl-C (which stops
    the cameras after they store their last alerts)."""
    # Imported here: the web stack takes most of a second to import, which every other
    # command would pay at start.
    import uvicorn

    from watchkeeper.service.broadcast import AlertBroadcaster
    from watchkeeper.service.supervisor import Supervisor
    from watchkeeper.web.app import create_app
    from watchkeeper.web.routes.alerts import alert_message

    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    with cli_errors():
        settings = ctx.obj.settings(**({"web": overrides} if overrides else {}))
        store = open_store(settings)
        try:
            with store.session() as session:
                organisation = access.organisation(session).name
        except BaseException:
            store.close()
            raise
    web = settings.web
    stderr.print(
        f"Watchkeeper for {organisation} on http://{web.host}:{web.port}/ (Ctrl-C stops it). "
        "Users sign in with a password set by `watchkeeper users password NAME --user ADMIN`."
    )
    broadcaster = AlertBroadcaster()
    supervisor = Supervisor(
        settings, store, lambda camera, alert: broadcaster.publish(alert_message(camera, alert))
    )
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
        store.close()
