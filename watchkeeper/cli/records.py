"""Helpers shared by the commands that read and change the store."""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from watchkeeper.cli.app import fail
from watchkeeper.config import Settings
from watchkeeper.dates import days_after, parse_utc
from watchkeeper.errors import ConfigError, DatabaseError, PolicyError, WatchkeeperError
from watchkeeper.governance import access
from watchkeeper.governance.subjects import model_in_use
from watchkeeper.pipeline import FaceModels
from watchkeeper.store.database import Store, open_store, storage_failure
from watchkeeper.store.models import Organisation, User, utcnow

stdout = Console()

UserOption = Annotated[
    str | None,
    typer.Option(
        "--user",
        envvar="WATCHKEEPER_USER",
        help="Who is acting (a user of the organisation); recorded in the audit log.",
        show_default=False,
    ),
]
OrganisationOption = Annotated[
    str | None,
    typer.Option(
        "--organisation",
        envvar="WATCHKEEPER_ORGANISATION",
        help="Organisation, when the database holds several.",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="JSON on stdout.")]


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn Watchkeeper and database errors into one line on stderr and an exit code."""
    try:
        yield
    except WatchkeeperError as exc:
        raise fail(exc) from None
    except IntegrityError as exc:
        raise fail(PolicyError(f"refused by the database: {exc.orig}")) from None
    except SQLAlchemyError as exc:
        raise fail(storage_failure(exc) or DatabaseError(f"database error: {exc}")) from None
    except OSError as exc:
        failure = storage_failure(exc)  # a full disk; any other OSError is not foreseen
        if failure is None:
            raise
        raise fail(failure) from None


@dataclass
class Governed:
    """One command's transaction: the store, the organisation and who is acting."""

    settings: Settings
    store: Store
    session: Session
    organisation: Organisation
    actor: User

    @property
    def embedder(self) -> str:
        """Registry name of the model the organisation's watchlist is enrolled and
        searched with."""
        return model_in_use(self.organisation, self.settings)

    def face_models(self) -> FaceModels:
        """The models that turn photos into templates of the model in use."""
        return FaceModels.load(self.settings, self.embedder)


@contextmanager
def governed(
    ctx: typer.Context, user: str | None, organisation: str | None = None
) -> Iterator[Governed]:
    """Open the store and one transaction; committed only if the command succeeds."""
    if not user:
        raise ConfigError("say who is acting with --user NAME (or WATCHKEEPER_USER)")
    settings: Settings = ctx.obj.settings()
    store = open_store(settings)
    try:
        with store.session() as session:
            found = access.organisation(session, organisation)
            yield Governed(settings, store, session, found, access.user(session, found.id, user))
    finally:
        store.close()


def parse_when(text: str) -> dt.datetime:
    """An ISO date or date-time; a time without a zone is UTC."""
    try:
        return parse_utc(text)
    except ValueError as refused:
        raise ConfigError(str(refused)) from None


def expiry(expires: str | None, days: int | None) -> dt.datetime | None:
    if expires is not None and days is not None:
        raise ConfigError("give --expires or --days, not both")
    if days is not None:
        if days < 1:
            raise ConfigError(f"--days must be 1 or more, not {days}")
        try:
            return days_after(utcnow(), days)
        except ValueError as refused:
            raise ConfigError(f"--days: {refused}") from None
    return None if expires is None else parse_when(expires)


def emit_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")


def emit_table(title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column.replace("_", " "), overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(column)) for column in columns))
    stdout.print(table)


def emit_fields(title: str, fields: dict[str, Any], name: str = "field") -> None:
    """One record as a two-column table: ``name`` and value."""
    emit_table(title, [{name: k, "value": v} for k, v in fields.items()], [name, "value"])


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, str) and ISO_TIME.fullmatch(value):
        return dt.datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M")
    return str(value)


ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00")
"""UTC times as views give them; tables show them to the minute."""
