"""Frame sources for engine tests: real clip frames, delivered like a camera would."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tests.support.data import read_frames
from watchkeeper.config import VideoConfig
from watchkeeper.video.sources import Frame, FrameSource, SourceKind, SourceSpec


class PacedClip(FrameSource):
    """A clip's frames (decoded once, kept in memory) delivered at ``fps`` in real time,
    as a live camera does: it never waits for its reader.

    ``count`` frames are delivered, looping over the clip if it is shorter.
    ``live=False`` makes it behave like a file instead (the reader may make it wait).
    """

    def __init__(
        self, clip: Path, fps: float, count: int, live: bool = True, limit: int | None = None
    ) -> None:
        super().__init__(SourceSpec(SourceKind.STREAM, f"paced:{clip.name}"), VideoConfig())
        self.images: list[np.ndarray] = read_frames(clip, limit=limit)
        self.fps = fps
        self.count = count
        self.live = live
        self.delivered = 0

    def frames(self) -> Iterator[Frame]:
        started = time.monotonic()
        for index, image in zip(range(self.count), itertools.cycle(self.images), strict=False):
            due = started + index / self.fps
            time.sleep(max(0.0, due - time.monotonic()))
            self.decoded += 1
            self.delivered += 1
            yield Frame(image, index / self.fps, index)

    def close(self) -> None:
        """Nothing to release."""
