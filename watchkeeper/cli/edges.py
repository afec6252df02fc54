"""A chain of shops: `watchkeeper edges` on the core (issue an edge's enrolment code,
list the edges, revoke one) and `watchkeeper edge` on each store's box."""

from __future__ import annotations

import signal
from typing import Annotated

import typer

from watchkeeper.cli.app import app, stderr
from watchkeeper.cli.records import (
    JsonOption,
    OrganisationOption,
    UserOption,
    cli_errors,
    emit_json,
    emit_table,
    governed,
)
from watchkeeper.config import Settings
from watchkeeper.errors import ConfigError, EdgeRefused
from watchkeeper.governance import edges as chain
from watchkeeper.governance.access import Permission, require

edges_app = typer.Typer(
    help="The edge boxes of a chain's stores (on the core).", no_args_is_help=True
)
app.add_typer(edges_app, name="edges")


def core_address(settings: Settings) -> str:
    """Where edges reach this core: web.public_url, else the address it listens on."""
    if settings.web.public_url:
        return settings.web.public_url.rstrip("/")
    return f"http://{settings.web.host}:{settings.web.port}"


@edges_app.command("add")
def edges_add(
    ctx: typer.Context,
    site: Annotated[str, typer.Argument(help="The store whose cameras the edge runs.")],
    name: Annotated[
        str | None, typer.Option(help="The edge's name (default: SITE-edge-xxxx).")
    ] = None,
    user: UserOption = None,
    organisation: OrganisationOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register an edge for a store and print its one-time enrolment code (administrators
    only). From now on the core leaves that store's cameras to its edges."""
    with cli_errors(), governed(ctx, user, organisation) as g:
        settings = g.settings
        added = chain.add_edge(
            g.session, g.store.keys, g.organisation, g.actor, site, name, settings.edge
        )
        edge_name, expires = added.edge.name, added.edge.code_expires_at
    core = core_address(settings)
    command = f"watchkeeper edge --core {core} --code {added.code}"
    if as_json:
        emit_json(
            {"edge": edge_name, "site": site, "code": added.code, "core": core,
             "expires_at": expires.isoformat() if expires else None, "command": command}
        )  # fmt: skip
        return
    stderr.print(
        f"Edge {edge_name!r} for {site}. On the store's box, run (the code works once, "
        f"until {expires:%Y-%m-%d %H:%M} UTC):"
    )
    typer.echo(command)
    if settings.web.host in ("127.0.0.1", "localhost", "::1") and not settings.web.public_url:
        stderr.print(
            "This core listens on this machine only: set web.host (or web.public_url, the "
            "address edges reach it at) before edges elsewhere can enrol."
        )


@edges_app.command("list")
def edges_list(
    ctx: typer.Context,
    user: UserOption = None,
    organisation: OrganisationOption = None,
    as_json: JsonOption = False,
) -> None:
    """The edges, with their last contact, watchlist revision, staleness and cameras."""
    with cli_errors(), governed(ctx, user, organisation) as g:
        require(g.actor, Permission.MANAGE_ORGANISATION)
        rows = [chain.edge_view(edge) for edge in chain.list_edges(g.session, g.organisation)]
    if as_json:
        emit_json(rows)
        return
    columns = ["name", "site", "state", "last_contact", "revision", "staleness_s", "matching"]
    emit_table("Edges", rows, columns)


@edges_app.command("revoke")
def edges_revoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The edge, as listed.")],
    user: UserOption = None,
    organisation: OrganisationOption = None,
) -> None:
    """End an edge's credential at once (administrators only): its next request is
    refused, and it stops. Its store's cameras go back to the core's own recognition."""
    with cli_errors(), governed(ctx, user, organisation) as g:
        chain.revoke(g.session, g.store.keys, g.organisation, g.actor, name)
    stderr.print(f"revoked edge {name!r}")


@app.command()
def edge(
    ctx: typer.Context,
    core: Annotated[
        str | None,
        typer.Option(help="The core's address, e.g. https://core.example (first start)."),
    ] = None,
    code: Annotated[
        str | None,
        typer.Option(help="The one-time code from `watchkeeper edges add SITE` (first start)."),
    ] = None,
) -> None:
    """Run this store's cameras for a chain's core until Ctrl-C: enrols with --core and
    --code on the first start, then keeps a copy of the store's watchlist, matches with
    it, and sends the alerts to the core (kept here while the core is away)."""
    from watchkeeper.edge.link import CoreUnreachable
    from watchkeeper.edge.node import EdgeNode
    from watchkeeper.edge.setup import enrol_edge, open_edge_state
    from watchkeeper.models.provision import ensure_models
    from watchkeeper.store.lock import DataFolderLock

    with cli_errors():
        settings = ctx.obj.settings()
        lock = DataFolderLock(settings.data_dir)
        lock.acquire()
        state = open_edge_state(settings, stderr)
        enrolment = state.enrolment()
        if enrolment is None:
            if not core or not code:
                raise ConfigError(
                    "this edge has not enrolled yet: give --core URL and --code CODE "
                    "(`watchkeeper edges add SITE` on the core prints the whole command)"
                )
            enrolment = enrol_edge(state, core, code, settings)
        elif core and core.rstrip("/") != enrolment.core_url:
            raise ConfigError(
                f"this edge belongs to the core at {enrolment.core_url}; to move it, start "
                "with an empty data folder and a new code"
            )
        node = EdgeNode(settings, state, enrolment)
        stderr.print(
            f"Edge {enrolment.name!r} of {enrolment.site}, core {enrolment.core_url} "
            "(Ctrl-C stops it)."
        )
        try:
            node.sync_once(0, digest=True)
        except CoreUnreachable as exc:
            allowed, reason = node.may_match()
            stderr.print(
                f"[bold]The core cannot be reached[/bold] ({exc}); "
                + ("matching with the copy kept here." if allowed else f"not matching: {reason}.")
            )
        model = state.model()
        if model is not None:
            ensure_models(settings.model_copy(update={"embedder": model[0]}), True, stderr)
            stderr.print(
                f"Recognition runs the {model[0]} embedder on {len(state.cameras())} camera(s)."
            )

    def stop(_signal: int, _frame: object) -> None:
        node.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        with cli_errors():
            node.run()
    finally:
        state.close()
        lock.release()
    if node.stopped_because:
        stderr.print(f"error: {node.stopped_because}")
        raise typer.Exit(EdgeRefused.exit_code) from None
