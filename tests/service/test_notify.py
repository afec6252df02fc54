"""Notifications: alerts queued in the outbox in the transaction that stores them, and
delivered by the notifier over real HTTP (signed webhooks) and a real MQTT broker
(Debian's mosquitto), with retries that survive a restart. Nothing is queued, and
nothing is sent, unless configured."""

from __future__ import annotations

import hmac
import json
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import select

from tests.support.net import unused_port
from tests.support.shop import (
    ALERT_SCORE,
    ALERT_THRESHOLD,
    Shop,
    Sighting,
    enrol_subject,
    record_sighting,
)
from watchkeeper.config import NotifyConfig, Settings, WebConfig, load_settings
from watchkeeper.errors import ConfigError
from watchkeeper.governance.alerts import review
from watchkeeper.governance.live import StoredAlert, record_match
from watchkeeper.governance.outbox import outbox_counts, queue_alert_event, site_slug
from watchkeeper.governance.subjects import approve, erase, suspend
from watchkeeper.matching.gallery import Candidate
from watchkeeper.notify.mqtt import alert_topic, status_topic
from watchkeeper.notify.notifier import Notifier, retry_delay
from watchkeeper.notify.webhook import signature, verify_signature
from watchkeeper.pipeline import FaceModels, MatchEvent
from watchkeeper.store.database import Store, open_store
from watchkeeper.store.models import Alert, AuditEvent, Decision, OutboxMessage, Subject

SECRET = "correct horse battery staple"
PUBLIC_URL = "http://shop-pc:8000"
PAYLOAD_KEYS = {
    "event",
    "alert_id",
    "organisation",
    "site",
    "camera",
    "entry",
    "status",
    "band",
    "score",
    "threshold",
    "occurred_at",
    "url",
}
"""Everything a notification says: names, a score, a time and a link; no face data."""
FAST_RETRY = {"retry_initial_s": 0.05, "retry_max_s": 0.2, "poll_s": 0.05, "timeout_s": 2.0}


def wait_until(condition: Callable[[], Any], timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout_s} s")


# --- a webhook receiver -------------------------------------------------------------------


@dataclass
class Received:
    event: str
    delivery: str
    verified: bool
    payload: dict[str, Any]
    body: bytes


@dataclass
class Receiver:
    """A local HTTP server that checks each request's signature as a receiver would,
    and answers with ``statuses`` in turn (then 200). With ``refuse_first``, it answers
    400 to every attempt of the first notification it gets, whatever ``statuses`` say."""

    port: int
    statuses: list[int] = field(default_factory=list)
    refuse_first: bool = False
    received: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/watchkeeper"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(
                    Received(
                        self.headers["X-Watchkeeper-Event"],
                        self.headers["X-Watchkeeper-Delivery"],
                        verify_signature(
                            SECRET,
                            self.headers["X-Watchkeeper-Timestamp"],
                            body,
                            self.headers["X-Watchkeeper-Signature"],
                        ),
                        json.loads(body),
                        body,
                    )
                )
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                if receiver.refuse_first and receiver.received[-1].delivery == (
                    receiver.received[0].delivery
                ):
                    status = 400
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver(unused_port()).start()
    yield running
    running.stop()


# --- the shop and its matches -------------------------------------------------------------


def with_notify(settings: Settings, **notify: Any) -> Settings:
    """``settings`` with the notifications ``notify`` and a public address."""
    return settings.model_copy(
        update={
            "notify": NotifyConfig.model_validate(notify),
            "web": WebConfig.model_validate(
                {**settings.web.model_dump(), "public_url": PUBLIC_URL}
            ),
        }
    )


def webhook_settings(settings: Settings, receiver: Receiver, **options: Any) -> Settings:
    hook = {"url": receiver.url, "secret": SECRET, "name": "back-office"}
    return with_notify(settings, webhooks=[hook], **{**FAST_RETRY, **options})


@pytest.fixture
def biden(shop: Shop, face_models: FaceModels) -> uuid.UUID:
    return enrol_subject(shop, face_models, "Joseph_Biden", label="man, grey suit")


@pytest.fixture
def seen(sightings: Callable[[str, int], Sighting]) -> Sighting:
    return sightings("Joseph_Biden", 4)


def match(shop: Shop, subject_id: uuid.UUID, seen: Sighting, settings: Settings) -> StoredAlert:
    """A camera's match of ``subject_id``, stored as live recognition stores it."""
    event = MatchEvent(
        track_id=1,
        subject=str(subject_id),
        score=ALERT_SCORE,
        threshold=ALERT_THRESHOLD,
        start=0.0,
        end=2.5,
        frames=25,
        candidates=(Candidate(str(subject_id), ALERT_SCORE),),
        shots=(seen.chip,),
        probe=seen.vector,
        qualities=(0.8,),
    )
    stored = record_match(shop.store, shop.camera_id, seen.model_id, event, settings)
    assert stored is not None
    return stored


def outbox(store: Store) -> list[OutboxMessage]:
    with store.session() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.created_at)))


def notify_events(store: Store) -> list[AuditEvent]:
    with store.session() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == "alert.notify")))


@pytest.fixture
def notifiers() -> Iterator[list[Notifier]]:
    """Notifiers a test starts; each is stopped at the end."""
    started: list[Notifier] = []
    yield started
    for notifier in started:
        notifier.stop()


def start(notifiers: list[Notifier], settings: Settings, store: Store) -> Notifier:
    notifier = Notifier(settings, store).start()
    notifiers.append(notifier)
    return notifier


# --- off by default -------------------------------------------------------------------------


def test_nothing_is_queued_or_sent_unless_configured(
    shop: Shop, store_settings: Settings, biden: uuid.UUID, seen: Sighting, receiver: Receiver
) -> None:
    assert store_settings.notify == NotifyConfig(), "off by default"
    stored = match(shop, biden, seen, store_settings)
    notifier = Notifier(store_settings, shop.store).start()
    try:
        assert not notifier.configured
        assert notifier.channels == {}, "no broker connection, no receiver"
        assert not any(t.name == "notifier" for t in threading.enumerate()), "no thread"
        assert outbox(shop.store) == []
        assert notify_events(shop.store) == []
        time.sleep(0.3)
        assert receiver.received == []
    finally:
        notifier.stop()
    with shop.store.session() as session:
        assert session.get(Alert, uuid.UUID(stored.alert_id)) is not None, "the alert is stored"


# --- webhooks ---------------------------------------------------------------------------


def test_an_alert_is_queued_with_it_and_posted_signed(
    shop: Shop,
    store_settings: Settings,
    biden: uuid.UUID,
    seen: Sighting,
    receiver: Receiver,
    notifiers: list[Notifier],
) -> None:
    settings = webhook_settings(store_settings, receiver)
    stored = match(shop, biden, seen, settings)
    (queued,) = outbox(shop.store)
    assert (str(queued.alert_id), queued.event, queued.destination) == (
        stored.alert_id,
        "alert.created",
        "webhook:back-office",
    )
    (audited,) = notify_events(shop.store)
    assert audited.object_id == stored.alert_id
    assert audited.details == {"event": "alert.created", "destinations": ["webhook:back-office"]}

    start(notifiers, settings, shop.store)
    (got,) = wait_until(lambda: receiver.received)
    assert got.verified, "the receiver's check of the signature must pass"
    assert (got.event, got.delivery) == ("alert.created", str(queued.id))
    assert set(got.payload) == PAYLOAD_KEYS
    assert got.payload == {
        "event": "alert.created",
        "alert_id": stored.alert_id,
        "organisation": "Corner Shops",
        "site": "Leeds",
        "camera": "door",
        "entry": "man, grey suit",
        "status": "pending",
        "band": "strong",
        "score": ALERT_SCORE,
        "threshold": ALERT_THRESHOLD,
        "occurred_at": stored.occurred_at,
        "url": f"{PUBLIC_URL}/alerts/{stored.alert_id}",
    }
    assert len(got.body) < 1000, "names and numbers only: no image, no vector"
    assert b"10.0.0.9" not in got.body, "no camera address"
    wait_until(lambda: outbox_counts_of(shop.store)["delivered"] == 1)
    assert outbox_counts_of(shop.store) == {"pending": 0, "delivered": 1, "failed": 0}


def outbox_counts_of(store: Store) -> dict[str, int]:
    with store.session() as session:
        return outbox_counts(session)


@pytest.mark.parametrize(
    ("statuses", "max_attempts", "attempts", "outcome"),
    [
        ([500, 503], 5, 3, "delivered"),  # fails twice, then 200
        ([302, 200], 5, 2, "delivered"),  # a redirect is not followed: a failure
        ([500, 500, 500], 3, 3, "failed"),  # given up after max_attempts, kept
    ],
    ids=["retried", "redirect", "given-up"],
)
def test_a_failed_delivery_is_retried_with_the_same_delivery_id(
    shop: Shop,
    store_settings: Settings,
    biden: uuid.UUID,
    seen: Sighting,
    receiver: Receiver,
    notifiers: list[Notifier],
    statuses: list[int],
    max_attempts: int,
    attempts: int,
    outcome: str,
) -> None:
    receiver.statuses = list(statuses)
    settings = webhook_settings(store_settings, receiver, max_attempts=max_attempts)
    match(shop, biden, seen, settings)
    notifier = start(notifiers, settings, shop.store)
    wait_until(lambda: notifier.counts()[outcome] == 1)
    notifier.stop()
    (row,) = outbox(shop.store)
    assert row.attempts == attempts == len(receiver.received)
    assert {got.delivery for got in receiver.received} == {str(row.id)}
    assert all(got.verified for got in receiver.received)
    if outcome == "delivered":
        assert row.delivered_at is not None
        assert row.last_error is None
    else:
        assert row.failed_at is not None
        assert row.delivered_at is None
        assert row.last_error == "HTTP 500"


def test_a_notification_waits_in_the_outbox_across_a_restart(
    shop: Shop,
    store_settings: Settings,
    biden: uuid.UUID,
    seen: Sighting,
    notifiers: list[Notifier],
) -> None:
    """The receiver is down while one notifier runs; a later notifier on a freshly opened
    store (the service restarted) delivers it once the receiver is back."""
    down = Receiver(unused_port())  # nothing listens on its port yet
    settings = webhook_settings(store_settings, down)
    match(shop, biden, seen, settings)
    first = start(notifiers, settings, shop.store)
    wait_until(lambda: outbox(shop.store)[0].attempts >= 2)
    first.stop()
    (row,) = outbox(shop.store)
    assert (row.delivered_at, row.failed_at) == (None, None), "still pending"
    assert (row.last_error or "").startswith("cannot connect")

    down.start()
    try:
        reopened = open_store(store_settings)
        try:
            start(notifiers, settings, reopened)
            (got,) = wait_until(lambda: down.received)
            assert got.delivery == str(row.id)
            assert got.verified
            wait_until(lambda: outbox_counts_of(reopened)["delivered"] == 1)
        finally:
            notifiers[-1].stop()
            reopened.close()
    finally:
        down.stop()


@pytest.mark.parametrize(
    ("events", "decisions", "notified"),
    [
        (None, ["confirm", "confirm"], ["alert.created", "alert.confirmed"]),
        (None, ["reject"], ["alert.created", "alert.rejected"]),
        (None, ["confirm", "unsure"], ["alert.created"]),  # not settled: nothing new
        (["alert.created"], ["reject"], ["alert.created"]),  # this receiver asked for less
    ],
    ids=["confirmed", "rejected", "unsettled", "created-only"],
)
def test_the_review_that_settles_an_alert_is_notified(
    shop: Shop,
    store_settings: Settings,
    biden: uuid.UUID,
    seen: Sighting,
    receiver: Receiver,
    notifiers: list[Notifier],
    events: list[str] | None,
    decisions: list[str],
    notified: list[str],
) -> None:
    hook = {"url": receiver.url, "secret": SECRET, **({"events": events} if events else {})}
    settings = with_notify(store_settings, webhooks=[hook], **FAST_RETRY)
    stored = match(shop, biden, seen, settings)
    for reviewer, decision in zip(["dave", "erin"], decisions, strict=False):
        with shop.tx() as tx:
            alert = tx.session.get_one(Alert, uuid.UUID(stored.alert_id))
            user = tx.user(reviewer)
            review(
                tx.session,
                shop.store,
                tx.organisation,
                user,
                alert,
                Decision(decision),
                None,
                settings,
            )
    assert [message.event for message in outbox(shop.store)] == notified
    start(notifiers, settings, shop.store)
    wait_until(lambda: len(receiver.received) == len(notified))
    time.sleep(0.2)
    assert [got.event for got in receiver.received] == notified, "oldest first, nothing more"
    assert [got.payload["event"] for got in receiver.received] == notified
    settled = {"alert.confirmed": "confirmed", "alert.rejected": "rejected"}
    assert receiver.received[-1].payload["status"] == settled.get(notified[-1], "pending")


def test_a_woken_notifier_sends_at_once(
    shop: Shop,
    store_settings: Settings,
    biden: uuid.UUID,
    seen: Sighting,
    receiver: Receiver,
    notifiers: list[Notifier],
) -> None:
    """Between polls (here 10 s apart) a notifier sleeps; wake() after storing an alert
    sends it now."""
    settings = webhook_settings(store_settings, receiver, poll_s=10)
    notifier = start(notifiers, settings, shop.store)
    time.sleep(0.2)  # its first look found nothing; the next is 10 s away
    match(shop, biden, seen, settings)
    notifier.wake()
    wait_until(lambda: receiver.received, timeout_s=3)


@pytest.mark.parametrize(
    ("statuses", "refuse_first"),
    [([], True), ([503, 503], False)],
    ids=["one-refused", "receiver-back"],
)
def test_queued_notifications_do_not_wait_behind_a_failing_one(
    shop: Shop,
    store_settings: Settings,
    biden: uuid.UUID,
    seen: Sighting,
    receiver: Receiver,
    notifiers: list[Notifier],
    statuses: list[int],
    refuse_first: bool,
) -> None:
    """Each failure waits a minute for its own retry here. A notification the receiver
    refuses holds the others back for at most ``probe_s``; and once a receiver that was
    down answers again, what failed while it was down is sent at once, not a minute
    later (issue 17: up to ten minutes before)."""
    receiver.statuses, receiver.refuse_first = list(statuses), refuse_first
    settings = webhook_settings(
        store_settings, receiver, retry_initial_s=60, retry_max_s=600, probe_s=0.2
    )
    for _ in range(2):
        match(shop, biden, seen, settings)
    notifier = start(notifiers, settings, shop.store)
    wait_until(lambda: len(receiver.received) >= 2)  # both tried and refused, or the first
    match(shop, biden, seen, settings)
    notifier.wake()
    delivered = 2 if refuse_first else 3
    wait_until(lambda: notifier.counts()["delivered"] == delivered, timeout_s=10)
    rows = outbox(shop.store)
    if refuse_first:
        refused = [row for row in rows if row.delivered_at is None]
        assert [row.last_error for row in refused] == ["HTTP 400"]
        assert str(refused[0].id) == receiver.received[0].delivery
    else:
        assert [row.attempts for row in rows] == [2, 2, 1]


# --- only stored alerts, and only while they are kept ----------------------------------------


def test_only_a_stored_alert_is_queued_and_erasure_removes_its_notifications(
    shop: Shop,
    store_settings: Settings,
    biden: uuid.UUID,
    seen: Sighting,
    receiver: Receiver,
) -> None:
    settings = webhook_settings(store_settings, receiver)

    # The transaction storing the alert fails after queueing: neither is kept.
    def crash_after_queueing() -> None:
        with shop.tx() as tx:
            alert = record_sighting(tx.session, shop, tx.camera, biden, seen)
            assert alert is not None
            queued = queue_alert_event(
                tx.session, shop.store, settings, alert, "alert.created", "t"
            )
            assert len(queued) == 1
            raise RuntimeError("crash before commit")

    with pytest.raises(RuntimeError, match="crash before commit"):
        crash_after_queueing()
    assert outbox(shop.store) == []
    assert notify_events(shop.store) == []

    # An entry suspended since the gallery was loaded raises no alert and no notification.
    with shop.tx() as tx:
        subject = tx.session.get_one(Subject, biden)
        suspend(tx.session, shop.store.keys, tx.organisation, tx.user("carol"), subject, "check")
    event = MatchEvent(1, str(biden), ALERT_SCORE, 0.9, 0.0, 1.0, 10, (), (seen.chip,), seen.vector)
    assert record_match(shop.store, shop.camera_id, seen.model_id, event, settings) is None
    assert outbox(shop.store) == []

    # Erasing the entry deletes its alerts' queued notifications with them.
    with shop.tx() as tx:
        approve(
            tx.session,
            shop.store.keys,
            tx.organisation,
            tx.user("carol"),
            tx.session.get_one(Subject, biden),
        )
    match(shop, biden, seen, settings)
    assert len(outbox(shop.store)) == 1
    with shop.tx() as tx:
        erase(
            tx.session,
            shop.store,
            tx.organisation,
            tx.user("carol"),
            tx.session.get_one(Subject, biden),
            "request",
        )
    assert outbox(shop.store) == []


# --- MQTT -----------------------------------------------------------------------------------

MOSQUITTO = Path("/usr/sbin/mosquitto")


@dataclass
class Broker:
    """Debian's mosquitto on a free local port, anonymous, no persistence."""

    binary: str
    folder: Path
    port: int = field(default_factory=unused_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        config = self.folder / "mosquitto.conf"
        config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        )
        self.process = subprocess.Popen(
            [self.binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

        def listening() -> bool:
            assert self.process is not None
            assert self.process.poll() is None, self.process.communicate()[1].decode()
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", self.port)) == 0

        wait_until(listening)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    binary = shutil.which("mosquitto") or (str(MOSQUITTO) if MOSQUITTO.is_file() else None)
    if binary is None:
        pytest.fail(
            "the MQTT tests need the mosquitto broker (Debian: apt-get install mosquitto); "
            f"it is neither on PATH nor at {MOSQUITTO}"
        )
    found = Broker(binary, tmp_path)
    yield found
    found.stop()


@dataclass
class Subscriber:
    """A paho client subscribed to everything under ``watchkeeper/``."""

    port: int
    client_id: str = "test-subscriber"
    messages: list[mqtt.MQTTMessage] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id)
        self.client.on_connect = lambda client, *_: client.subscribe("watchkeeper/#", qos=1)
        self.client.on_message = lambda _client, _userdata, message: self.messages.append(message)
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()

    def on(self, topic: str) -> list[mqtt.MQTTMessage]:
        return [m for m in self.messages if m.topic == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_alerts_are_published_per_site_with_an_availability_topic(
    shop: Shop,
    store_settings: Settings,
    biden: uuid.UUID,
    seen: Sighting,
    broker: Broker,
    notifiers: list[Notifier],
) -> None:
    """The broker is down when the alert is stored: it is retried until the broker is up,
    then published once to watchkeeper/leeds/alert; watchkeeper/status is 'online'
    (retained) while the notifier runs and 'offline' after it stops."""
    settings = with_notify(
        store_settings, mqtt={"host": "127.0.0.1", "port": broker.port}, **FAST_RETRY
    )
    stored = match(shop, biden, seen, settings)
    (queued,) = outbox(shop.store)
    assert queued.destination == "mqtt"
    notifier = start(notifiers, settings, shop.store)
    # An attempt is counted when a row is claimed, and its error written when it fails.
    failed = wait_until(lambda: outbox(shop.store)[0].last_error)
    assert failed.startswith("not connected to the MQTT broker")

    broker.start()
    subscriber = Subscriber(broker.port)
    try:
        (published,) = wait_until(lambda: subscriber.on(alert_topic("watchkeeper", "Leeds")), 20)
        assert published.topic == "watchkeeper/leeds/alert"
        assert (published.qos, published.retain) == (1, False)
        payload = json.loads(published.payload)
        assert set(payload) == PAYLOAD_KEYS | {"delivery"}
        assert payload["delivery"] == str(queued.id)
        assert (payload["alert_id"], payload["entry"]) == (stored.alert_id, "man, grey suit")
        wait_until(lambda: outbox_counts_of(shop.store)["delivered"] == 1)
        (online,) = wait_until(lambda: subscriber.on(status_topic("watchkeeper")))
        assert online.payload == b"online"
        later = Subscriber(broker.port, "late-subscriber")
        try:
            (kept,) = wait_until(lambda: later.on(status_topic("watchkeeper")))
            assert kept.retain, "Home Assistant sees the service's state when it subscribes"
            assert kept.payload == b"online"
        finally:
            later.close()
        assert subscriber.on(alert_topic("watchkeeper", "Leeds")) == [published], "once"

        notifier.stop()
        statuses = wait_until(lambda: subscriber.on("watchkeeper/status")[1:])
        assert [m.payload for m in statuses] == [b"offline"]
    finally:
        subscriber.close()


# --- settings, signatures and timing ---------------------------------------------------------


@pytest.mark.parametrize(
    ("notify", "reason"),
    [
        ({"webhooks": [{"url": "ftp://x/", "secret": SECRET}]}, "http:// or https://"),
        ({"webhooks": [{"url": "http:///path", "secret": SECRET}]}, "with a host"),
        ({"webhooks": [{"url": "http://a/"}]}, "exactly one of secret or secret_env"),
        (
            {"webhooks": [{"url": "http://a/", "secret": SECRET, "secret_env": "S"}]},
            "exactly one of secret or secret_env",
        ),
        ({"webhooks": [{"url": "http://a/", "secret": "short"}]}, "at least 16 characters"),
        (
            {
                "webhooks": [
                    {"url": "http://a/1", "secret": SECRET},
                    {"url": "http://a/2", "secret": SECRET},
                ]
            },
            "give each a different name",
        ),
        ({"webhooks": [{"url": "http://a/", "secret": SECRET, "events": ["x"]}]}, "events"),
        ({"mqtt": {"host": "h", "topic_prefix": "shop/#"}}, "topic_prefix"),
        ({"mqtt": {"host": "h", "password": "pw", "colour": "red"}}, "colour"),
    ],
)
def test_bad_notification_settings_are_refused(notify: dict[str, Any], reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        load_settings(notify=notify)


def test_a_secret_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, store: Store, receiver: Receiver
) -> None:
    settings = load_settings(
        notify={"webhooks": [{"url": receiver.url, "secret_env": "SHOP_HOOK_SECRET"}]}
    )
    monkeypatch.delenv("SHOP_HOOK_SECRET", raising=False)
    with pytest.raises(ConfigError, match="SHOP_HOOK_SECRET"):
        Notifier(settings, store)
    monkeypatch.setenv("SHOP_HOOK_SECRET", SECRET)
    notifier = Notifier(settings, store)
    assert notifier.channels[f"webhook:127.0.0.1:{receiver.port}"].secret == SECRET.encode()


BODY = b'{"event":"alert.created"}'
NOW = 1_800_000_000


@pytest.mark.parametrize(
    ("secret", "timestamp", "body", "header", "genuine"),
    [
        (SECRET, str(NOW), BODY, signature(SECRET.encode(), str(NOW), BODY), True),
        (SECRET, str(NOW - 299), BODY, signature(SECRET.encode(), str(NOW - 299), BODY), True),
        (SECRET, str(NOW), BODY + b" ", signature(SECRET.encode(), str(NOW), BODY), False),
        ("another secret 123", str(NOW), BODY, signature(SECRET.encode(), str(NOW), BODY), False),
        (SECRET, str(NOW + 1), BODY, signature(SECRET.encode(), str(NOW), BODY), False),
        (SECRET, str(NOW - 301), BODY, signature(SECRET.encode(), str(NOW - 301), BODY), False),
        (SECRET, "soon", BODY, signature(SECRET.encode(), "soon", BODY), False),
        (
            SECRET,
            str(NOW),
            BODY,
            hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, "sha256").hexdigest(),
            False,
        ),
    ],
    ids=[
        "genuine",
        "just-in-time",
        "body-changed",
        "wrong-secret",
        "timestamp-changed",
        "replayed-late",
        "bad-timestamp",
        "no-prefix",
    ],
)
def test_a_receiver_verifies_the_signature(
    secret: str, timestamp: str, body: bytes, header: str, genuine: bool
) -> None:
    assert verify_signature(secret, timestamp, body, header, now=NOW) is genuine


@pytest.mark.parametrize(
    ("attempts", "low", "high"),
    [
        (1, 0.8, 1.2),
        (2, 1.6, 2.4),
        (4, 6.4, 9.6),
        (10, 409.6, 614.4),
        (11, 480, 720),
        (60, 480, 720),
    ],
)
def test_retries_back_off_exponentially_up_to_the_maximum(
    attempts: int, low: float, high: float
) -> None:
    delays = [retry_delay(NotifyConfig(), attempts) for _ in range(50)]
    assert all(low <= d <= high for d in delays)
    assert len(set(delays)) > 1, "jittered"


@pytest.mark.parametrize(
    ("site", "slug"),
    [
        ("Leeds", "leeds"),
        ("Leeds Kirkgate", "leeds-kirkgate"),
        ("St. Ann's / #2", "st-ann-s-2"),
        ("+++", "site"),
    ],
)
def test_a_site_is_one_topic_level(site: str, slug: str) -> None:
    assert site_slug(site) == slug
    assert alert_topic("watchkeeper", site) == f"watchkeeper/{slug}/alert"
