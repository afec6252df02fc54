"""Identification: the real maker behind the label, with evidence and confidence."""

from __future__ import annotations

from pathlib import Path

import pytest

from watchkeeper.estate import identify as identification
from watchkeeper.estate.identify import identify, mac_vendor, makers, oui_file

HIK_FIRMWARE = "V5.5.53 build 180706"


@pytest.mark.parametrize(
    ("label", "facts", "maker", "confidence", "clue"),
    [
        # A label alone is one clue, however well sourced: never high.
        ("HiLook", {}, "Hikvision", "medium", "Hikvision's own value brand"),
        ("Imou", {}, "Dahua", "medium", "Dahua's consumer brand"),
        ("Amcrest", {}, "Dahua", "low", "OEM of Dahua hardware"),
        (
            "Vantage Secure",
            {
                "onvif": {"manufacturer": "Vantage Secure", "firmware": HIK_FIRMWARE},
                "mac": "44:47:CC:00:00:01",
            },
            "Hikvision",
            "high",
            "registered to Hangzhou Hikvision",
        ),
        (
            None,
            {"onvif": {"manufacturer": "Vantage Secure", "firmware": HIK_FIRMWARE}},
            "Hikvision",
            "low",
            "has Hikvision's format",
        ),
        (
            None,
            {"open_ports": {"dahua-sdk": 37777}, "onvif": {"firmware": "2.800.0000000.16.R"}},
            "Dahua",
            "medium",
            "SDK port",
        ),
        (
            None,
            {"onvif": {"manufacturer": "AXIS"}, "mac": "B8:A4:4F:00:00:01"},
            "Axis",
            "high",
            "Axis Communications",
        ),
        ("Bosch", {}, "Bosch", "low", "no other clue"),
        (None, {}, None, None, None),
    ],
)
def test_verdicts(label, facts, maker, confidence, clue) -> None:
    verdict = identify(label, facts)
    assert (verdict.maker, verdict.confidence) == (maker, confidence), verdict.evidence
    if clue is not None:
        assert any(clue in line for line in verdict.evidence), verdict.evidence


def test_a_label_that_contradicts_the_hardware_is_evidence_against() -> None:
    verdict = identify(
        "Axis",
        {
            "mac": "BC:AD:28:00:00:01",
            "onvif": {"firmware": HIK_FIRMWARE, "manufacturer": "HIKVISION"},
        },
    )
    assert verdict.maker == "Hikvision"
    assert any(line.startswith("against: brand on the label 'Axis'") for line in verdict.evidence)


def test_every_maker_entry_is_sourced_and_dated() -> None:
    for maker in makers()["maker"]:
        entries = maker.get("brands", []) + maker["firmware_patterns"] + maker["server_headers"]
        entries += maker["sdk_ports"] + maker.get("login_titles", [])
        for entry in entries:
            assert entry["source"], entry
            assert str(entry["date"])[:4].isdigit(), entry
            assert entry["confidence"] in identification.WEIGHTS


def test_the_oui_registry_comes_from_ieee_data_or_the_named_file(
    tmp_path: Path, monkeypatch
) -> None:
    if oui_file() is None:
        pytest.fail("no IEEE OUI registry: apt-get install ieee-data (or set WATCHKEEPER_OUI_FILE)")
    assert mac_vendor("bc-ad-28-aa-bb-cc").startswith("Hangzhou Hikvision")
    own = tmp_path / "oui.csv"
    own.write_text(
        "Registry,Assignment,Organization Name,Organization Address\n"
        "MA-L,02AB01,Example Optics Ltd,Somewhere\n"
    )
    monkeypatch.setenv("WATCHKEEPER_OUI_FILE", str(own))
    assert mac_vendor("02:AB:01:00:00:01") == "Example Optics Ltd"
    assert mac_vendor("BC:AD:28:00:00:01") is None
    monkeypatch.setenv("WATCHKEEPER_OUI_FILE", str(tmp_path / "missing.csv"))
    assert mac_vendor("BC:AD:28:00:00:01") is None
