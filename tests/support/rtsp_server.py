"""A small, real RTSP/1.0 server that serves an H.264 video file like an IP camera.

The test-suite uses it to exercise the real network path of our RTSP client (FFmpeg
inside PyAV): RTSP signalling, RTP over TCP interleaved frames and RFC 6184 H.264
depacketisation. It needs nothing but the Python standard library and PyAV.

What it does:

* ``OPTIONS``, ``DESCRIBE`` (SDP with ``sprop-parameter-sets`` built from the file's
  SPS/PPS), ``SETUP`` (``RTP/AVP/TCP`` interleaved only; UDP gets
  ``461 Unsupported Transport``), ``PLAY``, ``TEARDOWN`` and ``GET_PARAMETER``
  (keep-alive). Unknown paths get ``404``.
* Only the first video stream of the file is served; it must be H.264. Packets are
  demuxed with PyAV, converted from AVCC (length-prefixed) or Annex B to NAL units,
  SPS/PPS are sent before every keyframe, and NAL units are packetised as single NAL
  unit packets or FU-A fragments, with the marker bit on the last packet of each
  access unit and 90 kHz timestamps from the packet pts.
* Packets are paced in real time from their decode timestamps, like a live camera.
  With ``loop`` the file restarts at its end with continuing RTP timestamps and
  sequence numbers; without it the connection is closed after the last packet.
* RTCP sender reports are sent on the RTCP channel every few seconds; whatever the
  client sends interleaved (receiver reports) is read and discarded.
* :meth:`RtspServer.stop` drops every connection abruptly (TCP reset), like a camera
  losing power.

Command line::

    python -m tests.support.rtsp_server FILE [--port N] [--host 127.0.0.1] [--path live]
                                             [--loop]

prints ``READY rtsp://HOST:PORT/PATH`` once it listens, then serves until interrupted.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import logging
import random
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import FrameType, TracebackType
from urllib.parse import urlsplit

import av

__all__ = ["RtspServer", "main"]

logger = logging.getLogger(__name__)

SERVER_NAME = "watchkeeper-test-rtsp/1.0"
MAX_RTP_PAYLOAD = 1400
"""Largest RTP payload in bytes; bigger NAL units are split into FU-A fragments."""
RTP_CLOCK_RATE = 90_000
PAYLOAD_TYPE = 96
SESSION_TIMEOUT_S = 60
RTCP_INTERVAL_S = 5.0
EOS_LINGER_S = 5.0
"""After end of stream, how long to wait for the client to close before closing."""
MAX_HEADER_BYTES = 64 * 1024
TRACK_CONTROL = "trackID=0"
NTP_EPOCH_OFFSET = 2_208_988_800
ALLOWED_METHODS = ("OPTIONS", "DESCRIBE", "SETUP", "PLAY", "TEARDOWN", "GET_PARAMETER")

NAL_TYPE_SPS = 7
NAL_TYPE_PPS = 8
NAL_TYPE_FU_A = 28

STATUS_TEXT = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    454: "Session Not Found",
    455: "Method Not Valid in This State",
    459: "Aggregate Operation Not Allowed",
    461: "Unsupported Transport",
    500: "Internal Server Error",
    501: "Not Implemented",
}


# --------------------------------------------------------------------------- H.264


def split_annexb(data: bytes) -> list[bytes]:
    """Split an Annex B byte stream (``00 00 01`` / ``00 00 00 01`` start codes) into NAL units."""
    nals: list[bytes] = []
    start = -1
    i = 0
    n = len(data)
    while i + 3 <= n:
        if data[i] == 0 and data[i + 1] == 0 and data[i + 2] == 1:
            if start >= 0:
                nals.append(data[start:i].rstrip(b"\x00"))
            i += 3
            start = i
        else:
            i += 1
    if start >= 0:
        nals.append(data[start:])
    return [nal for nal in nals if nal]


def split_avcc(data: bytes, length_size: int) -> list[bytes]:
    """Split an AVCC packet (NAL units each prefixed by a big-endian length) into NAL units."""
    nals: list[bytes] = []
    pos = 0
    while pos + length_size <= len(data):
        size = int.from_bytes(data[pos : pos + length_size], "big")
        pos += length_size
        if size == 0:
            continue
        if pos + size > len(data):
            raise ValueError("truncated NAL unit in AVCC packet")
        nals.append(data[pos : pos + size])
        pos += size
    return nals


def parse_avcc_extradata(extradata: bytes) -> tuple[int, list[bytes], list[bytes]]:
    """Parse an ``avcC`` box (AVCDecoderConfigurationRecord).

    Returns the NAL length size in bytes, the SPS list and the PPS list.
    """
    if len(extradata) < 7 or extradata[0] != 1:
        raise ValueError("not an avcC decoder configuration record")
    length_size = (extradata[4] & 0x03) + 1
    pos = 5
    sps_list: list[bytes] = []
    pps_list: list[bytes] = []
    for target, count_mask in ((sps_list, 0x1F), (pps_list, 0xFF)):
        count = extradata[pos] & count_mask
        pos += 1
        for _ in range(count):
            size = int.from_bytes(extradata[pos : pos + 2], "big")
            pos += 2
            target.append(extradata[pos : pos + size])
            pos += size
    return length_size, sps_list, pps_list


def packetize_access_unit(nals: list[bytes], max_payload: int = MAX_RTP_PAYLOAD) -> list[bytes]:
    """Turn the NAL units of one access unit into RTP payloads (RFC 6184, mode 1).

    NAL units that fit are sent as single NAL unit packets, bigger ones as FU-A
    fragments. The caller sets the marker bit on the last payload.
    """
    payloads: list[bytes] = []
    for nal in nals:
        if len(nal) <= max_payload:
            payloads.append(nal)
            continue
        header = nal[0]
        indicator = bytes([(header & 0xE0) | NAL_TYPE_FU_A])
        nal_type = header & 0x1F
        body = memoryview(nal)[1:]
        chunk = max_payload - 2
        for offset in range(0, len(body), chunk):
            start = offset == 0
            end = offset + chunk >= len(body)
            fu_header = bytes([(0x80 if start else 0) | (0x40 if end else 0) | nal_type])
            payloads.append(indicator + fu_header + bytes(body[offset : offset + chunk]))
    return payloads


@dataclass(frozen=True)
class AccessUnit:
    """One video packet, ready to send: timing in stream ticks and its NAL units."""

    dts: int
    pts: int
    duration: int
    keyframe: bool
    nals: list[bytes]


@dataclass
class H264Source:
    """The first video stream of a file, which must be H.264, read with PyAV."""

    file: Path
    time_base: Fraction = Fraction(1, RTP_CLOCK_RATE)
    frame_duration: int = 1
    frame_rate: Fraction | None = None
    length_size: int | None = None
    """NAL length size for AVCC packets; ``None`` for Annex B packets."""
    sps: list[bytes] = field(default_factory=list)
    pps: list[bytes] = field(default_factory=list)

    @classmethod
    def probe(cls, file: str | Path) -> H264Source:
        """Open ``file`` and read the stream parameters; raise ``ValueError`` if unusable."""
        path = Path(file)
        if not path.is_file():
            raise ValueError(f"no such video file: {path}")
        try:
            container = av.open(str(path))
        except av.FFmpegError as exc:
            raise ValueError(f"cannot open {path}: {exc}") from exc
        with container:
            if not container.streams.video:
                raise ValueError(f"{path} has no video stream")
            stream = container.streams.video[0]
            codec = stream.codec_context.name
            if codec != "h264":
                raise ValueError(f"{path}: first video stream is {codec!r}, only H.264 is served")
            if stream.time_base is None:
                raise ValueError(f"{path}: video stream has no time base")
            source = cls(file=path, time_base=Fraction(stream.time_base))
            rate = stream.average_rate or stream.guessed_rate
            source.frame_rate = Fraction(rate) if rate else None
            if source.frame_rate:
                source.frame_duration = max(1, round(1 / (source.frame_rate * source.time_base)))
            extradata = stream.codec_context.extradata or b""
            if extradata[:1] == b"\x01":
                source.length_size, source.sps, source.pps = parse_avcc_extradata(extradata)
            else:
                source._collect_parameter_sets(split_annexb(extradata))
            if not source.sps or not source.pps:
                # Annex B stream without extradata: find the parameter sets in-band.
                for unit in source.access_units(container, stream):
                    source._collect_parameter_sets(unit.nals)
                    if source.sps and source.pps:
                        break
            if not source.sps or not source.pps:
                raise ValueError(f"{path}: no H.264 SPS/PPS found")
        return source

    def _collect_parameter_sets(self, nals: list[bytes]) -> None:
        """Remember the first SPS and PPS seen in ``nals``."""
        for nal in nals:
            nal_type = nal[0] & 0x1F
            if nal_type == NAL_TYPE_SPS and not self.sps:
                self.sps = [nal]
            elif nal_type == NAL_TYPE_PPS and not self.pps:
                self.pps = [nal]

    @property
    def profile_level_id(self) -> str:
        """``profile-level-id`` for the SDP: profile, constraints and level of the first SPS."""
        return self.sps[0][1:4].hex().upper()

    @property
    def sprop_parameter_sets(self) -> str:
        """``sprop-parameter-sets`` for the SDP: base64 SPS and PPS, comma separated."""
        return ",".join(base64.b64encode(nal).decode("ascii") for nal in self.sps + self.pps)

    def access_units(
        self, container: av.container.InputContainer, stream: av.VideoStream
    ) -> Iterator[AccessUnit]:
        """Demux ``stream`` and yield its packets as NAL units (no parameter sets added)."""
        last_dts: int | None = None
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            dts = packet.dts if packet.dts is not None else packet.pts
            if dts is None:
                dts = (last_dts + self.frame_duration) if last_dts is not None else 0
            pts = packet.pts if packet.pts is not None else dts
            last_dts = dts
            data = bytes(packet)
            if self.length_size is not None:
                nals = split_avcc(data, self.length_size)
            else:
                nals = split_annexb(data)
            if not nals:
                continue
            duration = packet.duration or self.frame_duration
            yield AccessUnit(dts, pts, duration, bool(packet.is_keyframe), nals)

    def read(self) -> Iterator[AccessUnit]:
        """Read the file once from the start, with SPS/PPS put before every keyframe."""
        with av.open(str(self.file)) as container:
            stream = container.streams.video[0]
            for unit in self.access_units(container, stream):
                if unit.keyframe:
                    nals = self.sps + self.pps + unit.nals
                    unit = AccessUnit(unit.dts, unit.pts, unit.duration, True, nals)
                yield unit


# --------------------------------------------------------------------------- RTSP


@dataclass
class RtspRequest:
    """A parsed RTSP request."""

    method: str
    url: str
    version: str
    headers: dict[str, str]
    body: bytes = b""

    def header(self, name: str, default: str = "") -> str:
        """Header value by case-insensitive name."""
        return self.headers.get(name.lower(), default)


def parse_request(head: bytes) -> RtspRequest:
    """Parse the request line and headers of one RTSP request (without its body)."""
    lines = head.decode("utf-8", errors="replace").split("\r\n")
    parts = lines[0].split()
    if len(parts) != 3 or not parts[2].startswith("RTSP/"):
        raise ValueError(f"bad request line: {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"bad header line: {line!r}")
        headers[name.strip().lower()] = value.strip()
    return RtspRequest(parts[0].upper(), parts[1], parts[2], headers)


class _ClientConnection:
    """One client TCP connection: reads requests, answers them and streams RTP."""

    def __init__(self, server: RtspServer, sock: socket.socket, peer: tuple[str, int]) -> None:
        self.server = server
        self.sock = sock
        self.peer = peer
        self._write_lock = threading.Lock()
        self._close_lock = threading.Lock()
        self._closed = threading.Event()
        self._stop_streaming = threading.Event()
        self._session_id: str | None = None
        self._channels = (0, 1)
        self._ssrc = random.getrandbits(32)
        self._seq = random.getrandbits(16)
        self._rtp_base = random.getrandbits(32)
        self._streamer: threading.Thread | None = None
        self.thread = threading.Thread(
            target=self._serve, name=f"rtsp-client-{peer[0]}:{peer[1]}", daemon=True
        )

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start serving the connection in a background thread."""
        self.thread.start()

    def close(self, abort: bool = False) -> None:
        """Close the connection (idempotent); ``abort`` resets it like a power loss."""
        with self._close_lock:
            if self._closed.is_set():
                return
            self._closed.set()
            self._stop_streaming.set()
            with contextlib.suppress(OSError):
                if abort:
                    self.sock.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                # Wakes up our own threads blocked in recv() or sendall().
                self.sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                self.sock.close()
        self.server._forget(self)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the connection's threads to finish."""
        for thread in (self.thread, self._streamer):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout)

    def _send(self, data: bytes) -> None:
        """Send bytes atomically with respect to the other thread of this connection."""
        with self._write_lock:
            self.sock.sendall(data)

    # ------------------------------------------------------------------ reading

    def _serve(self) -> None:
        """Read and answer requests until the connection ends."""
        try:
            self._read_loop()
        except OSError as exc:
            logger.debug("client %s: connection ended: %s", self.peer, exc)
        except Exception:
            logger.exception("client %s: unexpected error", self.peer)
        finally:
            self.close()

    def _read_loop(self) -> None:
        """Split the incoming byte stream into RTSP requests and interleaved data."""
        buffer = b""
        while not self._closed.is_set():
            data = self.sock.recv(65536)
            if not data:
                logger.debug("client %s: disconnected", self.peer)
                return
            buffer += data
            while buffer:
                if buffer[0] == 0x24:  # "$": interleaved RTCP/RTP from the client
                    if len(buffer) < 4:
                        break
                    size = int.from_bytes(buffer[2:4], "big")
                    if len(buffer) < 4 + size:
                        break
                    buffer = buffer[4 + size :]
                    continue
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(buffer) > MAX_HEADER_BYTES:
                        self._respond_bad_request()
                        return
                    break
                head, rest = buffer[:end], buffer[end + 4 :]
                try:
                    request = parse_request(head.lstrip(b"\r\n"))
                    body_size = int(request.header("content-length", "0") or 0)
                except ValueError as exc:
                    logger.debug("client %s: %s", self.peer, exc)
                    self._respond_bad_request()
                    return
                if len(rest) < body_size:
                    break
                request.body, buffer = rest[:body_size], rest[body_size:]
                if not self._handle(request):
                    return

    def _respond_bad_request(self) -> None:
        """Answer an unparsable request with 400 (best effort)."""
        with contextlib.suppress(OSError):
            self._send(self._response(400, None))

    # ------------------------------------------------------------------ requests

    def _response(
        self,
        status: int,
        request: RtspRequest | None,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> bytes:
        """Build an RTSP response."""
        lines = [f"RTSP/1.0 {status} {STATUS_TEXT.get(status, 'Error')}"]
        if request is not None and request.header("cseq"):
            lines.append(f"CSeq: {request.header('cseq')}")
        lines.append(f"Server: {SERVER_NAME}")
        lines.append("Date: " + time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()))
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if body:
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body

    def _handle(self, request: RtspRequest) -> bool:
        """Answer one request; return ``False`` when the connection should end."""
        logger.debug("client %s: %s %s", self.peer, request.method, request.url)
        handler = {
            "OPTIONS": self._on_options,
            "DESCRIBE": self._on_describe,
            "SETUP": self._on_setup,
            "PLAY": self._on_play,
            "TEARDOWN": self._on_teardown,
            "GET_PARAMETER": self._on_get_parameter,
        }.get(request.method)
        if handler is None:
            self._send(self._response(501, request, {"Public": ", ".join(ALLOWED_METHODS)}))
            return True
        if request.method != "OPTIONS" or request.url != "*":
            track = self.server._match_path(request.url)
            if track is None:
                self._send(self._response(404, request))
                return True
            if track not in ("", TRACK_CONTROL):
                self._send(self._response(404, request))
                return True
        if request.method not in ("OPTIONS", "DESCRIBE", "SETUP"):
            session = request.header("session").split(";")[0].strip()
            if self._session_id is None or (session and session != self._session_id):
                status = 454 if session else 455
                self._send(self._response(status, request))
                return True
        return handler(request)

    def _session_header(self) -> dict[str, str]:
        """The ``Session`` header for responses within the session."""
        assert self._session_id is not None
        return {"Session": f"{self._session_id};timeout={SESSION_TIMEOUT_S}"}

    def _on_options(self, request: RtspRequest) -> bool:
        self._send(self._response(200, request, {"Public": ", ".join(ALLOWED_METHODS)}))
        return True

    def _on_describe(self, request: RtspRequest) -> bool:
        sdp = self.server._sdp().encode("utf-8")
        base = self.server._base_url(request.url)
        headers = {"Content-Base": base + "/", "Content-Type": "application/sdp"}
        self._send(self._response(200, request, headers, sdp))
        return True

    def _on_setup(self, request: RtspRequest) -> bool:
        session = request.header("session").split(";")[0].strip()
        if session and session != self._session_id:
            self._send(self._response(454, request))
            return True
        if self._streamer is not None:
            self._send(self._response(455, request))
            return True
        transport = request.header("transport")
        chosen = None
        for option in transport.split(","):
            params = [p.strip() for p in option.split(";")]
            if params and params[0].upper() == "RTP/AVP/TCP":
                chosen = params
                break
        if chosen is None:
            self._send(self._response(461, request))
            return True
        for param in chosen[1:]:
            name, _, value = param.partition("=")
            if name.lower() == "interleaved" and value:
                low, _, high = value.partition("-")
                with contextlib.suppress(ValueError):
                    rtp = int(low)
                    self._channels = (rtp, int(high) if high else rtp + 1)
        if self._session_id is None:
            self._session_id = f"{random.getrandbits(48):012X}"
        reply = (
            f"RTP/AVP/TCP;unicast;interleaved={self._channels[0]}-{self._channels[1]};"
            f"ssrc={self._ssrc:08X};mode=play"
        )
        headers = {"Transport": reply, **self._session_header()}
        self._send(self._response(200, request, headers))
        return True

    def _on_play(self, request: RtspRequest) -> bool:
        base = self.server._base_url(request.url)
        track_url = f"{base}/{TRACK_CONTROL}"
        headers = {
            "Range": "npt=0.000-",
            "RTP-Info": f"url={track_url};seq={self._seq};rtptime={self._rtp_base}",
            **self._session_header(),
        }
        with self._write_lock:
            self.sock.sendall(self._response(200, request, headers))
            if self._streamer is None:
                self._streamer = threading.Thread(
                    target=self._stream, name=f"rtsp-stream-{self.peer[1]}", daemon=True
                )
                self._streamer.start()
        self.server.playing.set()
        return True

    def _on_teardown(self, request: RtspRequest) -> bool:
        self._stop_streaming.set()
        self._send(self._response(200, request, self._session_header()))
        self._session_id = None
        return False

    def _on_get_parameter(self, request: RtspRequest) -> bool:
        self._send(self._response(200, request, self._session_header()))
        return True

    # ------------------------------------------------------------------ streaming

    def _rtp_packet(self, payload: bytes, timestamp: int, marker: bool) -> bytes:
        """An RTP packet wrapped in an interleaved frame on the RTP channel."""
        header = struct.pack(
            "!BBHII",
            0x80,
            (0x80 if marker else 0) | PAYLOAD_TYPE,
            self._seq,
            timestamp & 0xFFFFFFFF,
            self._ssrc,
        )
        self._seq = (self._seq + 1) & 0xFFFF
        packet = header + payload
        return struct.pack("!cBH", b"$", self._channels[0], len(packet)) + packet

    def _sender_report(self, timestamp: int, packets: int, octets: int) -> bytes:
        """An RTCP sender report wrapped in an interleaved frame on the RTCP channel."""
        now = time.time() + NTP_EPOCH_OFFSET
        seconds = int(now)
        fraction = int((now - seconds) * (1 << 32)) & 0xFFFFFFFF
        report = struct.pack(
            "!BBHIIIIII",
            0x80,
            200,
            6,
            self._ssrc,
            seconds & 0xFFFFFFFF,
            fraction,
            timestamp & 0xFFFFFFFF,
            packets & 0xFFFFFFFF,
            octets & 0xFFFFFFFF,
        )
        return struct.pack("!cBH", b"$", self._channels[1], len(report)) + report

    def _stream(self) -> None:
        """Send the file in real time; at its end loop or close the connection."""
        try:
            finished = self._stream_file()
        except OSError as exc:
            logger.debug("client %s: streaming ended: %s", self.peer, exc)
            finished = False
        except Exception:
            logger.exception("client %s: streaming failed", self.peer)
            finished = False
        if finished and not self._closed.is_set():
            # End of stream: send FIN, give the client a moment to close, then close.
            logger.debug("client %s: end of stream", self.peer)
            with contextlib.suppress(OSError), self._write_lock:
                self.sock.shutdown(socket.SHUT_WR)
            self._closed.wait(EOS_LINGER_S)
        self.close()

    def _stream_file(self) -> bool:
        """Send RTP packets paced in real time; return ``True`` at the end of the file."""
        source = self.server.source
        start = time.monotonic()
        offset = Fraction(0)  # seconds added to timestamps by previous passes (looping)
        packets = octets = 0
        next_report = start
        while True:
            reference: int | None = None
            end = 0
            for unit in source.read():
                if reference is None:
                    reference = unit.dts
                end = max(end, unit.dts + unit.duration)
                send_at = (unit.dts - reference) * source.time_base + offset
                delay = start + float(send_at) - time.monotonic()
                if delay > 0 and self._stop_streaming.wait(delay):
                    return False
                if self._stop_streaming.is_set():
                    return False
                presented = (unit.pts - reference) * source.time_base + offset
                timestamp = self._rtp_base + round(presented * RTP_CLOCK_RATE)
                payloads = packetize_access_unit(unit.nals)
                frames = [
                    self._rtp_packet(payload, timestamp, i == len(payloads) - 1)
                    for i, payload in enumerate(payloads)
                ]
                packets += len(payloads)
                octets += sum(len(payload) for payload in payloads)
                now = time.monotonic()
                if now >= next_report:
                    elapsed = Fraction(now - start)
                    sr_time = self._rtp_base + round(elapsed * RTP_CLOCK_RATE)
                    frames.append(self._sender_report(sr_time, packets, octets))
                    next_report = now + RTCP_INTERVAL_S
                self._send(b"".join(frames))
            if reference is None or not self.server.loop:
                return True
            offset += (end - reference) * source.time_base


class RtspServer:
    """RTSP/1.0 server publishing one H.264 file at ``rtsp://host:port/path``.

    Use :meth:`start` to serve in background threads and :meth:`stop` to drop
    everything abruptly; also usable as a context manager.
    """

    def __init__(
        self,
        file: str | Path,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "live",
        loop: bool = False,
    ) -> None:
        """Configure the server; nothing is opened before :meth:`start`."""
        self.file = Path(file)
        self.host = host
        self.port = port
        self.path = path.strip("/")
        self.loop = loop
        self.source: H264Source
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.playing = threading.Event()
        """Set once a client has sent PLAY (for tests that act mid-stream)."""
        self._clients: set[_ClientConnection] = set()
        self._clients_lock = threading.Lock()
        self._session_version = int(time.time())

    @property
    def url(self) -> str:
        """The stream URL (the port is known once started)."""
        return f"rtsp://{self.host}:{self.port}/{self.path}"

    def start(self) -> str:
        """Check the file, listen and accept clients in the background; return the URL.

        Raises ``ValueError`` if the file has no H.264 video stream, ``OSError`` if
        the address cannot be bound.
        """
        if self._listener is not None:
            raise RuntimeError("server already started")
        self.source = H264Source.probe(self.file)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self.port))
            listener.listen(16)
        except OSError:
            listener.close()
            raise
        listener.settimeout(0.2)
        self.port = listener.getsockname()[1]
        self._stopping.clear()
        self._listener = listener
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"rtsp-accept-{self.port}", daemon=True
        )
        self._accept_thread.start()
        logger.info("serving %s at %s", self.file, self.url)
        return self.url

    def stop(self) -> None:
        """Stop listening and reset every client connection, like a camera losing power."""
        self._stopping.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.close()
        with self._clients_lock:
            clients = list(self._clients)
        for client in clients:
            client.close(abort=True)
        if self._accept_thread is not None:
            self._accept_thread.join(2.0)
            self._accept_thread = None
        for client in clients:
            client.join(2.0)

    def __enter__(self) -> RtspServer:
        """Start the server."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    # ------------------------------------------------------------------ internals

    def _accept_loop(self) -> None:
        """Accept connections until stopped; one thread per client."""
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            try:
                sock, peer = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            if self._stopping.is_set():
                sock.close()
                break
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client = _ClientConnection(self, sock, peer)
            with self._clients_lock:
                self._clients.add(client)
            logger.debug("client %s: connected", peer)
            client.start()

    def _forget(self, client: _ClientConnection) -> None:
        """Drop a closed client from the connection list."""
        with self._clients_lock:
            self._clients.discard(client)

    def _match_path(self, url: str) -> str | None:
        """The part of ``url`` after our path (``""`` for the stream itself), or ``None``."""
        request_path = urlsplit(url).path.strip("/")
        if request_path == self.path:
            return ""
        if request_path.startswith(self.path + "/"):
            return request_path[len(self.path) + 1 :]
        return None

    def _base_url(self, request_url: str) -> str:
        """The stream URL as the client spelled it, without a track suffix or slash."""
        parts = urlsplit(request_url)
        if parts.scheme and parts.netloc:
            return f"{parts.scheme}://{parts.netloc}/{self.path}"
        return self.url

    def _sdp(self) -> str:
        """Session description of the stream."""
        source = self.source
        lines = [
            "v=0",
            f"o=- {self._session_version} 1 IN IP4 {self.host}",
            f"s={self.file.name}",
            "c=IN IP4 0.0.0.0",
            "t=0 0",
            f"a=tool:{SERVER_NAME}",
            "a=range:npt=0-",
            "a=control:*",
            f"m=video 0 RTP/AVP {PAYLOAD_TYPE}",
            f"a=rtpmap:{PAYLOAD_TYPE} H264/{RTP_CLOCK_RATE}",
            f"a=fmtp:{PAYLOAD_TYPE} packetization-mode=1;"
            f"sprop-parameter-sets={source.sprop_parameter_sets};"
            f"profile-level-id={source.profile_level_id}",
        ]
        if source.frame_rate:
            lines.append(f"a=framerate:{float(source.frame_rate):.3f}")
        lines.append(f"a=control:{TRACK_CONTROL}")
        return "\r\n".join(lines) + "\r\n"


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    """Serve a file until interrupted (SIGINT/SIGTERM); print ``READY <url>`` when listening."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.rtsp_server",
        description="Serve an H.264 video file over RTSP (RTP over TCP) like an IP camera.",
    )
    parser.add_argument("file", type=Path, help="video file whose first video stream is H.264")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default 0: any free)")
    parser.add_argument("--path", default="live", help="stream path (default live)")
    parser.add_argument("--loop", action="store_true", help="restart the file at its end")
    parser.add_argument("-v", "--verbose", action="store_true", help="log requests to stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(threadName)s: %(message)s",
    )

    server = RtspServer(args.file, host=args.host, port=args.port, path=args.path, loop=args.loop)
    try:
        url = server.start()
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 2

    done = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _on_signal)
    print(f"READY {url}", flush=True)  # noqa: T201
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
