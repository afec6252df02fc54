"""One camera's chain in the process that runs it: the stored watchlist it searches and
its pipeline (:class:`LiveCamera`), and a source run through the streaming engine to
its end (:func:`run_source`). The camera workers of `serve`, `scan` and `eval` run
them; :mod:`watchkeeper.service.runtime` tells the whole story."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from watchkeeper.config import Settings
from watchkeeper.errors import WatchkeeperError
from watchkeeper.governance.live import CameraWatchlist, StoredAlert
from watchkeeper.pipeline import CameraPipeline, FaceModels, MatchEvent, PipelineStats
from watchkeeper.store.database import Store
from watchkeeper.streaming.engine import CameraEvent, RecognitionEngine
from watchkeeper.streaming.timing import StageTimings
from watchkeeper.video.sources import FrameSource


class LiveCamera:
    """One registered camera against the stored watchlist: the gallery of its site that
    it may search (only its model's templates), and its pipeline deciding against it.

    :meth:`refresh` reloads the gallery when it is due (``store.watchlist_refresh_s``) or
    when asked, and swaps the pipeline's matcher whole, with the threshold for the new
    watchlist's size. With ``notify_settings``, :meth:`store` also queues each alert
    for the notifications configured there (in the alert's transaction)."""

    def __init__(
        self,
        store: Store,
        models: FaceModels,
        settings: Settings,
        camera_name: str | None,
        organisation: str | None = None,
        notify: bool = False,
    ) -> None:
        self.models = models
        self.watchlist = CameraWatchlist(
            store,
            camera_name,
            models.embedder.model_id,
            settings.store.watchlist_refresh_s,
            organisation,
            settings=settings if notify else None,
        )
        self.pipeline = models.pipeline(self.watchlist.gallery, settings.tracking)

    @property
    def name(self) -> str:
        return self.watchlist.camera_name

    @property
    def model_changed(self) -> bool:
        """The organisation now searches its watchlist with another model (see
        :attr:`CameraWatchlist.model_changed`): this camera must be started anew."""
        return self.watchlist.model_changed

    def refresh(self, now: bool = False) -> bool:
        """Reload the gallery if it is due, or ``now``; whether it was reloaded."""
        if not now and not self.watchlist.refresh_due():
            return False
        gallery = self.watchlist.load()  # this model's templates only, whatever happened
        self.pipeline.matcher = self.models.matcher(gallery)
        return True

    def store(self, event: MatchEvent) -> StoredAlert | None:
        """Store a decision as a pending alert; None if its entry is no longer searchable."""
        return self.watchlist.record(event)


@dataclass(frozen=True)
class SourceRun:
    """How one source's run ended."""

    stats: PipelineStats
    seconds: float
    decoded: int
    dropped: int
    timings: StageTimings
    failure: WatchkeeperError | None
    """Why the source ended early (every match decided before it was still handled)."""
    interrupted: bool
    """Ctrl-C stopped it (what was decoded was still decided)."""


def run_source(
    settings: Settings,
    models: FaceModels,
    name: str,
    frame_source: FrameSource,
    pipeline: CameraPipeline,
    handle: Callable[[CameraEvent | None], None],
    progress: Callable[[float], None] | None = None,
) -> SourceRun:
    """Run one source through the streaming engine to its end (or Ctrl-C).

    ``handle`` gets every decision as it is made, and ``None`` now and then (for
    periodic work such as refreshing a watchlist); ``progress`` gets the seconds since
    the start after each. A :class:`WatchkeeperError` from the source or from
    ``handle`` ends the run after what was already decoded has been decided."""
    engine = RecognitionEngine.with_models(settings, models)
    camera_input = engine.add_camera(name, frame_source, pipeline)
    failure: WatchkeeperError | None = None
    interrupted = False
    started = time.perf_counter()

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
        for item in engine.events():
            handle(item)
            if progress is not None:
                progress(time.perf_counter() - started)
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
