"""Alerts pushed to every open alert page, as they are stored.

The supervisor's camera threads call :meth:`AlertBroadcaster.publish`; each
browser's server-sent-events request holds a subscription, an asyncio queue
fed from those threads through its event loop. A subscriber that falls
:data:`BACKLOG` messages behind is dropped (its page reconnects and reloads
what it missed from the database) rather than holding memory without bound.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

BACKLOG = 1000


class AlertBroadcaster:
    def __init__(self) -> None:
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Any]]] = set()
        self._lock = threading.Lock()

    def publish(self, message: dict[str, Any]) -> None:
        """Hand ``message`` to every subscriber (from any thread; never blocks)."""
        with self._lock:
            subscribers = list(self._subscribers)
        for loop, inbox in subscribers:
            try:
                loop.call_soon_threadsafe(self._deliver, loop, inbox, message)
            except RuntimeError:  # its event loop has closed
                self._drop(loop, inbox)

    def _deliver(
        self, loop: asyncio.AbstractEventLoop, inbox: asyncio.Queue[Any], message: Any
    ) -> None:
        if inbox.qsize() >= BACKLOG:
            self._drop(loop, inbox)
            inbox.put_nowait(None)  # tells the subscriber to end
        else:
            inbox.put_nowait(message)

    def _drop(self, loop: asyncio.AbstractEventLoop, inbox: asyncio.Queue[Any]) -> None:
        with self._lock:
            self._subscribers.discard((loop, inbox))

    async def subscribe(self, heartbeat_s: float = 15.0) -> AsyncIterator[dict[str, Any] | None]:
        """Messages as they are published, and None every ``heartbeat_s`` seconds
        without one (to keep the connection open through proxies)."""
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[Any] = asyncio.Queue()
        entry = (loop, inbox)
        with self._lock:
            self._subscribers.add(entry)
        try:
            while True:
                try:
                    message = await asyncio.wait_for(inbox.get(), heartbeat_s)
                except TimeoutError:
                    yield None
                    continue
                if message is None:
                    return
                yield message
        finally:
            self._drop(loop, inbox)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)
