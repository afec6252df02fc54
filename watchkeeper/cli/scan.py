"""`watchkeeper scan`: a video source against a watchlist folder or the stored watchlist."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import cv2
import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from watchkeeper.cli.app import app, fail, log, stderr
from watchkeeper.cli.records import OrganisationOption
from watchkeeper.config import Settings
from watchkeeper.errors import ConfigError, WatchkeeperError
from watchkeeper.governance import access
from watchkeeper.governance.retention import RetentionSweeper
from watchkeeper.governance.subjects import model_in_use
from watchkeeper.matching.watchlist import FolderWatchlist, load_watchlist_folder
from watchkeeper.models.provision import embedder_chosen, ensure_models
from watchkeeper.pipeline import (
    CameraPipeline,
    FaceModels,
    MatchEvent,
)
from watchkeeper.service.live_camera import LiveCamera, SourceRun, run_source
from watchkeeper.store.database import Store, open_store
from watchkeeper.streaming.engine import CameraEvent
from watchkeeper.video.sources import FrameSource, SourceSpec, open_source


def _emit(record: dict[str, Any], as_json: bool) -> None:
    if as_json:
        line = json.dumps(record)
    elif record["type"] == "match":
        line = (
            f"match  {record.get('label', record['subject'])}  score {record['score']:.3f}  "
            f"track {record['track']}  "
            f"{record['start']:.1f}-{record['end']:.1f} s  {record['frames']} frames"
        )
        if "image" in record:
            line += f"  {record['image']}"
        if "alert" in record:
            line += f"  alert {record['alert'][:8]} pending review"
    else:
        line = (
            f"summary  {record['frames']} frames  {record['faces']} faces  "
            f"{record['tracks']} tracks  {record['matches']} matches  "
            f"{record['seconds']:.1f} s  {record['fps']:.1f} fps"
        )
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def match_record(event: MatchEvent) -> dict[str, Any]:
    record: dict[str, Any] = {
        "type": "match",
        "subject": event.subject,
        "score": round(event.score, 4),
        "track": event.track_id,
        "start": round(event.start, 3),
        "end": round(event.end, 3),
        "frames": event.frames,
    }
    if event.image is not None:
        record["image"] = event.image
    return record


def summary_record(run: SourceRun) -> dict[str, Any]:
    """The closing line of a run: counts, speed and the time spent in each stage."""
    stats, seconds = run.stats, run.seconds
    return {
        "type": "summary",
        "frames": stats.frames,
        "faces": stats.faces,
        "tracks": stats.tracks,
        "matches": stats.matches,
        "seconds": round(seconds, 3),
        "fps": round(stats.frames / seconds, 2) if seconds > 0 else 0.0,
        "decoded_frames": run.decoded,
        "usable_faces": stats.usable_faces,
        "embeddings": stats.embeddings,
        "dropped_frames": run.dropped,
        "stage_seconds": {
            stage: round(run.timings.total(stage), 3)
            for stage in ("decode", "detect", "quality", "track", "embed_batch", "match")
        },
    }


def enrol_folder(models: FaceModels, folder: Path) -> FolderWatchlist:
    """A watchlist folder enrolled as `scan --watchlist` enrols it (and `eval` of a video
    manifest), with a spinner on stderr."""
    with stderr.status("enrolling watchlist photos", spinner="dots"):
        return load_watchlist_folder(folder, models.detector, models.embedder, models.quality)


@contextmanager
def progress_display(
    frame_source: FrameSource, pipeline: CameraPipeline, label: str = "scanning"
) -> Iterator[Callable[[float], None]]:
    """A progress display on stderr (frames, faces, tracks, fps) while a source runs;
    yields what :func:`run_source` calls with the seconds since its start."""
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
    )
    with progress:
        task = progress.add_task(label, total=frame_source.expected_frames, counts="")

        def show(elapsed: float) -> None:
            stats = pipeline.stats
            progress.update(
                task,
                completed=stats.frames,
                counts=f"{stats.frames} frames  {stats.faces} faces  "
                f"{stats.tracks + len(pipeline.tracker.active)} tracks  "
                f"{stats.frames / elapsed if elapsed else 0:.1f} fps",
            )

        yield show


class ModelSwitched(WatchkeeperError):
    """The organisation switched the stored watchlist to another model during a live scan:
    the scan goes on with that model (see :func:`scan`)."""


def stored_watchlist_model(
    store: Store, settings: Settings, organisation: str | None, option: str | None
) -> tuple[str, bool]:
    """The model the organisation's stored watchlist is searched with, and whether it is
    fixed (not just the configuration's default). ``--embedder`` may only name it."""
    with store.session() as session:
        found = access.organisation(session, organisation)
        name = model_in_use(found, settings)
        fixed = found.embedder is not None
    if option is not None and option != name:
        raise ConfigError(
            f"the stored watchlist is searched with {name}, not {option} "
            "(`watchkeeper models use` moves it to another model)"
        )
    return name, fixed


def save_match(event: MatchEvent, folder: Path) -> None:
    """Write a matched track's best chips; nothing else is ever written by `scan`."""
    folder.mkdir(parents=True, exist_ok=True)
    for rank, chip in enumerate(event.shots, start=1):
        path = folder / f"track-{event.track_id:05d}-{event.subject}-{rank}.jpg"
        if not cv2.imwrite(str(path), chip):
            raise WatchkeeperError(f"cannot write {path}")


@app.command()
def scan(
    ctx: typer.Context,
    source: Annotated[
        str,
        typer.Argument(
            help="Video file, rtsp:// or http(s):// URL, webcam index (0) or folder of images."
        ),
    ],
    watchlist: Annotated[
        Path | None,
        typer.Option(help="Folder with one sub-folder of photos per watchlist subject."),
    ] = None,
    db: Annotated[
        bool,
        typer.Option(
            "--db",
            help="Search the stored watchlist (active, approved entries in scope at the "
            "camera's site) and store matches as pending alerts.",
        ),
    ] = False,
    camera: Annotated[
        str | None,
        typer.Option(help="With --db: the registered camera (SITE/NAME) this source is."),
    ] = None,
    organisation: OrganisationOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines on stdout.")] = False,
    fps: Annotated[
        float | None, typer.Option(help="Frames analysed per second; 0 for every frame.")
    ] = None,
    detector: Annotated[str | None, typer.Option(help="Face detector: auto, yunet or hog.")] = None,
    detection_width: Annotated[
        int | None, typer.Option(help="Detect on frames downscaled to this width (pixels).")
    ] = None,
    embedder: Annotated[
        str | None, typer.Option(help="Registry name of the identity embedder.")
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(help="Match threshold (cosine); default: the model's calibrated one."),
    ] = None,
    save_matches: Annotated[
        Path | None,
        typer.Option(help="Write matched tracks' best face crops here (nothing else is kept)."),
    ] = None,
) -> None:
    """Scan a video source against a watchlist; print one line per match. With --db, the
    organisation's model in use is run; if a switch to another model is stored while a
    live source is scanned, the scan goes on with the new model (one summary each)."""
    if (watchlist is None) == (not db):
        raise typer.BadParameter("give either --watchlist FOLDER or --db")
    if camera is not None and not db:
        raise typer.BadParameter("--camera needs --db", param_hint="--camera")
    overrides: dict[str, Any] = {}
    video: dict[str, Any] = {}
    detection: dict[str, Any] = {}
    if fps is not None:
        video["analysis_fps"] = fps
    if detector is not None:
        detection["backend"] = detector
    if detection_width is not None:
        detection["max_width"] = detection_width
    if video:
        overrides["video"] = video
    if detection:
        overrides["detection"] = detection
    if embedder is not None:
        overrides["embedder"] = embedder
    if threshold is not None:
        overrides["matching"] = {"threshold": threshold}
    live: LiveCamera | None = None
    store: Store | None = None
    try:
        chosen = embedder_chosen(ctx.obj.config_file, embedder)
        if db:
            store = open_store(ctx.obj.settings(**overrides))
            overrides["embedder"], fixed = stored_watchlist_model(
                store, ctx.obj.settings(**overrides), organisation, embedder
            )
            chosen = chosen or fixed
        settings = ensure_models(ctx.obj.settings(**overrides), chosen, stderr)
        models = FaceModels.load(settings)
        SourceSpec.parse(source)  # a missing file fails before the watchlist is enrolled
        if store is not None:
            live = LiveCamera(store, models, settings, camera, organisation, notify=True)
            pipeline = live.pipeline
            described = f"stored watchlist for camera {live.name}"
        else:
            assert watchlist is not None
            pipeline = models.pipeline(enrol_folder(models, watchlist).gallery, settings.tracking)
            described = f"watchlist folder {watchlist}"
        # Opened last, so that a live stream starts when analysis can keep up with it.
        frame_source = open_source(source, settings.video)
    except WatchkeeperError as exc:
        if store is not None:
            store.close()
        raise fail(exc) from None
    gallery = pipeline.matcher.gallery
    log.info(
        "%s: %d subjects, %d templates; detector %s; embedder %s; threshold %.3f",
        described,
        len(gallery.subjects),
        len(gallery),
        models.detector.name,
        models.embedder.model_id,
        pipeline.matcher.threshold,
    )
    if not gallery.subjects:
        log.warning("%s has no searchable entries; nothing can match", described)
    switched_warned = False

    def handle(item: CameraEvent | None) -> None:
        nonlocal switched_warned
        if item is not None:
            event = item.event
            record = match_record(event)
            if live is not None:
                alert = live.store(event)
                if alert is None:
                    return  # suspended, restricted or expired since the gallery was loaded
                record |= {"alert": alert.alert_id, "label": alert.label}
            if save_matches is not None:
                save_match(event, save_matches)
            _emit(record, as_json)
        if live is not None and live.refresh() and live.model_changed and not switched_warned:
            switched_warned = True
            if frame_source.live:
                raise ModelSwitched(
                    f"the watchlist is now searched with {live.watchlist.organisation_model}"
                )
            log.warning(
                "the watchlist is now searched with %s; this scan of a file goes on with "
                "%s to its end", live.watchlist.organisation_model, models.embedder.model_id,
            )  # fmt: skip

    sweeper = RetentionSweeper(store, settings.store.sweep_interval_s).start() if store else None
    try:
        while True:
            with progress_display(frame_source, pipeline) as show:
                name = camera or source
                run = run_source(settings, models, name, frame_source, pipeline, handle, show)
            if not isinstance(run.failure, ModelSwitched) or run.interrupted:
                break
            # A live source: go on with the new model (its open tracks were decided, and
            # their matches stored, with the old one).
            _emit(summary_record(run), as_json)
            assert store is not None
            log.warning("%s; the scan goes on with it", run.failure)
            try:
                overrides["embedder"], _ = stored_watchlist_model(
                    store, settings, organisation, None
                )
                settings = ensure_models(ctx.obj.settings(**overrides), True, stderr)
                models = FaceModels.load(settings)
                live = LiveCamera(store, models, settings, camera, organisation, notify=True)
                pipeline = live.pipeline
                frame_source = open_source(source, settings.video)
            except WatchkeeperError as exc:
                raise fail(exc) from None
            switched_warned = False
    finally:
        if sweeper is not None:
            sweeper.stop()
        if store is not None:
            store.close()
    _emit(summary_record(run), as_json)
    failure = None if isinstance(run.failure, ModelSwitched) else run.failure
    interrupted = run.interrupted
    if failure is not None:
        raise fail(failure)
    if interrupted:
        raise typer.Exit(130)
