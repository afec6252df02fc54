"""The `watchkeeper` command: the Typer application, global options and shared helpers."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler

from watchkeeper.cli.invocation import as_typed
from watchkeeper.config import Settings, load_settings
from watchkeeper.errors import WatchkeeperError

app = typer.Typer(
    help="Watchkeeper: watchlist-only facial recognition that keeps nothing about "
    "people who do not match.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


class CommandConsole(Console):
    """A console whose messages name commands as they must be typed here (see
    :mod:`watchkeeper.cli.invocation`)."""

    def print(self, *objects: Any, **options: Any) -> None:
        super().print(*(as_typed(o) if isinstance(o, str) else o for o in objects), **options)


class CommandFormatter(logging.Formatter):
    """Log lines that name commands as they must be typed here."""

    def format(self, record: logging.LogRecord) -> str:
        return as_typed(super().format(record))


# Messages are never broken into lines by the console (soft wrap): a command in one,
# broken at 80 columns in a log file, would not work when copied.
stderr = CommandConsole(stderr=True, soft_wrap=True)
log = logging.getLogger("watchkeeper")


@dataclass
class Context:
    config_file: Path | None
    models_dir: Path | None

    def settings(self, **overrides: Any) -> Settings:
        if self.models_dir is not None:
            overrides["models_dir"] = self.models_dir
        return load_settings(self.config_file, **overrides)


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option(help="TOML configuration file.", envvar="WATCHKEEPER_CONFIG")
    ] = None,
    models_dir: Annotated[
        Path | None,
        typer.Option(help="Folder searched first for model files.", show_default=False),
    ] = None,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More log output (-vv: debug).")
    ] = 0,
) -> None:
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    handler: logging.Handler
    if stderr.is_terminal:
        handler = RichHandler(console=stderr, show_time=False, show_path=False, markup=False)
        handler.setFormatter(CommandFormatter("%(message)s"))
    else:
        # One plain line per record, for scripts and log files.
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(CommandFormatter("%(levelname)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    ctx.obj = Context(config_file=config, models_dir=models_dir)


def fail(exc: WatchkeeperError) -> typer.Exit:
    """Report ``exc`` as one line on stderr; the caller raises the returned exit."""
    sys.stderr.write(f"error: {as_typed(str(exc))}\n")
    return typer.Exit(exc.exit_code)
