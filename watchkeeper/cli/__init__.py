"""The `watchkeeper` command line; each sub-module adds its commands to the app."""

from watchkeeper.cli import evaluation, models, scan
from watchkeeper.cli.app import app

__all__ = ["app", "evaluation", "main", "models", "scan"]


def main() -> None:
    app()
