"""A chain's core under its edges: 200 simulated store boxes against one core.

A real PostgreSQL (the `pgserver` wheel, in a temporary folder) and a real core
(`python -m watchkeeper serve`, its own process) hold an organisation with ``--sites``
sites, one camera each (an unreachable RTSP address: the simulated edges run no
video), and a watchlist of ``--entries`` entries, each enrolled from its own LFW
photo with the real models and in scope at EVERY site (the worst case for what the
core sends: every edge holds every entry). An edge is registered for each site with
``governance.edges.add_edge`` in this process, as `watchkeeper edges add` does.

``--edges`` simulated edges then run in this process (asyncio, one httpx client):
each enrols over HTTP with its one-time code and long-polls ``POST /api/edge/sync``
(``since`` its revision, ``wait`` 25 s, the first with the digest) as a real edge
does, applying nothing but remembering the revision it was sent and when.

Measured, one JSON line each, then a summary line:

1. propagation: ``--changes`` watchlist changes (an entry suspended, then
   reinstated, and so on) made with the governance functions in this process; for
   each, the time from its commit until each edge's sync answer carries the new
   revision (p50/p95/max over every edge and change);
2. alert ingestion: ``--alerts`` alerts posted to ``/api/edge/alerts`` by all edges
   at once (each edge one after another, as its outbox does), each with a real
   SFace probe vector (an entry's own stored template) and a real JPEG snapshot
   (that entry's LFW photo); alerts stored per second, and every refusal by reason;
3. the core's CPU seconds (process and children) and peak resident memory (RSS) per
   phase, and PostgreSQL's (the postmaster and its backends; memory as the sum of
   their PSS, so that the shared buffers count once);
4. the bytes of a sync answer: a full copy (the first sync), an idle edge's (nothing
   changed) and one carrying one change, the request an edge sends, and their headers;
5. the idle cost: the core's CPU per answer while every edge waits on its long poll
   and nothing changes (``--idle-s``);
6. what an alert leaves on the core: database bytes, snapshot file bytes, audit events.

The figures and the capacity model drawn from them are in docs/chain.md.

    uv run python benchmarks/chain_edges.py [--edges 200] [--entries 100] \
        [--changes 20] [--alerts 2000]

Not part of the test suite: a default run takes several minutes and both cores.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2
import httpx
import psutil
from sqlalchemy import select, text

from tests.support.cli import Sandbox
from tests.support.data import MODELS, lfw_identities, lfw_photos
from tests.support.net import unused_port
from tests.support.shop import PostgresServer, enrol_in, set_up_shop
from watchkeeper.config import load_settings
from watchkeeper.edge.protocol import vector_text
from watchkeeper.governance import edges as chain_edges
from watchkeeper.governance.organisation import add_camera, add_site
from watchkeeper.governance.subjects import PhotosRefused, approve, suspend, template_vector
from watchkeeper.pipeline import FaceModels
from watchkeeper.store.crypto import encode_key, generate_key
from watchkeeper.store.database import open_store
from watchkeeper.store.models import Camera, FaceImage, Site, Subject, Template

UNREACHABLE_CAMERA = "rtsp://192.0.2.1:554/stream"
"""TEST-NET-1 (RFC 5737): an address no camera answers on."""
POLL_WAIT_S = 25.0
"""The edges' long poll, as `edge.poll_wait_s` has it by default."""


def say(**record: Any) -> None:
    print(json.dumps(record), flush=True)  # noqa: T201 - a command-line report


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    ordered = sorted(values)
    return {
        "p50": round(statistics.median(ordered), 4),
        "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 4),
        "max": round(ordered[-1], 4),
    }


def storage(store: Any, data: Path) -> dict[str, Any]:
    """The core's database (size, and rows and bytes of the tables that grow) and its
    data folder (the encrypted snapshot and photo files)."""
    figures: dict[str, Any] = {}
    with store.session() as session:
        figures["database_bytes"] = session.scalar(
            text("SELECT pg_database_size(current_database())")
        )
        for table in GROWING_TABLES:
            rows = session.scalar(text(f"SELECT count(*) FROM {table}"))
            size = session.scalar(text(f"SELECT pg_total_relation_size('{table}')"))
            figures[table] = {"rows": rows, "bytes": size}
    figures["data_folder_bytes"] = sum(f.stat().st_size for f in data.rglob("*") if f.is_file())
    return figures


GROWING_TABLES = ("alert", "audit_event", "watchlist_change", "edge", "subject_site", "template")


def growth(before: dict[str, Any], after: dict[str, Any], alerts: int) -> dict[str, Any]:
    """What the alert phase added, per alert stored."""
    per = max(1, alerts)
    return {
        "database_bytes_per_alert": round(
            (after["database_bytes"] - before["database_bytes"]) / per
        ),
        "files_bytes_per_alert": round(
            (after["data_folder_bytes"] - before["data_folder_bytes"]) / per
        ),
        "audit_events_per_alert": round(
            (after["audit_event"]["rows"] - before["audit_event"]["rows"]) / per, 2
        ),
        "audit_event_bytes_per_row": round(
            after["audit_event"]["bytes"] / max(1, after["audit_event"]["rows"])
        ),
        "alert_bytes_per_row": round(after["alert"]["bytes"] / max(1, after["alert"]["rows"])),
    }


def machine() -> dict[str, Any]:
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
    }


# The processes measured


class ProcessGroup:
    """A process and its descendants (the core; or the postmaster and its backends):
    CPU seconds used (including children already reaped) and resident memory, summed
    as PSS where ``proportional`` (PostgreSQL's backends share its buffers: summing
    their RSS would count the shared memory once per backend)."""

    def __init__(self, root: psutil.Process, proportional: bool = False) -> None:
        self.root = root
        self.proportional = proportional

    def members(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_s(self) -> float:
        total = 0.0
        for process in self.members():
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
            if process.pid == self.root.pid:
                total += times.children_user + times.children_system
        return total

    def rss_mib(self) -> float:
        """Resident memory now, MiB (PSS summed where proportional)."""
        total = 0
        for process in self.members():
            try:
                if self.proportional:
                    total += process.memory_full_info().pss
                else:
                    total += process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total / 2**20


class MemoryWatch(threading.Thread):
    """Samples the groups' resident memory twice a second; keeps each one's peak."""

    def __init__(self, groups: dict[str, ProcessGroup]) -> None:
        super().__init__(daemon=True)
        self.groups = groups
        self.peaks = {name: 0.0 for name in groups}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.5):
            for name, group in self.groups.items():
                self.peaks[name] = max(self.peaks[name], group.rss_mib())

    def peak_and_reset(self) -> dict[str, float]:
        """Each group's peak since the last call (now included)."""
        peaks = {
            name: round(max(value, self.groups[name].rss_mib()), 1)
            for name, value in self.peaks.items()
        }
        self.peaks = {name: group.rss_mib() for name, group in self.groups.items()}
        return peaks


@dataclass
class Phase:
    """CPU used by each group over a phase of the run."""

    groups: dict[str, ProcessGroup]
    began: float = field(default_factory=time.monotonic)
    cpu: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.cpu = {name: group.cpu_s() for name, group in self.groups.items()}

    def used(self) -> dict[str, Any]:
        seconds = time.monotonic() - self.began
        used = {name: group.cpu_s() - self.cpu[name] for name, group in self.groups.items()}
        return {
            "wall_s": round(seconds, 2),
            **{f"{name}_cpu_s": round(value, 2) for name, value in used.items()},
            **{f"{name}_cores": round(value / seconds, 2) for name, value in used.items()},
        }


def postmaster(data_folder: Path) -> psutil.Process:
    """pgserver's postmaster: the postgres process started on ``data_folder``."""
    for process in psutil.process_iter(["name", "cmdline", "ppid"]):
        cmdline = process.info["cmdline"] or []
        if process.info["name"] == "postgres" and str(data_folder) in " ".join(cmdline):
            return process
    raise RuntimeError(f"no postgres process serves {data_folder}")


# The organisation


@dataclass
class Entry:
    subject_id: str
    person: str
    probe: str
    """Its stored SFace template as an edge sends a probe (base64 float32)."""
    snapshot: str
    """Its LFW photo as an edge's snapshot (JPEG, quality 92), base64."""
    model_id: str


def snapshot_of(photo: Path) -> bytes:
    """An LFW photo (250x250) as an edge encodes a snapshot: JPEG at quality 92."""
    ok, jpeg = cv2.imencode(".jpg", cv2.imread(str(photo)), [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok, photo
    return jpeg.tobytes()


@dataclass
class Organisation:
    store: Any
    shop: Any
    codes: list[str]
    cameras: list[str]
    """Each code's site's camera id (in the order of ``codes``)."""
    entries: list[Entry]
    data: Path
    """The core's data folder (its encrypted files)."""


def set_up(store: Any, settings: Any, sites: int, entries: int) -> Organisation:
    """The organisation: ``sites`` sites with a camera and an edge each, ``entries``
    watchlist entries (one LFW photo each) searched at every site."""
    shop = set_up_shop(store)
    models = FaceModels.load(settings)
    with shop.tx() as tx:
        alice = tx.user("alice")
        every_site = [tx.site]
        for number in range(2, sites + 1):
            site = add_site(tx.session, store.keys, tx.organisation, alice, f"Store {number:03d}")
            add_camera(
                tx.session, store.keys, tx.organisation, alice, site, "door", UNREACHABLE_CAMERA
            )
            every_site.append(site)
    enrolled: list[tuple[uuid.UUID, str]] = []
    people = iter(lfw_identities())
    while len(enrolled) < entries:
        person = next(people)
        with shop.tx() as tx:
            site_rows = list(tx.session.scalars(select(Site).order_by(Site.name)))
            try:
                subject = enrol_in(tx, shop, models, person, sites=site_rows)
            except PhotosRefused:
                continue
            enrolled.append((subject.id, person))
    kept = []
    with shop.tx() as tx:
        for subject_id, person in enrolled:
            template = tx.session.scalars(
                select(Template).join(FaceImage).where(FaceImage.subject_id == subject_id)
            ).first()
            assert template is not None
            vector = template_vector(store.keys, template, subject_id)
            photo = snapshot_of(lfw_photos(person)[0])
            kept.append(
                Entry(
                    str(subject_id),
                    person,
                    vector_text(vector),
                    base64.b64encode(photo).decode("ascii"),
                    template.model_id,
                )
            )
        alice = tx.user("alice")
        codes, cameras = [], []
        for site in tx.session.scalars(select(Site).order_by(Site.name)):
            issued = chain_edges.add_edge(
                tx.session, store.keys, tx.organisation, alice, site.name, None, settings.edge
            )
            codes.append(issued.code)
            cameras.append(
                str(tx.session.scalar(select(Camera.id).where(Camera.site_id == site.id)))
            )
    return Organisation(store, shop, codes, cameras, kept, settings.data_dir)


# The simulated edges


@dataclass
class SimulatedEdge:
    code: str
    camera_id: str
    credential: str = ""
    revision: int = 0
    arrivals: dict[int, float] = field(default_factory=dict)
    """Each revision sent, and when its answer arrived (time.time())."""
    exchanges: int = 0
    """Sync answers received."""
    full_copy_bytes: int = 0
    full_request_bytes: int = 0
    errors: list[str] = field(default_factory=list)

    def status(self) -> dict[str, Any]:
        """What a real edge reports with each sync (node.status()): one camera running."""
        return {
            "version": "bench",
            "staleness_s": 0.4,
            "max_staleness_s": 900.0,
            "matching": True,
            "outbox": 0,
            "cameras": [
                {
                    "name": "door",
                    "state": "running",
                    "fps": 5.0,
                    "frames": 123456,
                    "error": None,
                    "restarts": 0,
                }
            ],
        }

    async def enrol(self, client: httpx.AsyncClient) -> None:
        answer = await client.post("/api/edge/enrol", json={"code": self.code, "version": "bench"})
        answer.raise_for_status()
        self.credential = answer.json()["credential"]

    async def sync(self, client: httpx.AsyncClient, wait: float, digest: bool) -> httpx.Response:
        body = json.dumps(self.status()).encode()
        answer = await client.post(
            "/api/edge/sync",
            params={"since": self.revision, "wait": wait, "digest": digest},
            content=body,
            headers={
                "Authorization": f"Bearer {self.credential}",
                "Content-Type": "application/json",
            },
            timeout=wait + 60,
        )
        answer.raise_for_status()
        self.exchanges += 1
        payload = answer.json()
        self.revision = payload["revision"]
        self.arrivals.setdefault(self.revision, time.time())
        if digest and not self.full_copy_bytes:
            self.full_copy_bytes = len(answer.content)
            self.full_request_bytes = len(body)
        return answer

    async def follow(self, client: httpx.AsyncClient) -> None:
        """Long-poll the core as a real edge's sync loop does, until cancelled."""
        digest = True
        while True:
            try:
                await self.sync(client, POLL_WAIT_S, digest)
                digest = False
            except (httpx.HTTPError, ValueError) as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                await asyncio.sleep(1)


async def run_edges(
    args: argparse.Namespace,
    organisation: Organisation,
    url: str,
    groups: dict[str, ProcessGroup],
    memory: MemoryWatch,
) -> dict[str, Any]:
    limits = httpx.Limits(
        max_connections=args.edges * 2 + 50, max_keepalive_connections=args.edges * 2 + 50
    )
    summary: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        edges = [
            SimulatedEdge(code, camera)
            for code, camera in list(zip(organisation.codes, organisation.cameras, strict=True))[
                : args.edges
            ]
        ]

        # Enrolment and the first (full) sync.
        phase = Phase(groups)
        await asyncio.gather(*(edge.enrol(client) for edge in edges))
        enrolled = phase.used()
        say(phase="enrol", edges=len(edges), **enrolled, peak_memory_mib=memory.peak_and_reset())
        phase = Phase(groups)
        followers = [asyncio.create_task(edge.follow(client)) for edge in edges]
        started = await wait_for_revision(edges, 1, timeout=600)
        first = phase.used()
        say(
            phase="first_sync",
            edges=len(edges),
            all_synced=started,
            **first,
            full_copy_bytes=edges[0].full_copy_bytes,
            full_request_bytes=edges[0].full_request_bytes,
            peak_memory_mib=memory.peak_and_reset(),
        )
        summary["first_sync_s"] = first["wall_s"]
        summary["full_copy_bytes"] = edges[0].full_copy_bytes
        summary["sync_request_bytes"] = edges[0].full_request_bytes

        # An idle edge's answer: the same exchange, nothing changed (wait=0 answers now).
        probe_edge = SimulatedEdge(
            edges[0].code, edges[0].camera_id, edges[0].credential, edges[0].revision
        )
        idle = await probe_edge.sync(client, 0, False)
        summary["idle_answer_bytes"] = len(idle.content)
        summary["http_header_bytes"] = {
            "answer": header_bytes(idle.headers),
            "request": header_bytes(idle.request.headers),
        }
        say(
            measure="idle_sync_answer",
            bytes=len(idle.content),
            content_encoding=idle.headers.get("content-encoding"),
            answer_header_bytes=header_bytes(idle.headers),
            request_header_bytes=header_bytes(idle.request.headers),
            upserts=len(idle.json()["upserts"]),
            removals=len(idle.json()["removals"]),
        )

        # Idle: every edge waiting on its long poll, nothing changing.
        phase = Phase(groups)
        before = sum(edge.exchanges for edge in edges)
        await asyncio.sleep(args.idle_s)
        exchanges = sum(edge.exchanges for edge in edges) - before
        quiet = phase.used()
        summary["idle"] = {
            "edges": len(edges),
            "exchanges": exchanges,
            **quiet,
            "core_cpu_ms_per_exchange": round(1000 * quiet["core_cpu_s"] / max(1, exchanges), 2),
            "postgres_cpu_ms_per_exchange": round(
                1000 * quiet["postgres_cpu_s"] / max(1, exchanges), 2
            ),
            "peak_memory_mib": memory.peak_and_reset(),
        }
        say(phase="idle", **summary["idle"])

        # Propagation of K changes.
        phase = Phase(groups)
        toggled = organisation.entries[0]
        delays: list[float] = []
        change_bytes: list[int] = []
        for number in range(args.changes):
            committed_at, revision = await asyncio.to_thread(
                change, organisation, toggled.subject_id, suspended=number % 2 == 0
            )
            arrived = await wait_for_revision(edges, revision, timeout=60)
            these = [
                edge.arrivals[revision] - committed_at
                for edge in edges
                if revision in edge.arrivals
            ]
            delays.extend(these)
            answer = await probe_edge_sync_size(client, probe_edge, revision)
            change_bytes.append(answer)
            say(
                change=number + 1,
                what="suspend" if number % 2 == 0 else "reinstate",
                revision=revision,
                edges_reached=len(these),
                all_reached=arrived,
                **{f"delay_{k}_s": v for k, v in percentiles(these).items()},
                change_answer_bytes=answer,
            )
        spread = phase.used()
        summary["propagation"] = {
            "changes": args.changes,
            "samples": len(delays),
            **{f"{k}_s": v for k, v in percentiles(delays).items()},
            "change_answer_bytes": percentiles([float(b) for b in change_bytes]),
            **spread,
            "peak_memory_mib": memory.peak_and_reset(),
        }
        say(phase="propagation", **summary["propagation"])

        # Alert ingestion: every edge sends its share, one after another, all at once.
        stored_before = await asyncio.to_thread(storage, organisation.store, organisation.data)
        phase = Phase(groups)
        sendable = organisation.entries[1:] or organisation.entries
        outcomes: dict[str, int] = {}
        latencies: list[float] = []
        per_edge = [
            args.alerts // len(edges) + (1 if i < args.alerts % len(edges) else 0)
            for i in range(len(edges))
        ]
        began = time.monotonic()
        await asyncio.gather(
            *(
                send_alerts(client, edge, count, sendable, index, outcomes, latencies)
                for index, (edge, count) in enumerate(zip(edges, per_edge, strict=True))
            )
        )
        seconds = time.monotonic() - began
        ingestion = phase.used()
        stored = outcomes.get("201 stored now", 0)
        summary["alerts"] = {
            "sent": args.alerts,
            "stored": stored,
            "outcomes": outcomes,
            "alerts_per_s": round(stored / seconds, 1),
            "snapshot_bytes_mean": round(
                statistics.mean(len(base64.b64decode(e.snapshot)) for e in sendable)
            ),
            "request_bytes_mean": round(statistics.mean(alert_sizes(sendable, edges[0]))),
            **{f"latency_{k}_s": v for k, v in percentiles(latencies).items()},
            **ingestion,
            "peak_memory_mib": memory.peak_and_reset(),
        }
        say(phase="alerts", **summary["alerts"])
        stored_after = await asyncio.to_thread(storage, organisation.store, organisation.data)
        summary["storage"] = {
            "after": stored_after,
            **growth(stored_before, stored_after, stored),
        }
        say(storage=summary["storage"])

        for task in followers:
            task.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
        summary["sync_errors"] = sum(len(edge.errors) for edge in edges)
        if summary["sync_errors"]:
            say(sync_errors=[e for edge in edges for e in edge.errors][:10])
    return summary


def header_bytes(headers: httpx.Headers) -> int:
    """The size of HTTP/1.1 header lines (name, ": ", value, CRLF), as on the wire."""
    return sum(len(name) + len(value) + 4 for name, value in headers.raw)


async def wait_for_revision(edges: list[SimulatedEdge], revision: int, timeout: float) -> bool:
    """Until every edge was sent ``revision`` (or later); whether they all were."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(edge.revision >= revision for edge in edges):
            return True
        await asyncio.sleep(0.02)
    return False


async def probe_edge_sync_size(
    client: httpx.AsyncClient, probe: SimulatedEdge, revision: int
) -> int:
    """The bytes of the answer an edge one change behind gets (a delta of one entry)."""
    probe.revision = revision - 1
    answer = await probe.sync(client, 0, False)
    return len(answer.content)


def change(organisation: Organisation, subject_id: str, suspended: bool) -> tuple[float, int]:
    """Suspend (or reinstate) the entry on the core's database; the time its
    transaction committed and the journal's revision it made."""
    with organisation.shop.tx() as tx:
        subject = tx.session.get_one(Subject, uuid.UUID(subject_id))
        if suspended:
            suspend(
                tx.session,
                organisation.store.keys,
                tx.organisation,
                tx.user("carol"),
                subject,
                "benchmark",
            )
        else:
            approve(tx.session, organisation.store.keys, tx.organisation, tx.user("carol"), subject)
        organisation_id = tx.organisation.id
    committed_at = time.time()
    with organisation.store.session() as session:
        revision = chain_edges.current_revision(session, organisation_id)
    return committed_at, revision


def alert_body(edge: SimulatedEdge, entry: Entry) -> dict[str, Any]:
    """An alert as a real edge sends it (node.py): its own id, the edge's camera."""
    return {
        "id": str(uuid.uuid4()),
        "camera_id": edge.camera_id,
        "subject_id": entry.subject_id,
        "score": 0.71,
        "threshold": 0.46,
        "model_id": entry.model_id,
        "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
        "probe": entry.probe,
        "snapshot": entry.snapshot,
        "sighting": {"frames": 3, "track_s": 1.2, "face_px": 96},
    }


def alert_sizes(entries: list[Entry], edge: SimulatedEdge) -> list[int]:
    return [len(json.dumps(alert_body(edge, entry))) for entry in entries]


async def send_alerts(
    client: httpx.AsyncClient,
    edge: SimulatedEdge,
    count: int,
    entries: list[Entry],
    offset: int,
    outcomes: dict[str, int],
    latencies: list[float],
) -> None:
    for number in range(count):
        entry = entries[(offset + number) % len(entries)]
        sent = time.monotonic()
        try:
            answer = await client.post(
                "/api/edge/alerts",
                json=alert_body(edge, entry),
                headers={"Authorization": f"Bearer {edge.credential}"},
            )
        except httpx.HTTPError as exc:
            outcome = f"no answer: {type(exc).__name__}"
        else:
            latencies.append(time.monotonic() - sent)
            if answer.status_code in (200, 201):
                outcome = f"{answer.status_code} stored {answer.json().get('stored')}"
            else:
                outcome = f"{answer.status_code} {answer.text[:120]}"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1


# The run


def start_core(folder: Path, url: str, key: str, port: int, log: Path) -> subprocess.Popen:
    sandbox = Sandbox(folder / "core")
    sandbox.cwd.mkdir(parents=True)
    env = sandbox.env(
        WATCHKEEPER_DATABASE_URL=url,
        WATCHKEEPER_KEY=key,
        WATCHKEEPER_DATA_DIR=str(folder / "core-data"),
        WATCHKEEPER_MODELS_DIR=str(MODELS),
    )
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "watchkeeper", "serve", "--port", str(port)],
            cwd=sandbox.cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the core exited ({process.returncode}):\n{log.read_text()}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/login", timeout=2)
            return process
        except httpx.TransportError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"the core did not answer within 120 s:\n{log.read_text()}")


def stop_core(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", type=int, default=200, help="simulated edges (one a site)")
    parser.add_argument("--sites", type=int, default=0, help="sites (default: one per edge)")
    parser.add_argument("--entries", type=int, default=100, help="watchlist entries")
    parser.add_argument("--changes", type=int, default=20, help="watchlist changes timed")
    parser.add_argument("--alerts", type=int, default=2000, help="alerts posted by the edges")
    parser.add_argument(
        "--idle-s", type=float, default=30.0, help="seconds measured with nothing changing"
    )
    args = parser.parse_args()
    args.sites = max(args.sites, args.edges)
    say(
        machine=machine(),
        edges=args.edges,
        sites=args.sites,
        entries=args.entries,
        changes=args.changes,
        alerts=args.alerts,
    )
    with tempfile.TemporaryDirectory(prefix="watchkeeper-chain-") as temporary:
        folder = Path(temporary)
        postgres = PostgresServer(folder / "pg")
        core = None
        try:
            url = postgres.new_database()
            key = encode_key(generate_key())
            settings = load_settings(
                database_url=url, key=key, data_dir=folder / "core-data", models_dir=MODELS
            )
            store = open_store(settings, create=True)
            began = time.monotonic()
            organisation = set_up(store, settings, args.sites, args.entries)
            say(
                phase="set_up",
                sites=args.sites,
                entries=len(organisation.entries),
                scope="every entry at every site",
                wall_s=round(time.monotonic() - began, 1),
            )
            port = unused_port()
            core = start_core(folder, url, key, port, folder / "core.log")
            groups = {
                "core": ProcessGroup(psutil.Process(core.pid)),
                "postgres": ProcessGroup(postmaster(folder / "pg"), proportional=True),
            }
            memory = MemoryWatch(groups)
            memory.start()
            whole = Phase(groups)
            summary = asyncio.run(
                run_edges(args, organisation, f"http://127.0.0.1:{port}", groups, memory)
            )
            summary["whole_run"] = whole.used()
            memory.stopping.set()
            summary["core_rss_mib_at_end"] = round(groups["core"].rss_mib(), 1)
            summary["postgres_pss_mib_at_end"] = round(groups["postgres"].rss_mib(), 1)
            store.close()
        finally:
            if core is not None:
                code = stop_core(core)
                if code != 0:
                    print((folder / "core.log").read_text()[-3000:], file=sys.stderr)  # noqa: T201
            postgres.stop()
    say(summary=summary, machine=machine())


if __name__ == "__main__":
    main()
