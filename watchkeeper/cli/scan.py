"""`watchkeeper scan`: a video source against a watchlist folder or the stored watchlist."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
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
from watchkeeper.governance.live import CameraWatchlist
from watchkeeper.governance.retention import RetentionSweeper
from watchkeeper.governance.subjects import model_in_use
from watchkeeper.matching.gallery import Gallery
from watchkeeper.matching.watchlist import FolderWatchlist, load_watchlist_folder
from watchkeeper.models.provision import embedder_chosen, ensure_models
from watchkeeper.models.registry import ModelRegistry
from watchkeeper.pipeline import (
    CameraPipeline,
    Matcher,
    MatchEvent,
    PipelineStats,
    resolve_threshold,
)
from watchkeeper.store.database import Store, open_store
from watchkeeper.streaming.engine import CameraEvent, RecognitionEngine
from watchkeeper.streaming.timing import StageTimings
from watchkeeper.video.sources import FrameSource, SourceSpec, open_source
from watchkeeper.vision.detection import FaceDetector, create_detector
from watchkeeper.vision.embedding import FaceEmbedder, create_embedder


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


def summary_record(
    stats: PipelineStats, seconds: float, decoded: int, dropped: int, timings: StageTimings
) -> dict[str, Any]:
    return {
        "type": "summary",
        "frames": stats.frames,
        "faces": stats.faces,
        "tracks": stats.tracks,
        "matches": stats.matches,
        "seconds": round(seconds, 3),
        "fps": round(stats.frames / seconds, 2) if seconds > 0 else 0.0,
        "decoded_frames": decoded,
        "usable_faces": stats.usable_faces,
        "embeddings": stats.embeddings,
        "dropped_frames": dropped,
        "stage_seconds": {
            stage: round(timings.total(stage), 3)
            for stage in ("decode", "detect", "quality", "track", "embed_batch", "match")
        },
    }


@dataclass(frozen=True)
class Recognition:
    """The models a scan runs with, loaded once: what `scan` and `eval` of a video
    manifest share, so that an evaluation measures exactly the live pipeline."""

    settings: Settings
    registry: ModelRegistry
    detector: FaceDetector
    embedder: FaceEmbedder

    @classmethod
    def load(cls, settings: Settings) -> Recognition:
        registry = ModelRegistry(settings.models_dir)
        return cls(
            settings,
            registry,
            create_detector(settings.detection, registry),
            create_embedder(settings.embedder, registry, settings.inference),
        )

    def enrol_folder(self, folder: Path) -> FolderWatchlist:
        """A watchlist folder enrolled as `scan --watchlist` enrols it."""
        with stderr.status("enrolling watchlist photos", spinner="dots"):
            return load_watchlist_folder(
                folder, self.detector, self.embedder, self.settings.quality
            )

    def threshold(self, watchlist_size: int) -> float:
        return resolve_threshold(self.settings, self.registry, watchlist_size)

    def pipeline(self, gallery: Gallery, threshold: float) -> CameraPipeline:
        return CameraPipeline(
            self.embedder.model_id,
            Matcher(gallery, threshold, self.settings.matching.top_k),
            self.settings.tracking,
        )


@dataclass(frozen=True)
class SourceRun:
    """How one source's scan ended."""

    stats: PipelineStats
    seconds: float
    decoded: int
    dropped: int
    timings: StageTimings
    failure: WatchkeeperError | None
    """Why the source ended early (every match decided before it was still handled)."""
    interrupted: bool
    """Ctrl-C stopped it (what was decoded was still decided)."""

    def summary(self) -> dict[str, Any]:
        return summary_record(self.stats, self.seconds, self.decoded, self.dropped, self.timings)


def run_source(
    recognition: Recognition,
    name: str,
    frame_source: FrameSource,
    pipeline: CameraPipeline,
    handle: Callable[[CameraEvent | None], None],
    label: str = "scanning",
) -> SourceRun:
    """Run one source through the engine to its end with a progress display on stderr.

    ``handle`` gets every match event as it is decided, and ``None`` now and then
    (for periodic work). A :class:`WatchkeeperError` from the source or from
    ``handle`` ends the run after what was already decoded has been decided.
    """
    engine = RecognitionEngine.with_models(
        recognition.settings, recognition.registry, recognition.detector, recognition.embedder
    )
    camera_input = engine.add_camera(name, frame_source, pipeline)
    failure: WatchkeeperError | None = None
    interrupted = False
    started = time.perf_counter()
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
    )

    def drain() -> None:
        """Decide what was already decoded, handling every match even after a failure."""
        nonlocal failure
        for item in engine.events():
            try:
                handle(item)
            except WatchkeeperError as exc:
                failure = failure or exc

    engine.start()
    try:
        with progress:
            task = progress.add_task(label, total=frame_source.expected_frames, counts="")
            for item in engine.events():
                handle(item)
                stats = pipeline.stats
                elapsed = time.perf_counter() - started
                progress.update(
                    task,
                    completed=stats.frames,
                    counts=f"{stats.frames} frames  {stats.faces} faces  "
                    f"{stats.tracks + len(pipeline.tracker.active)} tracks  "
                    f"{stats.frames / elapsed if elapsed else 0:.1f} fps",
                )
    except KeyboardInterrupt:
        interrupted = True
        engine.stop()
        drain()
    except WatchkeeperError as exc:
        failure = exc
        engine.stop()
        drain()
    if isinstance(camera_input.error, WatchkeeperError):
        failure = failure or camera_input.error
    elif camera_input.error is not None:
        raise camera_input.error
    return SourceRun(
        pipeline.stats,
        time.perf_counter() - started,
        frame_source.decoded,
        camera_input.queue.dropped,
        engine.timings,
        failure,
        interrupted,
    )


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
    stored: CameraWatchlist | None = None
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
        recognition = Recognition.load(settings)
        face_embedder = recognition.embedder
        SourceSpec.parse(source)  # a missing file fails before the watchlist is enrolled
        if store is not None:
            stored = CameraWatchlist(
                store,
                camera,
                face_embedder.model_id,
                settings.store.watchlist_refresh_s,
                organisation,
                settings=settings,
            )
            gallery = stored.gallery
            described = f"stored watchlist for camera {stored.camera_name}"
        else:
            assert watchlist is not None
            gallery = recognition.enrol_folder(watchlist).gallery
            described = f"watchlist folder {watchlist}"
        match_threshold = recognition.threshold(len(gallery.subjects))
        # Opened last, so that a live stream starts when analysis can keep up with it.
        frame_source = open_source(source, settings.video)
    except WatchkeeperError as exc:
        if store is not None:
            store.close()
        raise fail(exc) from None
    log.info(
        "%s: %d subjects, %d templates; detector %s; embedder %s; threshold %.3f",
        described,
        len(gallery.subjects),
        len(gallery),
        recognition.detector.name,
        face_embedder.model_id,
        match_threshold,
    )
    if not gallery.subjects:
        log.warning("%s has no searchable entries; nothing can match", described)
    pipeline = recognition.pipeline(gallery, match_threshold)
    switched_warned = False

    def handle(item: CameraEvent | None) -> None:
        nonlocal switched_warned
        if item is not None:
            event = item.event
            record = match_record(event)
            if stored is not None:
                alert = stored.record(event, pipeline.matcher.threshold)
                if alert is None:
                    return  # suspended, restricted or expired since the gallery was loaded
                record |= {"alert": alert.alert_id, "label": alert.label}
            if save_matches is not None:
                save_match(event, save_matches)
            _emit(record, as_json)
        if stored is not None and stored.refresh_due():
            refreshed = stored.load()  # this model's templates only, whatever happened
            pipeline.matcher = Matcher(
                refreshed,
                recognition.threshold(len(refreshed.subjects)),
                settings.matching.top_k,
            )
            if stored.model_changed and not switched_warned:
                switched_warned = True
                if frame_source.live:
                    raise ModelSwitched(
                        f"the watchlist is now searched with {stored.organisation_model}"
                    )
                log.warning(
                    "the watchlist is now searched with %s; this scan of a file goes on with "
                    "%s to its end", stored.organisation_model, face_embedder.model_id,
                )  # fmt: skip

    sweeper = RetentionSweeper(store, settings.store.sweep_interval_s).start() if store else None
    try:
        while True:
            run = run_source(recognition, camera or source, frame_source, pipeline, handle)
            if not isinstance(run.failure, ModelSwitched) or run.interrupted:
                break
            # A live source: go on with the new model (its open tracks were decided, and
            # their matches stored, with the old one).
            _emit(run.summary(), as_json)
            assert stored is not None
            assert store is not None
            log.warning("%s; the scan goes on with it", run.failure)
            try:
                overrides["embedder"], _ = stored_watchlist_model(
                    store, settings, organisation, None
                )
                settings = ensure_models(ctx.obj.settings(**overrides), True, stderr)
                recognition = Recognition.load(settings)
                face_embedder = recognition.embedder
                stored = CameraWatchlist(
                    store, camera, face_embedder.model_id, settings.store.watchlist_refresh_s,
                    organisation, settings=settings,
                )  # fmt: skip
                pipeline = recognition.pipeline(
                    stored.gallery, recognition.threshold(len(stored.gallery.subjects))
                )
                frame_source = open_source(source, settings.video)
            except WatchkeeperError as exc:
                raise fail(exc) from None
            switched_warned = False
    finally:
        if sweeper is not None:
            sweeper.stop()
        if store is not None:
            store.close()
    _emit(run.summary(), as_json)
    failure = None if isinstance(run.failure, ModelSwitched) else run.failure
    interrupted = run.interrupted
    if failure is not None:
        raise fail(failure)
    if interrupted:
        raise typer.Exit(130)
