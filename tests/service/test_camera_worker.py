"""A camera's worker process says why it ended, in words the cameras page can show."""

from __future__ import annotations

import multiprocessing
import uuid

from tests.support.shop import Shop
from watchkeeper.config import Settings
from watchkeeper.service.camera_worker import EXIT_FAILED, run_camera


def test_an_unexpected_failure_is_reported_in_one_line_not_a_traceback(
    shop: Shop, store_settings: Settings
) -> None:
    """A camera that is not in the database (removed as its worker started) fails inside
    the worker with a database exception: the supervisor is told its type and message,
    and the worker ends with EXIT_FAILED (the traceback goes to the log)."""
    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    stop, reload = context.Event(), context.Event()
    worker = context.Process(
        target=run_camera, args=(store_settings, uuid.uuid4(), messages, stop, reload)
    )
    worker.start()
    kind, text = messages.get(timeout=120)
    worker.join(60)
    assert worker.exitcode == EXIT_FAILED
    assert kind == "error"
    assert text.startswith("unexpected error: NoResultFound: ")
    assert "\n" not in text
    assert "Traceback" not in text
