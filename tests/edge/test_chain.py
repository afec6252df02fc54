"""A chain on one machine, as a retailer runs it: a core (`watchkeeper serve` on
PostgreSQL) and three edges (`watchkeeper edge`, each a process with its own data
folder and key) at two stores, each store's cameras playing the debate clip (Biden
and Trump) over RTSP. The edges reach the core through a TCP proxy of the test's
own, which cuts the line or swallows the core's answers.

One story, in order (each step needs the one before):
1. Biden and Trump are on Leeds's watchlist (York's has nobody): Leeds's edge raises
   alerts that the core stores and York's two edges (one camera each) raise none.
2. The core stops for two minutes. Leeds's edge keeps matching with its copy and
   keeps its alerts, until its copy is older than ``edge.max_staleness_s``; then it
   stops matching and says so. Trump is erased on the core meanwhile.
3. The core comes back, but its answers are swallowed: it stores the first alert it
   is sent and the edge never hears so. The edge is killed (``kill -9``) and started
   again: it sends the alert again, and the core keeps it once.
4. Every alert the edge raised reached the core exactly once, or was refused because
   its entry was erased; after the erasure reached the edge, nothing of Trump was
   raised again. The edges' audit chains are in the core's, which verifies.
5. A York edge is revoked: it is refused at once and stops.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.support.cli import Sandbox
from tests.support.data import DEBATE
from tests.support.net import stop_service, unused_port, wait_for
from tests.support.rtsp_server import RtspServer
from tests.support.shop import PostgresServer, Shop, enrol_subject, set_up_shop
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import wait_until
from watchkeeper.config import load_settings
from watchkeeper.governance import audit
from watchkeeper.governance.organisation import add_camera, add_site, update_camera
from watchkeeper.pipeline import FaceModels
from watchkeeper.store.crypto import encode_key, generate_key
from watchkeeper.store.database import open_store
from watchkeeper.store.models import Alert, AuditEvent, Subject

CORE_OUTAGE_S = 120.0
MAX_STALENESS_S = 90.0
EDGE_SETTINGS = {
    "WATCHKEEPER_EDGE__MAX_STALENESS_S": str(MAX_STALENESS_S),
    "WATCHKEEPER_EDGE__POLL_WAIT_S": "2",
    "WATCHKEEPER_EDGE__RETRY_MAX_S": "2",
    "WATCHKEEPER_EDGE__REQUEST_TIMEOUT_S": "4",
    "WATCHKEEPER_VIDEO__ANALYSIS_FPS": "2",
    "WATCHKEEPER_STREAMING__WORKERS": "1",
}


@dataclass
class Edge:
    name: str
    sandbox: Sandbox
    command: list[str]
    log: Path
    process: subprocess.Popen | None = None

    @property
    def state_file(self) -> Path:
        return self.sandbox.root / "home" / ".local" / "share" / "watchkeeper" / "edge.sqlite"

    def start(self, *args: str) -> None:
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "watchkeeper", *args],
                cwd=self.sandbox.cwd, env=self.sandbox.env(**EDGE_SETTINGS),
                stdout=log, stderr=log, text=True,
            )  # fmt: skip

    def count(self, query: str) -> int:
        if not self.state_file.exists():
            return 0
        with sqlite3.connect(f"file:{self.state_file}?mode=ro", uri=True) as connection:
            return connection.execute(query).fetchone()[0]

    def outbox(self) -> int:
        return self.count("SELECT count(*) FROM outbox")

    def raised(self) -> list[tuple[int, str]]:
        """(sequence, entry id) of each alert raised, from the edge's own audit chain."""
        if not self.state_file.exists():
            return []
        with sqlite3.connect(f"file:{self.state_file}?mode=ro", uri=True) as connection:
            rows = connection.execute("SELECT sequence, event FROM audit_chain").fetchall()
        events = [(sequence, json.loads(event)) for sequence, event in rows]
        return [(n, e["details"]["subject"]) for n, e in events if e["action"] == "alert.create"]

    def said(self) -> str:
        return self.log.read_text()


@dataclass
class Chain:
    shop: Shop
    core: Sandbox
    core_port: int
    proxy: TcpProxy
    biden: str
    trump: str
    edges: dict[str, Edge] = field(default_factory=dict)
    core_process: subprocess.Popen | None = None

    def start_core(self) -> None:
        self.core_process = self.core.serve(self.core_port)
        wait_for(f"http://127.0.0.1:{self.core_port}/login", self.core_process, timeout=180)

    def stop_core(self) -> None:
        assert self.core_process is not None
        code, said = stop_service(self.core_process)
        assert code == 0, said

    def run(self, *args: str) -> str:
        done = self.core.run(*args, WATCHKEEPER_WEB__PUBLIC_URL=self.proxy.url)
        assert done.code == 0, done.stderr
        return done.stdout

    def alerts(self, subject: str | None = None) -> list[Alert]:
        with self.shop.store.session() as session:
            query = select(Alert)
            if subject:
                query = query.where(Alert.subject_id == subject)
            return list(session.scalars(query))

    def edge_events(self, edge: str, action: str) -> list[AuditEvent]:
        with self.shop.store.session() as session:
            return list(
                session.scalars(
                    select(AuditEvent)
                    .where(AuditEvent.actor == f"edge:{edge}", AuditEvent.action == action)
                    .order_by(AuditEvent.sequence)
                )
            )


@pytest.fixture
def chain(tmp_path: Path, postgres: PostgresServer, sface_models: FaceModels) -> Iterator[Chain]:
    url = postgres.new_database()
    key = encode_key(generate_key())
    settings = load_settings(database_url=url, key=key, data_dir=tmp_path / "core-data")
    store = open_store(settings, create=True)
    shop = set_up_shop(store)
    with ExitStack() as stack:
        cameras = [stack.enter_context(RtspServer(DEBATE, loop=True)) for _ in range(3)]
        with shop.tx() as tx:
            alice = tx.user("alice")
            update_camera(tx.session, store.keys, tx.organisation, alice, tx.camera,
                          source=cameras[0].url)  # fmt: skip
            york = add_site(tx.session, store.keys, tx.organisation, alice, "York")
            for name, camera in (("gate", cameras[1]), ("till", cameras[2])):
                add_camera(tx.session, store.keys, tx.organisation, alice, york, name, camera.url)
        biden = str(enrol_subject(shop, sface_models, "Joseph_Biden", photos=3))
        trump = str(enrol_subject(shop, sface_models, "Donald_Trump", photos=1))
        core = Sandbox(tmp_path / "core")
        core.cwd.mkdir(parents=True)
        core_port = unused_port()
        proxy = stack.enter_context(TcpProxy(core_port))
        chain = Chain(shop, core, core_port, proxy, biden, trump)
        core_env = {"WATCHKEEPER_DATABASE_URL": url, "WATCHKEEPER_KEY": key,
                    "WATCHKEEPER_DATA_DIR": str(tmp_path / "core-data")}  # fmt: skip
        original = core.env
        core.env = lambda **extra: original(**core_env, **extra)  # type: ignore[method-assign]
        stack.callback(store.close)
        try:
            yield chain
        finally:
            for edge in chain.edges.values():
                if edge.process is not None and edge.process.poll() is None:
                    edge.process.kill()
                    edge.process.wait(30)
            if chain.core_process is not None and chain.core_process.poll() is None:
                stop_service(chain.core_process)


def add_edge(chain: Chain, site: str, tmp_path: Path) -> Edge:
    """`edges add SITE --json` on the core (from then on the core leaves the site's
    cameras to its edges), and the command it prints for the store's box."""
    issued = json.loads(chain.run("edges", "add", site, "--json", "--user", "alice"))
    words = issued["command"].split()
    assert words[0] == "watchkeeper"
    assert issued["core"] == chain.proxy.url
    sandbox = Sandbox(tmp_path / issued["edge"])
    sandbox.cwd.mkdir(parents=True)
    edge = Edge(issued["edge"], sandbox, words[1:], tmp_path / f"{issued['edge']}.log")
    chain.edges[edge.name] = edge
    return edge


def edges_listed(chain: Chain) -> dict[str, dict]:
    return {
        row["name"]: row
        for row in json.loads(chain.run("edges", "list", "--json", "--user", "alice"))
    }


@pytest.mark.timeout(900)
def test_a_chain_keeps_every_alert_through_an_outage_and_honours_an_erasure(
    chain: Chain, tmp_path: Path
) -> None:
    leeds = add_edge(chain, "Leeds", tmp_path)
    york = [add_edge(chain, "York", tmp_path) for _ in range(2)]
    chain.start_core()
    for edge in (leeds, *york):
        edge.start(*edge.command)  # as printed

    # 1. Alerts at Leeds, none at York; each York edge runs one of York's two cameras.
    wait_until(lambda: len(chain.alerts(chain.biden)) >= 1, 180, "a Biden alert from Leeds's edge")
    wait_until(
        lambda: all(
            len([c for c in edges_listed(chain)[e.name]["cameras"] if c["state"] == "running"]) == 1
            for e in york
        ),
        60,
        "York's edges each running one camera",
    )
    listed = edges_listed(chain)
    assert sorted(c["name"] for e in york for c in listed[e.name]["cameras"]) == [
        "York/gate",
        "York/till",
    ]
    assert listed[leeds.name]["matching"] is True
    with chain.shop.store.session() as session:
        sites = {a.camera.site.name for a in session.scalars(select(Alert))}
    assert sites == {"Leeds"}, "York searches nobody"

    # 2. The core stops for two minutes; Trump is erased meanwhile, once the edge has
    # kept an alert of his.
    chain.stop_core()
    down_at = time.monotonic()
    last_before = max(n for n, _ in leeds.raised())
    wait_until(
        lambda: any(n > last_before and who == chain.trump for n, who in leeds.raised()),
        MAX_STALENESS_S + 30,
        "an alert of Trump kept by Leeds's edge while the core is down",
    )
    erased = chain.core.run(
        "subjects", "erase", chain.trump, "--reason", "erasure request", "--yes", "--user", "alice"
    )
    assert erased.code == 0, erased.stderr
    wait_until(
        lambda: "MATCHING STOPPED" in leeds.said(),
        MAX_STALENESS_S + 90,
        "the edge stopping matching",
    )
    kept_while_stopped = leeds.outbox()
    time.sleep(max(0.0, CORE_OUTAGE_S - (time.monotonic() - down_at)))  # the outage itself
    assert leeds.outbox() == kept_while_stopped, "nothing raised once matching stopped"

    # 3. Back, but answers are swallowed: the first alert is stored, the edge never hears.
    chain.proxy.set("swallow")
    before = {str(a.id) for a in chain.alerts()}
    chain.start_core()
    wait_until(
        lambda: len({str(a.id) for a in chain.alerts()} - before) >= 1,
        180,
        "an alert stored unheard",
    )
    assert leeds.process is not None
    leeds.process.send_signal(signal.SIGKILL)
    leeds.process.wait(30)
    chain.proxy.set("pass")
    leeds.start("edge")  # enrolled already: no code needed
    wait_until(lambda: "matching resumed" in leeds.said(), 180, "matching resumed after the sync")
    wait_until(
        lambda: (
            leeds.outbox() == 0
            and leeds.count("SELECT count(*) FROM audit_chain WHERE delivered = 0") == 0
        ),
        180,
        "Leeds's outbox and audit chain delivered",
    )

    # 4. Exactly once, nothing lost, the erasure honoured.
    created = chain.edge_events(leeds.name, "edge.alert.create")
    delivered = chain.edge_events(leeds.name, "edge.alert.deliver")
    created_ids = [e.object_id for e in created]
    assert len(created_ids) == len(set(created_ids)) >= kept_while_stopped
    outcomes = {e.object_id: e.details["edge_outcome"] for e in delivered}
    assert sorted(outcomes) == sorted(created_ids), "every alert raised was delivered"
    assert len(delivered) == len(created), "each once"
    trump_ids = {e.object_id for e in created if e.details["edge_subject"] == chain.trump}
    stored = {i for i, outcome in outcomes.items() if outcome == "stored"}
    on_core = {str(a.id) for a in chain.alerts()}
    assert on_core == stored - trump_ids, "the core holds the alerts the edge raised, once"
    assert stored & trump_ids, "Trump's alerts before the erasure were stored (then erased)"
    refused = set(outcomes) - stored
    assert refused, "Trump's alerts kept during the outage were not stored"
    assert refused <= trump_ids, "only Trump's"
    assert chain.alerts(chain.trump) == []
    resumed = chain.edge_events(leeds.name, "edge.matching.resume")[-1]
    after = [e for e in created if e.sequence > resumed.sequence]
    assert all(e.details["edge_subject"] != chain.trump for e in after)
    with chain.shop.tx() as tx:
        assert audit.verify(tx.session, chain.shop.store.keys, tx.organisation).intact
        assert tx.session.get(Subject, chain.trump) is None

    # 5. A revoked edge is refused at once and stops.
    chain.run("edges", "revoke", york[0].name, "--user", "alice")
    assert york[0].process is not None
    assert york[0].process.wait(60) == 16
    assert "revoked" in york[0].said()
    chain.stop_core()
