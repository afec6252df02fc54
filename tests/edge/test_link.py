"""An edge's link to its core (watchkeeper.edge.link) against a real HTTP server on
loopback: refusals are told apart from outages, and outages are waited out."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from watchkeeper.edge.link import CoreLink, CoreUnreachable
from watchkeeper.errors import EdgeRefused


class Core(BaseHTTPRequestHandler):
    """Answers each request with the next status of ``statuses`` (then 200)."""

    statuses: ClassVar[list[int]] = []
    seen: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.seen.append(self.headers.get("Authorization", ""))
        status = self.statuses.pop(0) if self.statuses else 200
        body = b'{"detail": "told so"}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def core() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Core)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Core.statuses, Core.seen = [], []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def link(url: str, stopping: threading.Event | None = None) -> CoreLink:
    return CoreLink(url, "wke_secret", 2, 0.1, stopping or threading.Event())


def test_an_outage_is_waited_out_and_counted(core: str) -> None:
    Core.statuses = [503, 502, 500]
    lost: list[CoreUnreachable] = []
    answer, failures = link(core).persist(lambda: link(core).request("POST", "/x"), lost.append)
    assert (answer.status_code, failures, len(lost)) == (200, 3, 1)


@pytest.mark.parametrize(
    ("status", "kind"), [(401, EdgeRefused), (413, EdgeRefused), (503, CoreUnreachable)]
)
def test_refusals_are_not_outages(core: str, status: int, kind: type[Exception]) -> None:
    Core.statuses = [status]
    with pytest.raises(kind, match="told so" if kind is EdgeRefused else str(status)):
        link(core).request("POST", "/x")
    assert Core.seen == ["Bearer wke_secret"]


def test_a_gone_answer_is_an_answer(core: str) -> None:
    Core.statuses = [410]
    assert link(core).request("POST", "/x").status_code == 410


def test_stopping_ends_the_wait_for_a_core_that_is_not_there() -> None:
    stopping = threading.Event()
    unreachable = link("http://127.0.0.1:9", stopping)
    stopper = threading.Timer(0.5, stopping.set)
    stopper.start()
    with pytest.raises(CoreUnreachable, match="cannot reach the core"):
        unreachable.persist(lambda: unreachable.request("POST", "/x"), lambda _exc: None)
    stopper.join()
