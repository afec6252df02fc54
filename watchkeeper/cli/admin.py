"""`watchkeeper init`, `users`, `sites`, `cameras` and `policy`: setting an organisation up."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Annotated

import typer
from sqlalchemy import select
from sqlalchemy.orm import Session

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
from watchkeeper.errors import ConfigError, EncryptionKeyError, NotFoundError
from watchkeeper.governance import access
from watchkeeper.governance.accounts import (
    MAX_TOKEN_DAYS,
    deactivate,
    issue_token,
    revoke_token,
    set_password,
)
from watchkeeper.governance.organisation import (
    Policy,
    add_camera,
    add_site,
    add_user,
    create_organisation,
    first_administrator,
    policy_of,
    set_policy,
    update_camera,
)
from watchkeeper.governance.throttle import unlock
from watchkeeper.store.crypto import encode_key, generate_key, write_key_file
from watchkeeper.store.database import Store, database_url, open_store
from watchkeeper.store.models import (
    MAX_RETENTION_DAYS,
    ApiToken,
    Camera,
    Organisation,
    Role,
    Site,
    User,
)

users_app = typer.Typer(help="People who use Watchkeeper, and their roles.", no_args_is_help=True)
sites_app = typer.Typer(help="Sites (stores).", no_args_is_help=True)
cameras_app = typer.Typer(help="Cameras and their sources.", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens for integrations.", no_args_is_help=True)
policy_app = typer.Typer(
    help="The organisation's retention and approval policy.", no_args_is_help=True
)
app.add_typer(users_app, name="users")
app.add_typer(sites_app, name="sites")
app.add_typer(cameras_app, name="cameras")
app.add_typer(tokens_app, name="tokens")
app.add_typer(policy_app, name="policy")


@dataclass(frozen=True)
class Initialised:
    organisation: str
    organisation_id: str
    created: bool
    database: str
    data_dir: str
    key_file: str | None
    key_created: bool


def initialise(ctx: typer.Context, organisation: str, admin: str | None) -> Initialised:
    """Create the encryption key (if none), the schema (or upgrade it) and the
    organisation (if missing; its first administrator too unless ``admin`` is None)."""
    settings = ctx.obj.settings()
    new_key = None
    if settings.key is None and not settings.key_file.exists():
        new_key = generate_key()
    try:
        # A new key is checked against the database before it is written: data made
        # with a lost key must not be hidden behind a new "wrong" one.
        store = open_store(
            settings if new_key is None else ctx.obj.settings(key=encode_key(new_key)),
            create=True,
        )
    except EncryptionKeyError:
        if new_key is None:
            raise
        raise EncryptionKeyError(
            f"no encryption key: {settings.key_file} does not exist and WATCHKEEPER_KEY "
            "is not set, but the database holds data made with a key; restore that key "
            "(a new one cannot read the data)"
        ) from None
    try:
        if new_key is not None:
            write_key_file(settings.key_file, new_key)
        with store.session() as session:
            existing = session.scalars(
                select(Organisation).where(Organisation.name == organisation)
            ).one_or_none()
            if existing is None:
                created, _ = create_organisation(session, store.keys, organisation, admin)
                organisation_id = created.id
            else:
                organisation_id = existing.id
    finally:
        store.close()
    return Initialised(
        organisation=organisation,
        organisation_id=str(organisation_id),
        created=existing is None,
        database=database_url(settings).split("@")[-1],
        data_dir=str(settings.data_dir),
        key_file=None if settings.key is not None else str(settings.key_file),
        key_created=new_key is not None,
    )


def report_initialised(done: Initialised) -> None:
    stderr.print(
        f"{'created' if done.created else 'found'} organisation {done.organisation!r}; "
        f"data in {done.data_dir}"
    )
    if done.key_created:
        stderr.print(
            f"[bold]New encryption key: {done.key_file}[/bold]. Back it up somewhere other "
            "than the data folder: without it the watchlist cannot be read."
        )


@app.command()
def init(
    ctx: typer.Context,
    organisation: Annotated[str, typer.Option(help="Name of the organisation to create.")],
    admin: Annotated[str, typer.Option(help="User name of its first administrator.")],
    as_json: JsonOption = False,
) -> None:
    """Create the encryption key (if none), the database schema and an organisation.

    Safe to run again: it upgrades the schema and leaves existing data alone.
    """
    with cli_errors():
        done = initialise(ctx, organisation, admin)
    if as_json:
        emit_json(asdict(done))
    else:
        report_initialised(done)


@users_app.command("create")
def users_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[Role, typer.Option(help="What they may do.")],
    site: Annotated[list[str] | None, typer.Option(help="Site they work at (repeatable).")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    no_password: Annotated[
        bool, typer.Option("--no-password", help="No web sign-in (command line only).")
    ] = False,
    user: UserOption = None,
    organisation: OrganisationOption = None,
) -> None:
    """Add a user with a web sign-in password (asked for unless --no-password).

    Administrators add users (--user ADMIN). The organisation's first administrator
    is made without --user, by whoever runs the machine; that is recorded as such."""
    password = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif not no_password:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with cli_errors():
        if user is None:
            if role != Role.ADMIN:
                raise ConfigError(
                    "say which administrator adds the user with --user NAME (only the "
                    "first administrator is made without one)"
                )
            with console_transaction(ctx, organisation) as (store, session, found):
                created = first_administrator(session, store.keys, found, name)
                if password is not None:
                    set_password(session, store.keys, created, created, password)
        else:
            with governed(ctx, user, organisation) as g:
                sites = [access.site(g.session, g.organisation.id, s) for s in site or []]
                created = add_user(
                    g.session, g.store.keys, g.organisation, g.actor, name, role, sites
                )
                if password is not None:
                    set_password(g.session, g.store.keys, g.actor, created, password)
    stderr.print(f"created {role.value} {name!r}" + ("" if password else " (no web sign-in)"))


@contextmanager
def console_transaction(
    ctx: typer.Context, organisation: str | None
) -> Iterator[tuple[Store, Session, Organisation]]:
    """One transaction for what the machine's operator does before any user exists."""
    store = open_store(ctx.obj.settings())
    try:
        with store.session() as session:
            yield store, session, access.organisation(session, organisation)
    finally:
        store.close()


@users_app.command("password")
def users_password(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Whose password to set.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    user: UserOption = None,
    organisation: OrganisationOption = None,
) -> None:
    """Set a user's web sign-in password (administrators for anyone, users for themselves).
    Ends the user's open web sessions."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    with cli_errors(), governed(ctx, user, organisation) as g:
        target = access.user(g.session, g.organisation.id, name)
        set_password(g.session, g.store.keys, g.actor, target, password)
    stderr.print(f"password set for {name!r}")


@users_app.command("deactivate")
def users_deactivate(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Who leaves (an administrator, not oneself).")],
    user: UserOption = None,
    organisation: OrganisationOption = None,
    as_json: JsonOption = False,
) -> None:
    """Deactivate a user (administrators only): their web sessions end and their API
    tokens are revoked at once; they can no longer sign in or act. Their history stays."""
    with cli_errors(), governed(ctx, user, organisation) as g:
        target = access.user(g.session, g.organisation.id, name)
        done = deactivate(g.session, g.store.keys, g.actor, target)
    if as_json:
        emit_json({"user": name, "sessions_ended": done.sessions, "tokens_revoked": done.tokens})
    else:
        stderr.print(
            f"deactivated {name!r}: {done.sessions} session(s) ended, "
            f"{done.tokens} token(s) revoked"
        )


@users_app.command("unlock")
def users_unlock(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Whose sign-in delays to lift.")],
    user: UserOption = None,
    organisation: OrganisationOption = None,
    as_json: JsonOption = False,
) -> None:
    """Lift every sign-in delay on a user's name, from every address (administrators
    only); audited. Delays on a whole address or past the global ceiling run out alone."""
    with cli_errors(), governed(ctx, user, organisation) as g:
        target = access.user(g.session, g.organisation.id, name)
        addresses = unlock(g.session, g.store.keys, g.organisation, g.actor, target)
    if as_json:
        emit_json({"user": name, "addresses": addresses})
    else:
        stderr.print(f"sign-in delays lifted for {name!r} at {addresses} address(es)")


@tokens_app.command("issue")
def tokens_issue(
    ctx: typer.Context,
    owner: Annotated[str, typer.Argument(help="The user the token acts as (and whose role).")],
    label: Annotated[str, typer.Option(help="What uses it, e.g. 'Home Assistant'.")],
    days: Annotated[int, typer.Option(help=f"Days it lasts (at most {MAX_TOKEN_DAYS}).")] = 90,
    user: UserOption = None,
    organisation: OrganisationOption = None,
    as_json: JsonOption = False,
) -> None:
    """Issue an API token (administrators only). It is printed once and never again."""
    with cli_errors(), governed(ctx, user, organisation) as g:
        target = access.user(g.session, g.organisation.id, owner)
        issued = issue_token(g.session, g.store.keys, g.actor, target, label, days)
        expires = issued.row.expires_at
    if as_json:
        emit_json(
            {
                "token": issued.token,
                "prefix": issued.row.prefix,
                "owner": owner,
                "label": issued.row.label,
                "expires_at": expires.isoformat(),
            }
        )
        return
    sys.stdout.write(issued.token + "\n")
    stderr.print(f"token for {owner!r} ({label}) until {expires:%Y-%m-%d}; store it now")


@tokens_app.command("list")
def tokens_list(
    ctx: typer.Context,
    user: UserOption = None,
    organisation: OrganisationOption = None,
    as_json: JsonOption = False,
) -> None:
    """The organisation's API tokens (their first characters only)."""
    with cli_errors(), governed(ctx, user, organisation) as g:
        access.require(g.actor, access.Permission.MANAGE_ORGANISATION)
        rows = [
            {
                "prefix": t.prefix,
                "user": t.user.name,
                "label": t.label,
                "expires": t.expires_at.date().isoformat(),
                "last_used": t.last_used_at.isoformat(timespec="seconds")
                if t.last_used_at
                else None,
                "revoked": t.revoked_at is not None,
            }
            for t in g.session.scalars(
                select(ApiToken)
                .join(User)
                .where(User.organisation_id == g.organisation.id)
                .order_by(ApiToken.created_at)
            )
        ]
    if as_json:
        emit_json(rows)
    else:
        emit_table("API tokens", rows, list(rows[0]) if rows else ["prefix"])


@tokens_app.command("revoke")
def tokens_revoke(
    ctx: typer.Context,
    prefix: Annotated[str, typer.Argument(help="The token's first characters, as listed.")],
    user: UserOption = None,
    organisation: OrganisationOption = None,
) -> None:
    """Revoke an API token at once (administrators only)."""
    with cli_errors(), governed(ctx, user, organisation) as g:
        found = g.session.scalars(
            select(ApiToken)
            .join(User)
            .where(User.organisation_id == g.organisation.id, ApiToken.prefix == prefix)
        ).all()
        if len(found) != 1:
            raise NotFoundError(f"no single token starts {prefix!r}; see `tokens list`")
        revoke_token(g.session, g.store.keys, g.actor, found[0])
    stderr.print(f"revoked token {prefix}")


@users_app.command("list")
def users_list(
    ctx: typer.Context,
    user: UserOption = None,
    organisation: OrganisationOption = None,
    as_json: JsonOption = False,
) -> None:
    """The organisation's users and roles."""
    with cli_errors(), governed(ctx, user, organisation) as g:
        rows = [
            {
                "name": u.name,
                "role": u.role.value,
                "active": u.active,
                "sites": sorted(s.name for s in u.sites),
            }
            for u in g.session.scalars(
                select(User).where(User.organisation_id == g.organisation.id).order_by(User.name)
            )
        ]
    if as_json:
        emit_json(rows)
    else:
        emit_table("Users", rows, ["name", "role", "active", "sites"])


@sites_app.command("add")
def sites_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Site name.")],
    user: UserOption = None,
    organisation: OrganisationOption = None,
) -> None:
    """Add a site (administrators only)."""
    with cli_errors(), governed(ctx, user, organisation) as g:
        add_site(g.session, g.store.keys, g.organisation, g.actor, name)
    stderr.print(f"added site {name!r}")


@sites_app.command("list")
def sites_list(
    ctx: typer.Context,
    user: UserOption = None,
    organisation: OrganisationOption = None,
    as_json: JsonOption = False,
) -> None:
    """The organisation's sites."""
    with cli_errors(), governed(ctx, user, organisation) as g:
        rows = [
            {"name": s.name, "id": str(s.id)}
            for s in g.session.scalars(
                select(Site).where(Site.organisation_id == g.organisation.id).order_by(Site.name)
            )
        ]
    if as_json:
        emit_json(rows)
    else:
        emit_table("Sites", rows, ["name", "id"])


@cameras_app.command("add")
def cameras_add(
    ctx: typer.Context,
    site: Annotated[str, typer.Argument(help="Site the camera is at.")],
    name: Annotated[str, typer.Argument(help="Camera name, unique at the site.")],
    source: Annotated[
        str, typer.Argument(help="Stream URL (credentials are stored encrypted), file or index.")
    ],
    schedule: Annotated[
        str | None, typer.Option(help="When it runs, e.g. 'Mon-Sat 08:00-20:00'.")
    ] = None,
    user: UserOption = None,
    organisation: OrganisationOption = None,
) -> None:
    """Register a camera (administrators only)."""
    with cli_errors(), governed(ctx, user, organisation) as g:
        found = access.site(g.session, g.organisation.id, site)
        camera = add_camera(
            g.session, g.store.keys, g.organisation, g.actor, found, name, source, schedule
        )
        shown = camera.source_display
    stderr.print(f"added camera {site}/{name} ({shown})")


@cameras_app.command("set")
def cameras_set(
    ctx: typer.Context,
    camera: Annotated[str, typer.Argument(help="Camera (NAME, or SITE/NAME).")],
    enable: Annotated[
        bool | None, typer.Option("--enable/--disable", help="Allow or stop scanning it.")
    ] = None,
    schedule: Annotated[str | None, typer.Option(help="When it runs ('' to clear).")] = None,
    source: Annotated[
        str | None, typer.Option(help="New source (URL, video file or webcam index).")
    ] = None,
    user: UserOption = None,
    organisation: OrganisationOption = None,
) -> None:
    """Enable or disable a camera, set its schedule or give it a new source
    (administrators only). A running `serve` applies it when recognition next starts;
    changes made on its cameras page apply at once."""
    with cli_errors(), governed(ctx, user, organisation) as g:
        found = access.camera(g.session, g.organisation.id, camera)
        update_camera(
            g.session, g.store.keys, g.organisation, g.actor, found, enable, schedule, source
        )
    stderr.print(f"camera {camera} updated")


@cameras_app.command("list")
def cameras_list(
    ctx: typer.Context,
    user: UserOption = None,
    organisation: OrganisationOption = None,
    as_json: JsonOption = False,
) -> None:
    """The organisation's cameras (passwords masked)."""
    with cli_errors(), governed(ctx, user, organisation) as g:
        rows = [
            {
                "site": c.site.name,
                "name": c.name,
                "source": c.source_display,
                "enabled": c.enabled,
                "schedule": c.schedule,
            }
            for c in g.session.scalars(
                select(Camera)
                .join(Site)
                .where(Site.organisation_id == g.organisation.id)
                .order_by(Site.name, Camera.name)
            )
        ]
    if as_json:
        emit_json(rows)
    else:
        emit_table("Cameras", rows, ["site", "name", "source", "enabled", "schedule"])


@policy_app.command("show")
def policy_show(
    ctx: typer.Context,
    user: UserOption = None,
    organisation: OrganisationOption = None,
    as_json: JsonOption = False,
) -> None:
    """The organisation's policy."""
    with cli_errors(), governed(ctx, user, organisation) as g:
        policy = vars(policy_of(g.organisation))
    if as_json:
        emit_json(policy)
    else:
        emit_fields("Policy", policy, name="setting")


@policy_app.command("set")
def policy_set(
    ctx: typer.Context,
    max_retention_days: Annotated[
        int | None, typer.Option(help=f"Longest life of an entry (at most {MAX_RETENTION_DAYS}).")
    ] = None,
    default_retention_days: Annotated[
        int | None, typer.Option(help="Life of an entry when none is given.")
    ] = None,
    alert_retention_days: Annotated[int | None, typer.Option(help="Life of an alert.")] = None,
    watchlist_cap_per_site: Annotated[
        int | None, typer.Option(help="Most entries searching one site.")
    ] = None,
    false_matches_before_suspension: Annotated[
        int | None, typer.Option(help="Rejected alerts that suspend an entry.")
    ] = None,
    approver_roles: Annotated[
        str | None, typer.Option(help="Roles that may approve, e.g. 'manager'.")
    ] = None,
    user: UserOption = None,
    organisation: OrganisationOption = None,
) -> None:
    """Change the policy (administrators only); the change is audited."""
    with cli_errors(), governed(ctx, user, organisation) as g:
        changes = {
            key: value
            for key, value in {
                "max_retention_days": max_retention_days,
                "default_retention_days": default_retention_days,
                "alert_retention_days": alert_retention_days,
                "watchlist_cap_per_site": watchlist_cap_per_site,
                "false_matches_before_suspension": false_matches_before_suspension,
                "approver_roles": approver_roles,
            }.items()
            if value is not None
        }
        policy = Policy(**(vars(policy_of(g.organisation)) | changes))
        set_policy(g.session, g.store.keys, g.organisation, g.actor, policy)
    stderr.print("policy updated")
