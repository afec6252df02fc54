"""The `watchkeeper` command line; each sub-module adds its commands to the app."""

from watchkeeper.cli import admin, alerts, evaluation, models, privacy, scan, watchlist
from watchkeeper.cli.app import app

__all__ = [
    "admin",
    "alerts",
    "app",
    "evaluation",
    "main",
    "models",
    "privacy",
    "scan",
    "watchlist",
]


def main() -> None:
    app()
