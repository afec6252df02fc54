"""Bounded frame queues between a camera's decoding thread and the analysis workers.

A live source cannot wait: when analysis falls behind, the oldest frame is
dropped and counted, so what is analysed stays recent and memory stays
bounded. A file can wait, so its decoder blocks instead and every frame is
analysed. Several queues share one condition, so that workers can wait for
"a frame from any camera".
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

Item = TypeVar("Item")


class FrameQueue(Generic[Item]):
    """A bounded FIFO whose full-queue policy is drop-oldest or block.

    Every method takes ``condition``'s lock itself, except those whose names
    end in ``_locked``, which expect the caller to hold it.
    """

    def __init__(self, capacity: int, drop_oldest: bool, condition: threading.Condition) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.drop_oldest = drop_oldest
        self.condition = condition
        self.dropped = 0
        """Items discarded unread because the queue was full (drop-oldest only)."""
        self.closed = False
        self._items: deque[Item] = deque()

    def put(self, item: Item) -> bool:
        """Append ``item``; False (and nothing stored) if the queue is closed.

        When full, a drop-oldest queue discards its oldest item; otherwise the
        caller waits for room (or for :meth:`close`).
        """
        with self.condition:
            while not self.closed and len(self._items) >= self.capacity:
                if self.drop_oldest:
                    self._items.popleft()
                    self.dropped += 1
                else:
                    self.condition.wait()
            if self.closed:
                return False
            self._items.append(item)
            self.condition.notify_all()
            return True

    def close(self) -> None:
        """No more items will be put; items already in it can still be taken."""
        with self.condition:
            self.closed = True
            self.condition.notify_all()

    def take_locked(self) -> Item | None:
        """The oldest item, or None when empty (caller holds the condition)."""
        if not self._items:
            return None
        item = self._items.popleft()
        self.condition.notify_all()  # a blocked producer may continue
        return item

    def exhausted_locked(self) -> bool:
        """Closed and empty: nothing more will ever come out."""
        return self.closed and not self._items

    def __len__(self) -> int:
        return len(self._items)
