"""The `watchkeeper` command line; each sub-module adds its commands to the app."""

from watchkeeper.cli import (
    admin,
    alerts,
    backup,
    bench,
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

__all__ = [
    "admin",
    "alerts",
    "app",
    "backup",
    "bench",
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


def main() -> None:
    app()
