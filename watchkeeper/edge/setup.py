"""An edge's first start: its own encryption key, its local store, and enrolment with
the core (the one-time code exchanged for the edge's credential)."""

from __future__ import annotations

from importlib.metadata import version

import httpx
from rich.console import Console

from watchkeeper.config import Settings
from watchkeeper.edge.state import EdgeState, Enrolment
from watchkeeper.errors import EdgeRefused
from watchkeeper.store.crypto import KeyRing, generate_key, write_key_file
from watchkeeper.store.database import load_key

STATE_FILE = "edge.sqlite"


def open_edge_state(settings: Settings, console: Console) -> EdgeState:
    """The edge's store in its data folder, with the edge machine's own key (made on
    the first start, readable by its owner only, outside the data folder)."""
    if settings.key is None and not settings.key_file.exists():
        write_key_file(settings.key_file, generate_key())
        console.print(
            f"Made this edge's encryption key: {settings.key_file} (keep a copy off this "
            "machine; without it the edge's copy and outbox cannot be read)."
        )
    keys: KeyRing = load_key(settings)
    return EdgeState(settings.data_dir / STATE_FILE, keys)


def enrol_edge(state: EdgeState, core_url: str, code: str, settings: Settings) -> Enrolment:
    """Exchange the one-time ``code`` at ``core_url`` for the edge's credential."""
    core_url = core_url.rstrip("/")
    try:
        response = httpx.post(
            f"{core_url}/api/edge/enrol",
            json={"code": code, "version": version("watchkeeper")},
            timeout=settings.edge.request_timeout_s,
        )
    except httpx.HTTPError as exc:
        raise EdgeRefused(f"cannot reach the core at {core_url}: {exc}", 503) from None
    if response.status_code != 201:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text[:200]
        raise EdgeRefused(f"the core refused the enrolment: {detail}", response.status_code)
    answer = response.json()
    enrolment = Enrolment(
        core_url=core_url,
        edge_id=answer["edge_id"],
        name=answer["name"],
        site=answer["site"],
        credential=answer["credential"],
        audit_key=bytes.fromhex(answer["audit_key"]),
    )
    state.save_enrolment(enrolment)
    state.audit("edge.enrolled", core=core_url)
    return enrolment
