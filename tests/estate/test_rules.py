"""Risk rules: each sourced and dated; each applies for its reason only."""

from __future__ import annotations

import datetime as dt

import pytest

from watchkeeper.estate.rules import evaluate, firmware_date, rules

NOW = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)


def test_every_rule_has_a_dated_source() -> None:
    for rule in rules().values():
        assert rule.source, rule.id
        assert rule.url.startswith("https://"), rule.id
        assert rule.date[:4].isdigit(), rule.id
        assert rule.severity in {"high", "medium", "low"}


@pytest.mark.parametrize(
    ("firmware", "built"),
    [
        ("V5.5.82 build 190909", dt.date(2019, 9, 9)),
        ("2.800.0000000.16.R, Build Date: 2020-11-19", dt.date(2020, 11, 19)),
        ("10.12.114", None),
        ("V5.5.82 build 191399", None),
        (None, None),
    ],
)
def test_firmware_build_dates(firmware: str | None, built: dt.date | None) -> None:
    assert firmware_date(firmware) == built


def found(maker=None, facts=None, answered=True, sensitive=False, last_seen=None, age=1095):
    return {
        f.rule: f
        for f in evaluate(
            maker=maker,
            maker_evidence=["evidence"],
            answered=answered,
            facts={"open_ports": {}} | (facts or {}),
            problems=["HTTP GET /: no complete answer within 2 s"],
            last_seen=last_seen,
            sensitive_site=sensitive,
            now=NOW,
            firmware_max_age_days=age,
        )
    }


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"maker": "Axis"}, set()),
        ({"maker": "Hytera"}, {"fcc-covered-list", "uk-sensitive-sites"}),
        (
            {"facts": {"onvif": {"analytics": ["FaceMatch tt:FaceRecognition"]}}},
            {"face-recognition-offered"},
        ),
        (
            {"facts": {"onvif": {"analytics": ["AgeGender x:HumanAttribute"]}}},
            {"demographic-analytics-offered"},
        ),
        (
            {"facts": {"onvif": {"analytics": ["Mood x:EmotionAnalysis"]}}},
            {"emotion-analytics-offered"},
        ),
        (
            {
                "facts": {
                    "onvif": {"analytics": ["Motion tt:CellMotionDetector", "Storage x:ImageStore"]}
                }
            },
            set(),
        ),
        ({"facts": {"cloud": {"service": "EZVIZ", "enabled": True}}}, {"cloud-p2p-enabled"}),
        ({"facts": {"cloud": {"service": "EZVIZ", "enabled": False}}}, set()),
        (
            {"facts": {"http": {"status": 200, "location": None}, "open_ports": {"http": 80}}},
            {"plain-http"},
        ),
        (
            {
                "facts": {
                    "http": {"status": 302, "location": "https://x/"},
                    "open_ports": {"http": 80},
                }
            },
            set(),
        ),
        ({"facts": {"open_ports": {"telnet": 23}}}, {"telnet-open"}),
        ({"facts": {"onvif": {"firmware": "V5.5.82 build 190909"}}}, {"firmware-old"}),
        ({"facts": {"onvif": {"firmware": "V5.5.82 build 190909"}}, "age": 3000}, set()),
        ({"facts": {"violations": ["ONVIF GetServices: malformed XML"]}}, {"protocol-violation"}),
        ({"answered": False, "maker": "Hikvision"}, {"not-answering"}),
    ],
)
def test_which_rules_apply(kwargs: dict, expected: set[str]) -> None:
    assert set(found(**kwargs)) == expected


def test_sensitive_sites_raise_the_uk_rule_and_silence_says_since_when() -> None:
    assert found(maker="Dahua", sensitive=True)["uk-sensitive-sites"].severity == "high"
    assert found(maker="Dahua", sensitive=False)["uk-sensitive-sites"].severity == "medium"
    quiet = found(answered=False, last_seen=dt.datetime(2026, 11, 30, 9, 15, tzinfo=dt.UTC))
    assert "last answered 2026-11-30 09:15 UTC" in quiet["not-answering"].why
    assert quiet["not-answering"].evidence == ["HTTP GET /: no complete answer within 2 s"]
