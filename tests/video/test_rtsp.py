"""Reading an RTSP camera: a real RTSP server on 127.0.0.1, which also goes away mid-stream.

The server (tests/support/rtsp_server.py) speaks RTSP with RTP over TCP and
serves the debate clip in real time, like an IP camera; our client is FFmpeg
inside PyAV.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest

from tests.support.data import DEBATE
from tests.support.rtsp_server import RtspServer
from watchkeeper.config import VideoConfig
from watchkeeper.errors import StreamLostError
from watchkeeper.video.sources import open_source

FAST_RECONNECT = VideoConfig(
    analysis_fps=5,
    open_timeout_s=5,
    read_timeout_s=3,
    reconnect_initial_s=0.25,
    reconnect_max_s=1.0,
    reconnect_attempts=3,
)


def test_frames_arrive_live_at_the_analysis_rate() -> None:
    with RtspServer(DEBATE) as server:
        source = open_source(server.url, FAST_RECONNECT)
        assert source.live
        frames = []
        for frame in source.frames():
            frames.append(frame)
            if len(frames) == 15:
                break
        source.close()
    assert frames[0].image.shape == (368, 640, 3)
    gaps = np.diff([f.timestamp for f in frames])
    # Live timestamps are arrival times: 5 analysed frames per second of wall clock.
    assert gaps.mean() == pytest.approx(0.2, abs=0.05)
    assert source.decoded > 2 * len(frames)


def test_a_camera_that_drops_and_returns_is_reconnected(caplog: pytest.LogCaptureFixture) -> None:
    server = RtspServer(DEBATE)
    server.start()
    port = server.port
    replacement = RtspServer(DEBATE, port=port)

    def power_cycle() -> None:
        server.stop()
        time.sleep(1.0)
        replacement.start()

    source = open_source(server.url, FAST_RECONNECT)
    stamps = []
    outage = threading.Timer(3.0, power_cycle)
    outage.start()
    try:
        with caplog.at_level(logging.INFO, logger="watchkeeper"):
            for frame in source.frames():
                stamps.append(frame.timestamp)
                if frame.timestamp > 8.0:
                    break
    finally:
        outage.join()
        source.close()
        replacement.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert any("dropped" in m for m in messages)
    assert any(m.startswith("reconnected to stream rtsp://127.0.0.1") for m in messages)
    gaps = np.diff(stamps)
    assert gaps.max() > 0.9, "the outage shows as a gap in arrival time"
    assert sum(s > stamps[int(np.argmax(gaps))] for s in stamps) >= 10, "frames after reconnecting"


def test_a_camera_that_stays_away_ends_with_stream_lost() -> None:
    server = RtspServer(DEBATE)
    server.start()
    source = open_source(server.url, FAST_RECONNECT)
    threading.Timer(2.0, server.stop).start()
    frames = source.frames()
    received = [next(frames) for _ in range(5)]
    with pytest.raises(StreamLostError, match=r"lost: no connection after 3 attempts"):
        list(frames)
    source.close()
    assert len(received) == 5
