"""Bounded frame queues: drop-oldest for live sources, waiting for files."""

from __future__ import annotations

import threading
import time

import pytest

from watchkeeper.streaming.queues import FrameQueue
from watchkeeper.streaming.timing import StageTimings


def drain(queue: FrameQueue[int]) -> list[int]:
    with queue.condition:
        items = []
        while (item := queue.take_locked()) is not None:
            items.append(item)
        return items


@pytest.mark.parametrize(
    ("capacity", "puts", "kept", "dropped"),
    [(3, 2, [0, 1], 0), (3, 3, [0, 1, 2], 0), (3, 7, [4, 5, 6], 4), (1, 5, [4], 4)],
)
def test_a_full_live_queue_drops_its_oldest_items(
    capacity: int, puts: int, kept: list[int], dropped: int
) -> None:
    queue: FrameQueue[int] = FrameQueue(capacity, True, threading.Condition())
    assert all(queue.put(item) for item in range(puts))
    assert drain(queue) == kept
    assert queue.dropped == dropped


def test_a_full_file_queue_makes_the_producer_wait_and_loses_nothing() -> None:
    queue: FrameQueue[int] = FrameQueue(2, False, threading.Condition())
    produced = threading.Thread(target=lambda: [queue.put(item) for item in range(10)])
    produced.start()
    taken: list[int] = []
    while len(taken) < 10:
        with queue.condition:
            assert len(queue) <= 2
            item = queue.take_locked()
            if item is None:
                queue.condition.wait(0.1)
            else:
                taken.append(item)
    produced.join(5)
    assert taken == list(range(10))
    assert queue.dropped == 0


def test_closing_releases_a_waiting_producer_and_refuses_new_items() -> None:
    queue: FrameQueue[int] = FrameQueue(1, False, threading.Condition())
    queue.put(0)
    results: list[bool] = []
    blocked = threading.Thread(target=lambda: results.append(queue.put(1)))
    blocked.start()
    time.sleep(0.05)
    assert blocked.is_alive(), "the producer waits for room"
    queue.close()
    blocked.join(5)
    assert results == [False]
    with queue.condition:
        assert not queue.exhausted_locked(), "items put before closing can still be taken"
        assert queue.take_locked() == 0
        assert queue.exhausted_locked()
    assert queue.put(2) is False


def test_stage_timings_percentiles_and_totals() -> None:
    timings = StageTimings(window=100)
    for value in range(1, 201):  # 1..200 ms; the window keeps the last 100
        timings.add("detect", value / 1000)
    summary = timings.summary()["detect"]
    assert summary.count == 200
    assert summary.total_s == pytest.approx(sum(range(1, 201)) / 1000)
    assert summary.p50_s == pytest.approx(0.1505)
    assert summary.p95_s == pytest.approx(0.19505)
    assert summary.max_s == pytest.approx(0.2)
    assert timings.total("embed") == 0.0
    assert "embed" not in timings.summary()
