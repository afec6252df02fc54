"""The estate audit as an administrator runs it: `watchkeeper estate ...` in a separate
process over a real SQLite file, against simulated devices on loopback (a Hikvision
camera, a Dahua NVR, a white-label camera with Hikvision firmware, an Axis camera, and
devices that hang, answer malformed XML, or send a 100 MB body).

One walk through: discover the named /28 (and nothing else), import an asset list,
probe with credentials given for the site, list and show, mark a site sensitive,
write the report, render its HTML in headless Chromium and open its PDF. Every
device is found and identified, the findings are the expected ones, every request
any device received was a read, and every step is in the audit log.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from pypdf import PdfReader
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.e2e.conftest import chromium_paths, screenshot
from tests.support.camera_simulators import (
    AXIS_CAMERA,
    DAHUA_NVR,
    HANGING_DEVICE,
    HIKVISION_CAMERA,
    HUGE_BODY,
    HUGE_DEVICE,
    MALFORMED_DEVICE,
    WHITE_LABEL_CAMERA,
    Estate,
    simulated_estate,
)
from tests.support.cli import Run, Sandbox, one_line_error

DB = Path("home/.local/share/watchkeeper/watchkeeper.db")
PROBE_TIMEOUT = 2.0

EXPECTED_FINDINGS = {
    HIKVISION_CAMERA.name: {
        "fcc-covered-list",
        "uk-sensitive-sites",
        "face-recognition-offered",
        "cloud-p2p-enabled",
        "plain-http",
        "telnet-open",
        "firmware-old",
    },
    DAHUA_NVR.name: {
        "fcc-covered-list",
        "uk-sensitive-sites",
        "face-recognition-offered",
        "demographic-analytics-offered",
        "emotion-analytics-offered",
        "cloud-p2p-enabled",
        "plain-http",
        "firmware-old",
    },
    WHITE_LABEL_CAMERA.name: {
        "fcc-covered-list",
        "uk-sensitive-sites",
        "plain-http",
        "firmware-old",
    },
    AXIS_CAMERA.name: set(),
    HANGING_DEVICE.name: {"not-answering"},
    MALFORMED_DEVICE.name: {"plain-http", "protocol-violation"},
    HUGE_DEVICE.name: {"protocol-violation"},
}
READS = {("GET", None), ("OPTIONS", "RTSP")} | {
    ("POST", op)
    for op in (
        "GetCapabilities",
        "GetServices",
        "GetDeviceInformation",
        "GetNetworkInterfaces",
        "GetVideoAnalyticsConfigurations",
    )
}


def ok(run: Run) -> Run:
    assert run.code == 0, run.stderr
    return run


@pytest.fixture
def estate(tmp_path: Path):
    with simulated_estate(tmp_path) as simulated:
        yield simulated


def ports_option(estate: Estate) -> str:
    return ",".join(f"{name}={port}" for name, port in estate.plan.services().items())


def test_an_estate_audit_from_discovery_to_the_report(sandbox: Sandbox, estate: Estate) -> None:
    ok(sandbox.run("init", "--organisation", "Corner Shops", "--admin", "alice"))
    for site in ("Leeds", "Depot"):
        ok(sandbox.run("sites", "add", site, "--user", "alice"))
    for name, role in (("frank", "auditor"), ("carol", "manager")):
        ok(
            sandbox.run(
                "users",
                "create",
                name,
                "--role",
                role,
                "--site",
                "Leeds",
                "--no-password",
                "--user",
                "alice",
            )
        )
    ok(
        sandbox.run(
            "cameras",
            "add",
            "Leeds",
            "door",
            f"rtsp://door:pw@{estate.devices[0].address}:{estate.plan.rtsp}/s",
            "--user",
            "alice",
        )
    )
    by_address = {d.address: d for d in estate.devices}
    ports = ports_option(estate)

    # Discovery of the named network only, without WS-Discovery (see test_discover.py).
    found = ok(
        sandbox.run(
            "estate",
            "discover",
            "--site",
            "Leeds",
            "--network",
            str(estate.network),
            "--ports",
            ports,
            "--no-ws-discovery",
            "--timeout",
            "0.5",
            "--json",
            "--user",
            "alice",
        )
    )
    discovered = json.loads(found.stdout)
    assert {d["address"] for d in discovered["devices"]} == set(by_address)

    # The asset list names the white-label camera's brand and a Depot camera.
    assets = sandbox.cwd / "assets.csv"
    white_label = next(d for d in estate.devices if d.persona is WHITE_LABEL_CAMERA)
    assets.write_text(
        "Site,IP,Port,Brand,Model,Location,Installer\n"
        f"Leeds,{white_label.address},{estate.plan.http},"
        "Vantage Secure,VS-IPC2042,till,Acme Fitters\n"
    )
    imported = json.loads(
        ok(sandbox.run("estate", "import", "assets.csv", "--json", "--user", "alice")).stdout
    )
    assert imported == {"rows": 1, "new": 0, "updated": 1}

    ok(sandbox.run("estate", "sensitive", "Leeds", "--note", "council depot", "--user", "alice"))
    probed = ok(
        sandbox.run(
            "estate",
            "probe",
            "--site",
            "Leeds",
            "--username",
            "auditor",
            "--password-stdin",
            "--ports",
            ports,
            "--timeout",
            str(PROBE_TIMEOUT),
            "--json",
            "--user",
            "alice",
            stdin="read-only-password\n",
        )
    )
    assert len(json.loads(probed.stdout)) == len(estate.devices)

    listed = json.loads(ok(sandbox.run("estate", "list", "--json", "--user", "frank")).stdout)
    assert {v["address"] for v in listed} == set(by_address)
    for view in listed:
        persona = by_address[view["address"]].persona
        assert view["maker"] == persona.maker, (persona.name, view["maker_evidence"])
        assert {f["rule"] for f in view["findings"]} == EXPECTED_FINDINGS[persona.name], (
            persona.name
        )
        for finding in view["findings"]:
            assert finding["why"]
            assert finding["severity"] in {"high", "medium", "low"}
    white = next(v for v in listed if v["address"] == white_label.address)
    assert white["label_brand"] == "Vantage Secure"
    assert white["maker_confidence"] == "high"
    assert any("44:47:CC" in line and "Hikvision" in line for line in white["maker_evidence"])
    camera = next(v for v in listed if v["camera_id"] is not None)
    assert camera["address"] == estate.devices[0].address
    assert camera["origin"] == "camera"

    # The tables people read name the same devices and makers.
    table = ok(sandbox.run("estate", "list", "--user", "frank")).stdout
    assert white_label.address in table
    assert "Hikvision" in table
    card = ok(sandbox.run("estate", "show", white["short_id"], "--user", "frank")).stdout
    assert "Vantage Secure" in card
    assert "firmware-old" in card

    # Filters, and one device's history.
    hik = json.loads(
        ok(
            sandbox.run("estate", "list", "--maker", "hikvision", "--json", "--user", "carol")
        ).stdout
    )
    assert {v["address"] for v in hik} == {
        d.address for d in estate.devices if d.persona.maker == "Hikvision"
    }
    shown = json.loads(
        ok(sandbox.run("estate", "show", white["short_id"], "--json", "--user", "alice")).stdout
    )
    assert len(shown["probes"]) == 1
    assert shown["probes"][0]["facts"]["onvif"]["firmware"] == WHITE_LABEL_CAMERA.firmware

    # The misbehaving devices cost bounded time and left a clear record.
    hanging = next(v for v in listed if by_address[v["address"]].persona is HANGING_DEVICE)
    detail = json.loads(
        ok(sandbox.run("estate", "show", hanging["id"], "--json", "--user", "alice")).stdout
    )
    assert len(detail["probes"][0]["problems"]) == 3  # one time-out per service asked
    assert all(
        p.endswith(f"no complete answer within {PROBE_TIMEOUT:g} s")
        for p in detail["probes"][0]["problems"]
    )
    huge = next(d for d in estate.devices if d.persona is HUGE_DEVICE)
    assert huge.bytes_sent < HUGE_BODY / 10

    # Nothing but reads reached any device.
    for device in estate.devices:
        kinds = {(r.method, r.operation) for r in device.requests}
        assert kinds <= READS, (device.persona.name, kinds - READS)
    cloud_reads = [
        r.path for d in estate.devices for r in d.requests if "EZVIZ" in r.path or "T2U" in r.path
    ]
    # The makers' documented reads of the cloud setting, with the given credentials:
    # the Hikvision camera, the white-label Hikvision and the Dahua NVR.
    assert len(cloud_reads) == 3

    # The report: HTML in Chromium, PDF opened, CSV in replacement order.
    report = json.loads(
        ok(sandbox.run("estate", "report", "--out", "report", "--json", "--user", "frank")).stdout
    )
    assert report["devices"] == len(estate.devices)
    assert report["by_maker"]["Hikvision"] == 2
    out = sandbox.cwd / "report"
    pdf = PdfReader(out / "estate-report.pdf")
    text = "".join(page.extract_text() for page in pdf.pages)
    assert len(pdf.pages) >= 2
    for expected in (
        "Replacement plan",
        "Hikvision",
        "Dahua",
        "FCC 22-84",
        "HCWS386",
        "Vantage Secure",
    ):
        assert expected in text, expected
    with (out / "estate-report.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert rows[0]["priority"] == "1"
    assert rows[0]["sensitive_site"] == "True"
    assert "demographic-analytics-offered" in rows[0]["findings"]  # the Dahua NVR comes first
    browser, driver = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
    ):
        options.add_argument(argument)
    window = webdriver.Chrome(options=options, service=Service(driver))
    try:
        window.get((out / "estate-report.html").as_uri())
        assert "Camera estate audit: Corner Shops" in window.title
        charts = window.execute_script(
            "return [...document.images].filter(i => i.complete && i.naturalWidth > 0).length"
        )
        assert charts == 3
        screenshot(window, "estate-report")
    finally:
        window.quit()

    # Every step is in the audit log.
    with closing(sqlite3.connect(sandbox.root / DB)) as database:
        actions = [
            row[0] for row in database.execute("SELECT action FROM audit_event ORDER BY sequence")
        ]
    for action in (
        "estate.cameras.join",
        "estate.discover",
        "estate.import",
        "estate.site.sensitive",
        "estate.report",
    ):
        assert action in actions, action
    assert actions.count("estate.probe") == len(estate.devices)
    ok(sandbox.run("audit", "verify"))


def test_refusals_are_one_line_and_store_nothing(sandbox: Sandbox, estate: Estate) -> None:
    ok(sandbox.run("init", "--organisation", "Corner Shops", "--admin", "alice"))
    ok(sandbox.run("sites", "add", "Leeds", "--user", "alice"))
    ok(
        sandbox.run(
            "users", "create", "frank", "--role", "auditor", "--no-password", "--user", "alice"
        )
    )
    bad = sandbox.cwd / "bad.csv"
    bad.write_text("site,ip,brand\nLeeds,10.0.0.1,Axis\nLeeds,not-an-ip,Axis\nNowhere,10.0.0.2,\n")
    cases = [
        (
            (
                "estate",
                "discover",
                "--site",
                "Leeds",
                "--network",
                "10.0.0.0/16",
                "--user",
                "alice",
            ),
            9,
            "add --yes",
        ),
        (
            (
                "estate",
                "discover",
                "--site",
                "Leeds",
                "--network",
                "10.0.0.300/24",
                "--user",
                "alice",
            ),
            2,
            "is not a network",
        ),
        (
            (
                "estate",
                "discover",
                "--site",
                "Leeds",
                "--network",
                str(estate.network),
                "--user",
                "frank",
            ),
            9,
            "may not discover",
        ),
        (
            ("estate", "import", "bad.csv", "--user", "alice"),
            2,
            "line 3: ip 'not-an-ip' is not an IP address",
        ),
        (("estate", "show", "abcdef12", "--user", "alice"), 10, "no estate device"),
        (("estate", "probe", "--username", "admin", "--user", "alice"), 2, "add --site NAME"),
        (
            ("estate", "probe", "--site", "Leeds", "--username", "admin", "--user", "alice"),
            2,
            "--password-stdin",
        ),
        (("estate", "list", "--user", "bob"), 10, "no user"),
    ]
    for args, code, message in cases:
        run = sandbox.run(*args)
        assert run.code == code, (args, run.stderr)
        assert message in one_line_error(run), (args, run.stderr)
    assert json.loads(ok(sandbox.run("estate", "list", "--json", "--user", "alice")).stdout) == []
    for device in estate.devices:
        assert device.requests == []
