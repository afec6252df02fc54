"""`watchkeeper --config FILE serve` as a shop runs it, with webhooks and MQTT configured
in the file and a camera on the looping debate clip: the alert is stored, pushed to an
open page, POSTed signed to the webhook and published on MQTT (issue 16: settings read
from a file could not be sent to the camera workers, so no camera started)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

from tests.service.test_notify import MOSQUITTO, SECRET, Broker, Receiver, Subscriber
from tests.support.cli import Sandbox
from tests.support.data import DEBATE
from tests.support.net import unused_port, wait_for
from tests.support.rtsp_server import RtspServer
from tests.support.waiting import wait_until
from tests.support.web import sign_in
from tests.test_governance_cli import BIDEN_PHOTOS, enrol, ok, output

PASSWORD = "reviewer's long password"
ALERT_WITHIN_S = 180
LABEL = "Biden, J."


def set_up_shop(box: Sandbox, camera_url: str) -> str:
    """Corner Shops with site Leeds, camera Leeds/door on ``camera_url``, Biden approved
    on the watchlist and reviewer dave (who may sign in); returns an API token of dave's."""
    ok(box.run("init", "--organisation", "Corner Shops", "--admin", "alice"))
    ok(box.run("sites", "add", "Leeds", "--user", "alice"))
    for name, role in (("bob", "reporter"), ("carol", "manager")):
        ok(box.run("users", "create", name, "--role", role, "--site", "Leeds", "--no-password",
                   "--user", "alice"))  # fmt: skip
    ok(box.run("users", "create", "dave", "--role", "reviewer", "--site", "Leeds",
               "--password-stdin", "--user", "alice", stdin=PASSWORD + "\n"))  # fmt: skip
    ok(box.run("cameras", "add", "Leeds", "door", camera_url, "--user", "alice"))
    incident = box.run("incidents", "add", "--site", "Leeds", "--category", "theft",
                       "--description", "took razor blades", "--json", "--user", "bob")  # fmt: skip
    biden = output(enrol(box, "bob", output(incident)["id"], LABEL, BIDEN_PHOTOS))["id"]
    ok(box.run("subjects", "approve", biden, "--user", "carol"))
    issued = box.run("tokens", "issue", "dave", "--label", "tests", "--user", "alice")
    return ok(issued).stdout.strip()


def first_alert(lines, deadline: float, why_not) -> dict:
    """The first ``alert`` event of a server-sent event stream (heartbeats come every 15 s)."""
    for line in lines:
        if line == "event: alert":
            return json.loads(next(lines).removeprefix("data: "))
        assert time.monotonic() < deadline, f"no alert within {ALERT_WITHIN_S} s: {why_not()}"
    raise AssertionError("the stream ended")


def test_serve_with_a_config_file_stores_pushes_and_delivers_alerts(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        camera = stack.enter_context(RtspServer(DEBATE, loop=True))
        token = set_up_shop(sandbox, camera.url)
        receiver = Receiver(unused_port()).start()
        stack.callback(receiver.stop)
        broker = Broker(shutil.which("mosquitto") or str(MOSQUITTO), tmp_path)
        stack.callback(broker.stop)
        broker.start()
        subscriber = Subscriber(broker.port)
        stack.callback(subscriber.close)

        port = unused_port()
        (sandbox.cwd / "wk.toml").write_text(
            f"[web]\nport = {port}\n\n"
            # Any decision is "late" by this measure, to see the warning reach the page.
            "[streaming]\nlate_decision_seconds = 0.001\n\n"
            f'[[notify.webhooks]]\nname = "back-office"\nurl = "{receiver.url}"\n'
            f'secret = "{SECRET}"\n\n'
            f'[notify.mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n'
        )
        log = sandbox.root / "serve.log"
        serve = subprocess.Popen(
            [sys.executable, "-m", "watchkeeper", "--config", "wk.toml", "serve"],
            cwd=sandbox.cwd,
            env=sandbox.env(),
            stderr=stack.enter_context(log.open("w")),
        )
        base = f"http://127.0.0.1:{port}"
        api = {"Authorization": f"Bearer {token}"}

        def cameras() -> list[dict]:
            return httpx.get(f"{base}/api/cameras", headers=api, timeout=30).json()

        try:
            wait_for(f"{base}/login", serve)
            with httpx.Client(base_url=base, timeout=30) as web:
                sign_in(web, "dave", PASSWORD)
                with web.stream("GET", "/alerts/stream") as stream:
                    pushed = first_alert(
                        stream.iter_lines(),
                        time.monotonic() + ALERT_WITHIN_S,
                        lambda: f"cameras {cameras()}; serve said {log.read_text()[-2000:]}",
                    )
            assert (pushed["camera"], pushed["subject_label"]) == ("Leeds/door", LABEL)

            stored = output(sandbox.run("alerts", "list", "--json", "--user", "dave"))
            assert pushed["id"] in {alert["id"] for alert in stored}
            [door] = cameras()
            assert door["health"]["state"] == "running", door
            assert door["health"]["alerts"] >= 1, door
            # How late alerts come is measured and compared with the file's threshold.
            wait_until(lambda: cameras()[0]["health"]["decisions_late"], 30, "a late decision")
            [door] = cameras()
            assert door["health"]["decision_delay_s"] >= 0.001, door
            with httpx.Client(base_url=base, timeout=30) as web:
                sign_in(web, "dave", PASSWORD)
                assert "this machine cannot keep up" in web.get("/cameras").text

            def posted() -> list:
                return [r for r in receiver.received if r.payload["alert_id"] == pushed["id"]]

            wait_until(posted, 30, "the webhook")
            [hook] = posted()
            assert hook.verified, "signed with the configured secret"
            assert (hook.event, hook.payload["camera"], hook.payload["entry"]) == (
                "alert.created",
                "door",
                LABEL,
            )

            def published() -> list:
                return [
                    m
                    for m in subscriber.on("watchkeeper/leeds/alert")
                    if json.loads(m.payload)["alert_id"] == pushed["id"]
                ]

            wait_until(published, 30, "the MQTT message")
        finally:
            serve.send_signal(signal.SIGINT)
            try:
                code = serve.wait(60)
            finally:
                serve.kill()  # only if it did not stop
        assert code == 0, log.read_text()
