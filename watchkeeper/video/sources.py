"""Video sources: files, network streams, webcams and image folders, as frames.

Everything with a codec is read with PyAV (FFmpeg). Each source yields
:class:`Frame` objects already sampled at the analysis rate: frames between
samples are decoded (inter-frame codecs need them) but never converted to
pixels, which is most of the cost saved.

Timestamps are seconds from the start of the source: media time for files,
arrival time for live sources (RTSP, HTTP live streams, webcams), so that a
reconnection leaves a real gap rather than restarting at zero.

Live sources reconnect with exponential backoff when they drop or end; a
file that cannot be decoded ends with a :class:`SourceError` naming it.
"""

from __future__ import annotations

import logging
import platform
import re
import stat
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import av
import av.error
import numpy as np

from watchkeeper.config import VideoConfig
from watchkeeper.errors import ImageError, SourceError, StreamLostError
from watchkeeper.vision.images import IMAGE_SUFFIXES, read_image

log = logging.getLogger(__name__)

_STREAM_SCHEMES = {"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt"}
_ALWAYS_LIVE_SCHEMES = {"rtsp", "rtsps", "rtmp", "rtmps", "udp", "tcp", "srt"}


class SourceKind(StrEnum):
    FILE = "file"
    STREAM = "stream"
    WEBCAM = "webcam"
    IMAGES = "images"


@dataclass(frozen=True, slots=True)
class Frame:
    """One analysed picture."""

    image: np.ndarray
    """H x W x 3 BGR uint8."""
    timestamp: float
    """Seconds from the start of the source."""
    index: int
    """Position among all decoded frames (or images), from 0."""
    name: str | None = None
    """File name, for image-folder sources."""


def redact(location: str) -> str:
    """A source location safe to print: any password in a URL is masked."""
    parts = urlsplit(location)
    if parts.password is None:
        return location
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


@dataclass(frozen=True)
class SourceSpec:
    """What the user asked to read, classified."""

    kind: SourceKind
    location: str

    @classmethod
    def parse(cls, text: str) -> SourceSpec:
        """Classify a SOURCE argument: webcam index, URL, image folder or video file."""
        if re.fullmatch(r"\d{1,3}", text):
            return cls(SourceKind.WEBCAM, text)
        scheme = urlsplit(text).scheme.lower()
        if scheme in _STREAM_SCHEMES:
            return cls(SourceKind.STREAM, text)
        path = Path(text).expanduser()
        try:
            mode = path.stat().st_mode
        except (OSError, ValueError) as exc:  # missing, a name too long, a NUL in it
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            if isinstance(exc, FileNotFoundError):
                reason = "no such file, folder or URL"
            raise SourceError(f"cannot open source {text!r}: {reason}") from None
        if stat.S_ISDIR(mode):
            return cls(SourceKind.IMAGES, str(path))
        if stat.S_ISCHR(mode):
            return cls(SourceKind.WEBCAM, str(path))
        if stat.S_ISREG(mode):
            return cls(SourceKind.FILE, str(path))
        raise SourceError(f"cannot open source {text!r}: not a file, folder or device")

    def describe(self) -> str:
        return f"{self.kind.value} {redact(self.location)}"


class FrameSource(ABC):
    """Frames from one source, sampled at ``analysis_fps``."""

    #: False when consecutive frames are unrelated pictures (image folders), so
    #: that tracking must not join faces across them.
    continuous: bool = True
    #: True for sources that do not wait for their reader (cameras, live streams):
    #: frames that cannot be analysed in time are dropped rather than queued.
    live: bool = False

    def __init__(self, spec: SourceSpec, config: VideoConfig) -> None:
        self.spec = spec
        self.config = config
        self.decoded = 0
        """Frames (or images) read so far, analysed or not."""
        self.decoder_threads = 0
        """Threads decoding this source (0: the decoder's own choice, one per core)."""

    def limit_decoder_threads(self, threads: int) -> None:
        """Decode with ``threads`` threads (0: one per core). Call before :meth:`frames`.
        Many cameras decoding at once each need few: more only add threads and latency."""
        self.decoder_threads = threads

    @property
    def expected_frames(self) -> int | None:
        """Frames the source will analyse, when known in advance (for progress)."""
        return None

    @abstractmethod
    def frames(self) -> Iterator[Frame]:
        """Analysed frames until the source ends."""

    @abstractmethod
    def close(self) -> None:
        """Release the source (safe to call more than once)."""


class _Sampler:
    """Picks frames at a target rate from increasing timestamps."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps if fps > 0 else 0.0
        self.next_time: float | None = None

    def take(self, timestamp: float) -> bool:
        if self.period == 0.0:
            return True
        if self.next_time is not None and timestamp < self.next_time:
            return False
        # Stay on the grid, but never fall behind it after a gap.
        grid = self.next_time if self.next_time is not None else timestamp
        self.next_time = max(grid + self.period, timestamp + self.period / 2)
        return True


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, av.error.FFmpegError):
        return exc.strerror or str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class AvSource(FrameSource):
    """A file, network stream or webcam decoded by PyAV."""

    def __init__(self, spec: SourceSpec, config: VideoConfig) -> None:
        super().__init__(spec, config)
        self.live = spec.kind is SourceKind.WEBCAM or (
            urlsplit(spec.location).scheme.lower() in _ALWAYS_LIVE_SCHEMES
        )
        self._container: av.container.InputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._open()
        if spec.kind is SourceKind.STREAM and not self.live:
            # HTTP(S): a file served over the web has a duration; a live feed does not.
            self.live = self._container is not None and self._container.duration is None

    @property
    def expected_frames(self) -> int | None:
        if self.live or self._stream is None:
            return None
        total = self._stream.frames
        rate = self._stream.average_rate
        if not total and self._container is not None and self._container.duration and rate:
            total = int(self._container.duration / av.time_base * float(rate))
        if not total:
            return None
        if self.config.analysis_fps > 0 and rate and float(rate) > self.config.analysis_fps:
            return int(np.ceil(total * self.config.analysis_fps / float(rate)))
        return int(total)

    def _open(self) -> None:
        location, container_format, options = self.spec.location, None, {}
        if self.spec.kind is SourceKind.WEBCAM:
            location, container_format = _webcam_input(location)
        elif urlsplit(location).scheme.lower() in {"rtsp", "rtsps"}:
            options = {"rtsp_transport": "tcp"}
        try:
            container = av.open(
                location,
                format=container_format,
                options=options,
                timeout=(self.config.open_timeout_s, self.config.read_timeout_s),
            )
        except (av.error.FFmpegError, OSError) as exc:
            raise SourceError(f"cannot open {self.spec.describe()}: {_error_text(exc)}") from None
        if not container.streams.video:
            container.close()
            raise SourceError(f"cannot open {self.spec.describe()}: it has no video stream")
        self._container = container
        self._stream = container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self._stream.codec_context.thread_count = self.decoder_threads
        rate = float(self._stream.average_rate or 0)
        if self.live and 0 < self.config.analysis_fps * 4 <= rate:
            # A live stream sampled at a quarter of its rate or less need not decode the
            # frames no other frame refers to (most B-frames): about a fifth less
            # decoding for typical H.264, and at least half the frames remain to
            # sample from. At higher analysis rates every frame is decoded.
            self._stream.codec_context.skip_frame = "NONREF"

    def limit_decoder_threads(self, threads: int) -> None:
        super().limit_decoder_threads(threads)
        if self._stream is not None:
            self._stream.codec_context.thread_count = threads

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def frames(self) -> Iterator[Frame]:
        sampler = _Sampler(self.config.analysis_fps)
        failures = 0
        clock_origin = time.monotonic()
        media_origin: float | None = None
        last_time: float | None = None
        while True:
            while self._container is None:
                failures += 1
                self._reconnect(failures)
            assert self._stream is not None
            try:
                for frame in self._container.decode(self._stream):
                    failures = 0
                    index = self.decoded
                    self.decoded += 1
                    if self.live:
                        timestamp = time.monotonic() - clock_origin
                    else:
                        media_time = frame.time if frame.time is not None else index / 25.0
                        if media_origin is None:
                            media_origin = self._media_start(media_time)
                        timestamp = media_time - media_origin
                    if sampler.take(timestamp):
                        yield Frame(frame.to_ndarray(format="bgr24"), timestamp, index)
                    last_time = timestamp
                reason = "stream ended"
            except (av.error.FFmpegError, OSError) as exc:
                if not self.live:
                    raise SourceError(
                        f"cannot decode {self.spec.describe()} after {self.decoded} frames: "
                        f"{_error_text(exc)}"
                    ) from None
                reason = _error_text(exc)
            if not self.live:
                self._check_complete(last_time)
                return
            log.warning("%s dropped (%s)", self.spec.describe(), reason)
            self.close()

    def _media_start(self, first_frame_time: float) -> float:
        """Media time that counts as 0: the container's start, as a player shows it."""
        assert self._container is not None
        start = self._container.start_time
        return start / av.time_base if start is not None else first_frame_time

    def _check_complete(self, last_time: float | None) -> None:
        """Raise if a file ended well before its declared duration.

        FFmpeg's threaded decoder drops the error of a damaged or truncated
        tail and simply stops, so the end is checked against the container's
        duration: what was decoded has been analysed, but the user must know
        the rest of the file was not.
        """
        if last_time is None:
            raise SourceError(f"{self.spec.describe()} holds no decodable video frame")
        assert self._container is not None
        if self._container.duration is None:
            return
        declared = self._container.duration / av.time_base
        rate = float(self._stream.average_rate or 25) if self._stream is not None else 25.0
        if last_time < declared - max(1.0, 3 / rate):
            raise SourceError(
                f"{self.spec.describe()} is damaged or truncated: video stops at "
                f"{last_time:.1f} s of {declared:.1f} s"
            )

    def _reconnect(self, attempt: int) -> None:
        """Wait, then try to reopen; :class:`StreamLostError` once the budget is spent."""
        limit = self.config.reconnect_attempts
        if limit is not None and attempt > limit:
            raise StreamLostError(
                f"{self.spec.describe()} lost: no connection after {limit} attempts"
            )
        delay = min(
            self.config.reconnect_initial_s * 2 ** (attempt - 1), self.config.reconnect_max_s
        )
        log.info(
            "reconnecting to %s in %.1f s (attempt %d%s)",
            self.spec.describe(),
            delay,
            attempt,
            f" of {limit}" if limit is not None else "",
        )
        time.sleep(delay)
        try:
            self._open()
        except SourceError as exc:
            log.warning("%s", exc)
        else:
            log.info("reconnected to %s", self.spec.describe())


def _webcam_input(location: str) -> tuple[str, str]:
    """FFmpeg device name and input format for a webcam index or device path."""
    system = platform.system()
    if system == "Linux":
        device = location if location.startswith("/") else f"/dev/video{location}"
        return device, "v4l2"
    if system == "Darwin":
        return location, "avfoundation"
    raise SourceError(
        f"webcam {location}: opening a camera by number is supported on Linux and macOS; "
        "on Windows give its stream URL instead"
    )


class ImageFolderSource(FrameSource):
    """Every image file in a folder, in name order; unrelated pictures, not a video."""

    continuous = False

    def __init__(self, spec: SourceSpec, config: VideoConfig) -> None:
        super().__init__(spec, config)
        folder = Path(spec.location)
        self._files = sorted(
            p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not self._files:
            raise SourceError(
                f"cannot open {spec.describe()}: no image files "
                f"({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        self.skipped = 0

    @property
    def expected_frames(self) -> int | None:
        return len(self._files)

    def close(self) -> None:
        """Nothing is held open between images."""

    def frames(self) -> Iterator[Frame]:
        for index, path in enumerate(self._files):
            self.decoded += 1
            try:
                image = read_image(path)
            except ImageError as exc:
                self.skipped += 1
                log.warning("skipping %s", exc)
                continue
            yield Frame(image, float(index), index, name=path.name)


def open_source(text: str, config: VideoConfig) -> FrameSource:
    """Open a SOURCE argument (file, URL, webcam index or image folder)."""
    spec = SourceSpec.parse(text)
    if spec.kind is SourceKind.IMAGES:
        return ImageFolderSource(spec, config)
    return AvSource(spec, config)
