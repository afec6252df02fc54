"""A look at a camera's source before it is added: does it give pictures, how big, how fast.

Used by "Test connection" on the cameras page and ``POST /api/cameras/test``. It
stores nothing and keeps no frame: the pictures are read, measured and dropped.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from watchkeeper.config import VideoConfig
from watchkeeper.errors import WatchkeeperError
from watchkeeper.governance.organisation import masked_url
from watchkeeper.video.sources import open_source, redact

RATE_WINDOW_S = 1.0
"""Source time over which the frame rate is measured."""
SETTLE_S = 0.5
"""Source time skipped before measuring: a live stream delivers what the reader buffered
while opening in a burst, which would overstate its rate."""


@dataclass(frozen=True)
class SourceProbe:
    """What a look at a source found. ``source`` is masked: never a password."""

    source: str
    ok: bool
    seconds: float
    """How long the look took."""
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    """Pictures per second over the last second of about one and a half read (media
    time for files, arrival time for live cameras); None when one picture came in time."""
    error: str | None = None
    """Why no picture came, in words, with the source masked."""


def probe_source(source: str, video: VideoConfig, timeout_s: float) -> SourceProbe:
    """Open ``source`` and read its first pictures, for at most about ``timeout_s``
    seconds in all, then close it. A source that has not given a picture by then is
    reported as not answering; its reader is left to give up on its own (in a
    background thread, within the same timeout) so that the caller never waits longer.
    """
    started = time.monotonic()
    deadline = started + timeout_s
    found: dict[str, object] = {}
    config = video.model_copy(
        update={
            "analysis_fps": 0.0,  # every picture, so the rate is the source's own
            "open_timeout_s": timeout_s,
            "read_timeout_s": timeout_s,
            "reconnect_attempts": 0,
        }
    )

    def look() -> None:
        try:
            frames_source = open_source(source, config)
        except WatchkeeperError as exc:
            found["error"] = str(exc)
            return
        frames = frames_source.frames()
        try:
            first = next(frames, None)
            if first is None:
                found["error"] = "it opened but gave no picture"
                return
            found["height"], found["width"] = first.image.shape[:2]
            stamps = [first.timestamp]
            for frame in frames:
                stamps.append(frame.timestamp)
                if stamps[-1] - stamps[0] >= SETTLE_S + RATE_WINDOW_S:
                    break
                if time.monotonic() > deadline - 0.25:
                    break
            window = [t for t in stamps if t >= stamps[-1] - RATE_WINDOW_S]
            if window[-1] > window[0]:
                found["fps"] = round((len(window) - 1) / (window[-1] - window[0]), 1)
        except WatchkeeperError as exc:
            found.setdefault("error", str(exc))
        finally:
            frames.close()
            frames_source.close()

    reader = threading.Thread(target=look, name="camera-probe", daemon=True)
    reader.start()
    reader.join(timeout_s)
    seconds = round(time.monotonic() - started, 2)
    masked = masked_url(source)
    if "width" in found:
        return SourceProbe(
            masked,
            True,
            seconds,
            found["width"],  # type: ignore[arg-type]
            found["height"],  # type: ignore[arg-type]
            found.get("fps"),  # type: ignore[arg-type]
        )
    error = found.get("error")
    if error is None:
        error = f"no picture within {timeout_s:g} s: the camera did not answer in time"
    return SourceProbe(masked, False, seconds, error=_scrubbed(str(error), source))


def _scrubbed(text: str, source: str) -> str:
    """``text`` with the source, however it was written into it, masked."""
    masked = masked_url(source)
    for written in {source, redact(source)}:
        if written != masked:
            text = text.replace(written, masked)
    return text
