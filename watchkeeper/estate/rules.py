"""The risk rules: which findings a device's verdict and probe facts meet.

Each rule's title, severity, summary and dated source live in ``data/rules.toml``;
this module only decides whether a rule applies and says why, with the evidence.
Analytics a device offers are flagged, never used.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from watchkeeper.config import EstateConfig
from watchkeeper.estate.identify import DATA

SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}
DEFAULT_FIRMWARE_MAX_AGE_DAYS: int = EstateConfig.model_fields["firmware_max_age_days"].default


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    severity: str
    summary: str
    source: str
    url: str
    date: str
    makers: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True)
class Found:
    """A rule that applies to a device: why, and the evidence."""

    rule: str
    severity: str
    why: str
    evidence: list[str] = field(default_factory=list)


@functools.cache
def rules() -> dict[str, Rule]:
    with (DATA / "rules.toml").open("rb") as file:
        document = tomllib.load(file)
    return {
        entry["id"]: Rule(
            id=entry["id"],
            title=entry["title"],
            severity=entry["severity"],
            summary=entry["summary"],
            source=entry["source"],
            url=entry["url"],
            date=str(entry["date"]),
            makers=tuple(entry.get("makers", ())),
            keywords=tuple(entry.get("keywords", ())),
        )
        for entry in document["rule"]
    }


def firmware_date(firmware: str | None) -> dt.date | None:
    """The build date in a firmware version: ``build 190909`` (YYMMDD) or an ISO date."""
    if not firmware:
        return None
    iso = re.search(r"(20\d\d)-(\d\d)-(\d\d)", firmware)
    short = re.search(r"build\s*:?\s*(\d\d)(\d\d)(\d\d)\b", firmware, re.IGNORECASE)
    try:
        if iso:
            return dt.date(int(iso[1]), int(iso[2]), int(iso[3]))
        if short:
            return dt.date(2000 + int(short[1]), int(short[2]), int(short[3]))
    except ValueError:
        return None
    return None


def _found(rule_id: str, why: str, evidence: list[str], severity: str | None = None) -> Found:
    rule = rules()[rule_id]
    return Found(rule_id, severity or rule.severity, why, evidence)


def evaluate(
    *,
    maker: str | None,
    maker_evidence: list[str],
    answered: bool,
    facts: dict[str, Any],
    problems: list[str],
    last_seen: dt.datetime | None,
    sensitive_site: bool,
    now: dt.datetime,
    firmware_max_age_days: int = DEFAULT_FIRMWARE_MAX_AGE_DAYS,
) -> list[Found]:
    """Every rule that applies, most severe first. ``last_seen``: when the device last
    answered before this probe."""
    table = rules()
    found: list[Found] = []
    if not answered:
        why = (
            f"no answer on any port; last answered {last_seen:%Y-%m-%d %H:%M} UTC"
            if last_seen
            else "no answer on any port, ever"
        )
        return [_found("not-answering", why, problems)]
    if maker in table["fcc-covered-list"].makers:
        found.append(
            _found(
                "fcc-covered-list",
                f"made by {maker}, on the FCC Covered List since {table['fcc-covered-list'].date}",
                maker_evidence,
            )
        )
    if maker in table["uk-sensitive-sites"].makers:
        where = "a site marked sensitive" if sensitive_site else "a site not marked sensitive"
        found.append(
            _found(
                "uk-sensitive-sites",
                f"made by {maker}, named in UK guidance for sensitive sites; installed at {where}",
                maker_evidence,
                None if sensitive_site else "medium",
            )
        )
    offered = list((facts.get("onvif") or {}).get("analytics") or [])
    for rule_id in (
        "face-recognition-offered",
        "demographic-analytics-offered",
        "emotion-analytics-offered",
    ):
        hits = [
            name
            for name in offered
            if any(
                re.search(rf"(^|[^a-z]){re.escape(keyword)}", name.lower().replace(":", " "))
                for keyword in table[rule_id].keywords
            )
        ]
        if hits:
            found.append(
                _found(
                    rule_id,
                    f"offers {', '.join(hits)} (flagged only; never used)",
                    [f"ONVIF analytics: {h}" for h in hits],
                )
            )
    cloud = facts.get("cloud")
    if cloud and cloud.get("enabled"):
        found.append(
            _found(
                "cloud-p2p-enabled",
                f"{cloud['service']} is enabled",
                [f"device setting read: {cloud}"],
            )
        )
    http = facts.get("http")
    if http and not (http.get("location") or "").lower().startswith("https:"):
        found.append(
            _found(
                "plain-http",
                f"port {facts['open_ports']['http']} answers HTTP {http['status']} "
                "without sending to HTTPS",
                [f"HTTP GET / -> {http['status']}, Server: {http.get('server')}"],
            )
        )
    if "telnet" in (facts.get("open_ports") or {}):
        port = facts["open_ports"]["telnet"]
        found.append(
            _found("telnet-open", f"Telnet port {port} accepts connections", [f"TCP {port} open"])
        )
    firmware = (facts.get("onvif") or {}).get("firmware")
    built = firmware_date(firmware)
    if built is not None:
        age = (now.date() - built).days
        if age > firmware_max_age_days:
            found.append(
                _found(
                    "firmware-old",
                    f"firmware built {built.isoformat()}, {age // 365} years ago "
                    f"(limit {firmware_max_age_days} days)",
                    [f"ONVIF FirmwareVersion {firmware!r}"],
                )
            )
    broken = facts.get("violations") or []
    if broken:
        found.append(
            _found("protocol-violation", f"{len(broken)} answer(s) could not be read", broken)
        )
    return sorted(found, key=lambda f: SEVERITY_ORDER[f.severity])
