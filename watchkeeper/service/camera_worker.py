"""One camera in a process of its own, for the supervisor of `watchkeeper serve`.

The worker loads the models, the camera's searchable watchlist and its source,
runs the streaming engine and sends the supervisor, through a queue:

- ``("running", model_id)`` once it streams;
- ``("health", frames, fps, dropped)`` every second, frames or not;
- ``("match", MatchEvent, threshold)`` for each match (the supervisor stores it);
- ``("error", text)`` when the source fails or cannot be opened.

It reloads the watchlist within a quarter of a second of the supervisor setting
its ``reload`` event (an entry approved, suspended or erased), and every
``store.watchlist_refresh_s`` regardless (the backstop for expiries and for
changes made elsewhere, e.g. on the command line).

Its exit code says how it ended: 0 when stopped or when a file source ended,
2 after a source error, 1 after anything unexpected. Faces that match nobody
never leave it.
"""

from __future__ import annotations

import multiprocessing
import signal
import time
import traceback
import uuid
from multiprocessing.synchronize import Event as SyncEvent

from watchkeeper.config import Settings
from watchkeeper.errors import WatchkeeperError
from watchkeeper.governance.live import CameraWatchlist
from watchkeeper.governance.organisation import camera_source
from watchkeeper.models.registry import ModelRegistry
from watchkeeper.pipeline import CameraPipeline, Matcher, resolve_threshold
from watchkeeper.store.database import open_store
from watchkeeper.store.models import Camera
from watchkeeper.streaming.engine import RecognitionEngine
from watchkeeper.video.sources import open_source
from watchkeeper.vision.detection import create_detector
from watchkeeper.vision.embedding import create_embedder

HEALTH_INTERVAL_S = 1.0
EXIT_STOPPED = 0
EXIT_FAILED = 1
EXIT_SOURCE_ERROR = 2

Messages = multiprocessing.Queue  # of tuple[Any, ...]


def run_camera(
    settings: Settings,
    camera_id: uuid.UUID,
    messages: Messages,
    stop: SyncEvent,
    reload: SyncEvent,
) -> None:
    """Process entry point. Ctrl-C goes to the whole process group: the supervisor
    decides when workers stop, so they ignore it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        code = _watch(settings, camera_id, messages, stop, reload)
    except WatchkeeperError as exc:
        messages.put(("error", str(exc)))
        code = EXIT_SOURCE_ERROR
    except BaseException:
        messages.put(("error", traceback.format_exc(limit=4)))
        code = EXIT_FAILED
    raise SystemExit(code)


def _watch(
    settings: Settings,
    camera_id: uuid.UUID,
    messages: Messages,
    stop: SyncEvent,
    reload: SyncEvent,
) -> int:
    store = open_store(settings)
    try:
        registry = ModelRegistry(settings.models_dir)
        detector = create_detector(settings.detection, registry)
        embedder = create_embedder(settings.embedder, registry, settings.inference)
        with store.session() as session:
            camera = session.get_one(Camera, camera_id)
            name = f"{camera.site.name}/{camera.name}"
            source = camera_source(store.keys, camera)
        watchlist = CameraWatchlist(
            store, name, embedder.model_id, settings.store.watchlist_refresh_s, None
        )

        def matcher() -> Matcher:
            size = len(watchlist.gallery.subjects)
            threshold = resolve_threshold(settings, registry, size)
            return Matcher(watchlist.gallery, threshold, settings.matching.top_k)

        pipeline = CameraPipeline(embedder.model_id, matcher(), settings.tracking)
        engine = RecognitionEngine.with_models(settings, registry, detector, embedder)
        feed = engine.add_camera(name, open_source(source, settings.video), pipeline)
        engine.start()
        messages.put(("running", embedder.model_id))
        reported = 0.0
        for item in engine.events(poll_s=0.25):
            if stop.is_set():
                engine.stop()
            if item is not None:
                messages.put(("match", item.event, pipeline.matcher.threshold))
            if time.monotonic() - reported >= HEALTH_INTERVAL_S:
                reported = time.monotonic()
                stats = pipeline.stats
                messages.put(("health", stats.frames, feed.analysed_fps, feed.queue.dropped))
            if reload.is_set() or watchlist.refresh_due():
                reload.clear()  # before loading: a change committed meanwhile asks again
                watchlist.load()
                pipeline.matcher = matcher()
        if feed.error is not None:
            messages.put(("error", str(feed.error)))
            return EXIT_SOURCE_ERROR
        return EXIT_STOPPED
    finally:
        store.close()
