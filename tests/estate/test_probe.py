"""The probe against simulated devices: what each says, read-only, within bounds."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.camera_simulators import (
    AXIS_CAMERA,
    DAHUA_NVR,
    HANGING_DEVICE,
    HIKVISION_CAMERA,
    HUGE_BODY,
    HUGE_DEVICE,
    MALFORMED_DEVICE,
    Estate,
    simulated_estate,
)
from watchkeeper.estate.probe import Credentials, Limits, ProbeResult, probe_device

LIMITS = Limits(timeout=1.0, max_body=64 * 1024)


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory):
    personas = [
        HIKVISION_CAMERA,
        DAHUA_NVR,
        AXIS_CAMERA,
        HANGING_DEVICE,
        MALFORMED_DEVICE,
        HUGE_DEVICE,
    ]
    with simulated_estate(tmp_path_factory.mktemp("devices"), personas) as simulated:
        yield simulated


def probe(
    estate: Estate, name: str, credentials: Credentials | None = None, maker: str | None = None
) -> tuple[ProbeResult, list]:
    device = next(d for d in estate.devices if d.persona.name == name)
    before = len(device.requests)
    result = asyncio.run(
        probe_device(
            device.address, {}, credentials, LIMITS, lambda facts: maker, estate.plan.services()
        )
    )
    return result, device.requests[before:]


def test_an_onvif_camera_says_what_it_is(estate: Estate) -> None:
    result, requests = probe(estate, HIKVISION_CAMERA.name)
    onvif = result.facts["onvif"]
    assert result.answered
    assert result.problems == []
    assert (onvif["manufacturer"], onvif["model"], onvif["firmware"], onvif["serial"]) == (
        "HIKVISION",
        HIKVISION_CAMERA.model,
        HIKVISION_CAMERA.firmware,
        HIKVISION_CAMERA.serial,
    )
    assert result.facts["mac"] == HIKVISION_CAMERA.mac
    assert onvif["analytics"] == [
        "FaceCaptureRule hikxsd:FaceCapture",
        "FaceDetection hikxsd:FaceDetection",
    ]
    assert "http://www.onvif.org/ver20/analytics/wsdl" in onvif["services"]
    assert result.facts["http"]["server"] == "App-webs/"
    assert result.facts["rtsp"]["server"] == "Hikvision-Webs"
    assert set(result.facts["open_ports"]) >= {"http", "rtsp", "hikvision-sdk", "telnet"}
    # No credentials: no cloud setting read, no login tried.
    assert "cloud" not in result.facts
    assert not any("ISAPI" in r.path for r in requests)


def test_with_given_credentials_the_cloud_setting_is_read(estate: Estate) -> None:
    result, requests = probe(estate, DAHUA_NVR.name, Credentials("audit", "given"), maker="Dahua")
    assert result.facts["cloud"] == {"service": "Dahua P2P (T2U)", "enabled": True}
    assert [r.method for r in requests if "configManager" in r.path] == ["GET"]


def test_tls_certificate_and_https_redirect(estate: Estate) -> None:
    result, _ = probe(estate, AXIS_CAMERA.name)
    assert result.facts["certificate"]["subject"] == "CN=simulated-camera"
    assert result.facts["http"]["location"].startswith("https://")
    assert result.facts["https"]["title"] is None or "AXIS" in result.facts["https"]["title"]


def test_a_hanging_device_costs_bounded_time(estate: Estate) -> None:
    """The bound is structural, not measured: every question has the hard limit, the
    services are asked in parallel, and ONVIF is asked nothing after its first
    question times out. So the device sees one question per service, and each of
    them is a time-out on record."""
    result, requests = probe(estate, HANGING_DEVICE.name)
    assert not result.answered
    asked = sorted((r.method, r.operation) for r in requests)
    assert asked == [("GET", None), ("OPTIONS", "RTSP"), ("POST", "GetCapabilities")]
    assert sorted(result.problems) == [
        "HTTP GET /: no complete answer within 1 s",
        "ONVIF GetCapabilities: no complete answer within 1 s",
        "RTSP OPTIONS: no complete answer within 1 s",
    ]


def test_malformed_xml_is_a_problem_not_a_crash(estate: Estate) -> None:
    result, _ = probe(estate, MALFORMED_DEVICE.name)
    assert result.answered
    assert any("malformed XML" in v for v in result.facts["violations"])


def test_a_100_mb_body_is_cut_at_the_cap(estate: Estate) -> None:
    result, _ = probe(estate, HUGE_DEVICE.name)
    huge = next(d for d in estate.devices if d.persona is HUGE_DEVICE)
    assert result.facts["violations"] == [
        f"HTTP GET /: answer larger than {LIMITS.max_body} bytes; the rest was not read"
    ]
    assert huge.bytes_sent < HUGE_BODY / 10


def test_nothing_is_ever_written(estate: Estate) -> None:
    for device in estate.devices:
        for request in device.requests:
            assert request.method in {"GET", "POST", "OPTIONS"}, request
            if request.method == "POST":
                assert request.operation.startswith("Get"), request
