"""The edge's own store (watchkeeper.edge.state): the copy of the watchlist that a sync
answer changes, the outbox and the audit chain, on a real SQLite file."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from watchkeeper.edge.protocol import GENESIS, event_mac, vector_text
from watchkeeper.edge.state import EdgeState, Enrolment
from watchkeeper.errors import EncryptionKeyError
from watchkeeper.store.crypto import KeyRing, generate_key

MODEL = "sface-2021dec@1"
LATER = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).isoformat()
EARLIER = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).isoformat()


def unit(rng: np.random.Generator) -> np.ndarray:
    vector = rng.standard_normal(128).astype(np.float32)
    return vector / np.linalg.norm(vector)


def entry(subject: str, templates: int = 1, expires_at: str = LATER) -> dict[str, Any]:
    rng = np.random.default_rng(len(subject) * 7919 + ord(subject[0]))
    return {
        "id": subject,
        "expires_at": expires_at,
        "templates": [
            {
                "id": f"{subject}-t{i}",
                "vector": vector_text(unit(rng)),
            }
            for i in range(templates)
        ],
    }


def answer(**changes: Any) -> dict[str, Any]:
    return {"revision": 1, "full": False, "upserts": [], "removals": [], "model": "sface-2021dec",
            "model_id": MODEL, "site": "Leeds", "cameras": []} | changes  # fmt: skip


@pytest.fixture
def state(tmp_path: Path) -> EdgeState:
    opened = EdgeState(tmp_path / "edge.sqlite", KeyRing(generate_key()))
    opened.save_enrolment(Enrolment("http://core", "e1", "box", "Leeds", "wke_x", b"k" * 32))
    return opened


def held(state: EdgeState) -> list[str]:
    return sorted(set(state.gallery(MODEL).subjects))


# (what the core sends, entries changed, entries held after), applied in order
SYNCS: list[tuple[dict[str, Any], int, list[str]]] = [
    (answer(full=True, upserts=[entry("a", 2), entry("b")]), 2, ["a", "b"]),
    (answer(removals=["never-held"]), 0, ["a", "b"]),
    (answer(removals=["b"]), 1, ["a"]),
    (answer(upserts=[entry("a", 3)]), 1, ["a"]),
    (answer(upserts=[entry("c")], digest=["c"]), 2, ["c"]),
    (answer(upserts=[entry("d", expires_at=EARLIER)]), 1, ["c"]),
    (answer(full=True, upserts=[entry("e")]), 3, ["e"]),
]


def test_a_sync_changes_the_copy_and_says_how_much(state: EdgeState) -> None:
    for sent, changed, after in SYNCS:
        assert state.apply(sent) == changed, sent
        assert held(state) == after, sent
    assert state.revision == 1
    assert state.staleness_s() is not None


def test_the_copy_is_encrypted_and_needs_its_key(state: EdgeState, tmp_path: Path) -> None:
    vector = entry("a")["templates"][0]["vector"]
    state.apply(answer(full=True, upserts=[entry("a")]))
    state.close()
    raw = b"".join(path.read_bytes() for path in tmp_path.glob("edge.sqlite*"))
    assert vector.encode() not in raw
    assert b"wke_x" not in raw
    with pytest.raises(EncryptionKeyError, match="does not match"):
        EdgeState(tmp_path / "edge.sqlite", KeyRing(generate_key()))


def test_outbox_and_audit_chain_survive_and_verify(state: EdgeState, tmp_path: Path) -> None:
    state.raise_alert({"id": "alert-1", "camera_id": "door", "subject_id": "a", "score": 0.6})
    state.raise_alert({"id": "alert-2", "camera_id": "door", "subject_id": "a", "score": 0.7})
    reopened = EdgeState(tmp_path / "edge.sqlite", state.keys)  # as after kill -9
    reopened.enrolment()
    sequence, first = reopened.next_alert()  # type: ignore[misc]
    assert first["id"] == "alert-1"
    reopened.alert_done(sequence, "stored")
    assert reopened.next_alert()[1]["id"] == "alert-2"  # type: ignore[index]
    head = GENESIS
    events = reopened.undelivered_audit(100)
    assert [e["action"] for e in events] == ["alert.create", "alert.create", "alert.deliver"]
    for event in events:
        assert bytes.fromhex(event["previous_mac"]) == head
        head = event_mac(b"k" * 32, event, head)
        assert event["mac"] == head.hex()
    reopened.audit_delivered(events[-1]["sequence"])
    assert reopened.undelivered_audit(100) == []
    with sqlite3.connect(tmp_path / "edge.sqlite") as connection:
        assert connection.execute("SELECT count(*) FROM outbox").fetchone() == (1,)
