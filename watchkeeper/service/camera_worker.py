"""One camera in a process of its own, for the supervisor of `watchkeeper serve`.

The worker loads the models, the camera's searchable watchlist and its source,
runs the streaming engine and sends the supervisor, through a queue:

- ``("running", model_id)`` once it streams;
- ``("health", frames, fps, dropped, delay, waiting)`` every second, frames or not
  (``delay``: how late its decisions come, in seconds, or None before the first;
  ``waiting``: face chips waiting to be embedded);
- ``("match", MatchEvent)`` for each match (the supervisor stores it);
- ``("error", text)`` when the source fails or cannot be opened.

It reloads the watchlist within a quarter of a second of the supervisor setting
its ``reload`` event (an entry approved, suspended or erased), and every
``store.watchlist_refresh_s`` regardless (the backstop for expiries and for
changes made elsewhere, e.g. on the command line).

It runs the organisation's model in use (its watchlist's model, not necessarily
the configured one). When a reload finds that a model switch changed it, the
worker decides its open tracks with the model it has, stores their matches and
ends with :data:`EXIT_MODEL_CHANGED`; the supervisor starts a new one at once,
which loads the new model and its gallery. A camera never searches one model's
templates with another model's embedder.

It dies with the service: if the process that started it ends, however it ends,
the kernel ends the worker too (see :mod:`watchkeeper.service.lifetime`).

Its exit code says how it ended: 0 when stopped or when a file source ended,
2 after a source error, 3 after a model switch, 1 after anything unexpected.
Faces that match nobody never leave it.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import time
import uuid
from multiprocessing.synchronize import Event as SyncEvent

from watchkeeper.config import Settings
from watchkeeper.errors import WatchkeeperError
from watchkeeper.governance.organisation import camera_source
from watchkeeper.governance.subjects import model_in_use
from watchkeeper.pipeline import FaceModels
from watchkeeper.service.lifetime import die_with_parent
from watchkeeper.service.live_camera import LiveCamera
from watchkeeper.store.database import open_store
from watchkeeper.store.models import Camera, Organisation
from watchkeeper.streaming.engine import RecognitionEngine
from watchkeeper.video.sources import open_source

log = logging.getLogger(__name__)

HEALTH_INTERVAL_S = 1.0
EXIT_STOPPED = 0
EXIT_FAILED = 1
EXIT_SOURCE_ERROR = 2
EXIT_MODEL_CHANGED = 3

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
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        code = _watch(settings, camera_id, messages, stop, reload)
    except WatchkeeperError as exc:
        messages.put(("error", str(exc)))
        code = EXIT_SOURCE_ERROR
    except BaseException as exc:
        # The cameras page says what went wrong in words; the traceback goes to the log.
        log.exception("camera worker failed")
        messages.put(("error", f"unexpected error: {type(exc).__name__}: {exc}"))
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
        with store.session() as session:
            camera = session.get_one(Camera, camera_id)
            name = f"{camera.site.name}/{camera.name}"
            source = camera_source(store.keys, camera)
            organisation = session.get_one(Organisation, camera.site.organisation_id)
            # From here on, "the embedder" (thresholds included) is the watchlist's.
            settings = settings.model_copy(
                update={"embedder": model_in_use(organisation, settings)}
            )
        models = FaceModels.load(settings)
        camera_chain = LiveCamera(store, models, settings, name)
        if camera_chain.model_changed:  # a switch finished while the models were loading
            return EXIT_MODEL_CHANGED
        pipeline = camera_chain.pipeline
        engine = RecognitionEngine.with_models(settings, models)
        feed = engine.add_camera(name, open_source(source, settings.video), pipeline)
        engine.start()
        messages.put(("running", models.embedder.model_id))
        reported = 0.0
        switched = False
        for item in engine.events(poll_s=0.25):
            if stop.is_set() or switched:
                engine.stop()
            if item is not None:
                messages.put(("match", item.event))
            if time.monotonic() - reported >= HEALTH_INTERVAL_S:
                reported = time.monotonic()
                stats = pipeline.stats
                messages.put(
                    (
                        "health",
                        stats.frames,
                        feed.analysed_fps,
                        feed.queue.dropped,
                        engine.decision_delay(feed),
                        engine.waiting_chips,
                    )
                )
            asked = reload.is_set()
            if asked:
                reload.clear()  # before loading: a change committed meanwhile asks again
            if camera_chain.refresh(now=asked) and camera_chain.model_changed and not switched:
                switched = True
                messages.put(("model", camera_chain.watchlist.organisation_model))
        if switched and not stop.is_set():
            return EXIT_MODEL_CHANGED
        if feed.error is not None:
            messages.put(("error", str(feed.error)))
            return EXIT_SOURCE_ERROR
        return EXIT_STOPPED
    finally:
        store.close()
