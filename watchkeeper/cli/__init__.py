"""The `watchkeeper` command line; each sub-module adds its commands to the app."""

import logging
import sys

from watchkeeper.cli import (
    admin,
    alerts,
    backup,
    bench,
    edges,
    estate,
    evaluation,
    model_switch,
    models,
    privacy,
    scan,
    serve,
    system,
    watchlist,
)
from watchkeeper.cli.app import app
from watchkeeper.errors import WatchkeeperError

__all__ = [
    "admin",
    "alerts",
    "app",
    "backup",
    "bench",
    "edges",
    "estate",
    "evaluation",
    "main",
    "model_switch",
    "models",
    "privacy",
    "scan",
    "serve",
    "system",
    "watchlist",
]


UNEXPECTED_EXIT = 70
"""The exit code for a failure no command foresaw (EX_SOFTWARE)."""


def main() -> None:
    """Run the command line. Errors are one line on stderr, never a traceback: those a
    command did not report itself are reported here, a :class:`WatchkeeperError` with its
    own exit code, anything else as a bug with exit code 70 (``-vv`` logs where)."""
    try:
        app()
    except WatchkeeperError as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(exc.exit_code) from None
    except Exception as exc:
        logging.getLogger("watchkeeper").debug("unexpected failure", exc_info=True)
        first_line = (str(exc).strip().splitlines() or [""])[0]
        sys.stderr.write(
            f"error: unexpected {type(exc).__name__}: {first_line} "
            "(a fault in Watchkeeper; run again with -vv to log where)\n"
        )
        raise SystemExit(UNEXPECTED_EXIT) from None
