"""Who really made a device: the verdict from its label and what it said about itself.

The same hardware is sold under many names, so the brand on the box or the asset list
is one clue among several. The clues and their sources are in ``data/makers.toml``
(dated, one source per entry); the owner of a MAC address block comes from the IEEE
OUI registry as Debian's ``ieee-data`` package installs it (``/usr/share/ieee-data/
oui.csv``), or the file that ``WATCHKEEPER_OUI_FILE`` names. Each clue votes for a
maker with a weight by confidence; the verdict is the maker with most weight, with
every clue as evidence, and its confidence from the strongest clues that agree.
"""

from __future__ import annotations

import csv
import functools
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"
OUI_FILES = (Path("/usr/share/ieee-data/oui.csv"), Path("/usr/share/misc/oui.csv"))
"""Where the IEEE registry is looked for, after ``WATCHKEEPER_OUI_FILE``."""

WEIGHTS = {"high": 3, "medium": 2, "low": 1}


@dataclass(frozen=True)
class Clue:
    maker: str
    weight: int
    evidence: str


@dataclass(frozen=True)
class Verdict:
    maker: str | None
    confidence: str | None
    evidence: list[str] = field(default_factory=list)
    """One line per clue, for or against, each naming where it comes from."""


@functools.cache
def makers() -> dict[str, Any]:
    """The maker data file, parsed once."""
    with (DATA / "makers.toml").open("rb") as file:
        return tomllib.load(file)


def oui_file() -> Path | None:
    """The IEEE OUI registry file in use, or None when none is installed."""
    configured = os.environ.get("WATCHKEEPER_OUI_FILE")
    candidates = [Path(configured)] if configured else list(OUI_FILES)
    return next((path for path in candidates if path.is_file()), None)


@functools.cache
def _oui_table(path: Path) -> dict[str, str]:
    with path.open(newline="", encoding="utf-8", errors="replace") as file:
        return {
            row["Assignment"].upper(): row["Organization Name"].strip()
            for row in csv.DictReader(file)
            if row.get("Registry") == "MA-L"
        }


def mac_vendor(mac: str | None) -> str | None:
    """The organisation the IEEE assigned ``mac``'s first 24 bits to, if known here."""
    if not mac:
        return None
    digits = re.sub(r"[^0-9A-Fa-f]", "", mac).upper()
    path = oui_file()
    if len(digits) < 6 or path is None:
        return None
    return _oui_table(path).get(digits[:6])


def _matches(patterns: list[dict], value: str | None) -> dict | None:
    if not value:
        return None
    return next((p for p in patterns if re.search(p["pattern"], value.strip())), None)


def clues(label_brand: str | None, facts: dict[str, Any]) -> list[Clue]:
    """Every clue in ``label_brand`` and a probe's ``facts`` that names a maker."""
    found: list[Clue] = []
    onvif = facts.get("onvif") or {}
    manufacturer = (onvif.get("manufacturer") or "").strip()
    vendor = mac_vendor(facts.get("mac"))
    http_server = (facts.get("http") or {}).get("server") or (facts.get("https") or {}).get(
        "server"
    )
    title = (facts.get("http") or {}).get("title") or (facts.get("https") or {}).get("title")
    open_ports = set((facts.get("open_ports") or {}).values())
    for maker in makers()["maker"]:
        name = maker["name"]
        for brand in (label_brand, manufacturer):
            if not brand:
                continue
            lowered = brand.lower()
            if any(lowered.startswith(s) for s in maker["manufacturer_strings"]):
                said = "ONVIF manufacturer" if brand == manufacturer else "brand on the label"
                found.append(Clue(name, 3, f"{said} {brand!r} is {name} (high)"))
            for entry in maker.get("brands", []):
                if lowered == entry["brand"].lower():
                    found.append(
                        Clue(
                            name,
                            WEIGHTS[entry["confidence"]],
                            f"brand {brand!r}: {entry['relation']} ({entry['confidence']}; "
                            f"{entry['source']}, {entry['date']})",
                        )
                    )
        if vendor and any(owner.lower() in vendor.lower() for owner in maker["oui_owners"]):
            found.append(
                Clue(name, 3, f"MAC {facts['mac']} is registered to {vendor} (IEEE OUI; high)")
            )
        signatures = [
            (maker["firmware_patterns"], onvif.get("firmware"), "firmware"),
            (maker["server_headers"], http_server, "web server header"),
            (maker.get("login_titles", []), title, "login page title"),
        ]
        for patterns, value, what in signatures:
            hit = _matches(patterns, value)
            if hit:
                found.append(
                    Clue(
                        name,
                        WEIGHTS[hit["confidence"]],
                        f"{what} {value!r} has {name}'s format ({hit['confidence']}; "
                        f"{hit['source']}, {hit['date']})",
                    )
                )
        for port in maker["sdk_ports"]:
            if port["port"] in open_ports:
                found.append(
                    Clue(
                        name,
                        WEIGHTS[port["confidence"]],
                        f"port {port['port']} open: {name}'s SDK port ({port['confidence']}; "
                        f"{port['source']}, {port['date']})",
                    )
                )
    return found


def identify(label_brand: str | None, facts: dict[str, Any]) -> Verdict:
    """The maker with most weight of evidence; its confidence is high with 5 or more
    points (two strong clues, or one strong and one documented signature), medium with
    3 or 4, low below. A brand that no clue ties to a known maker is taken at its word,
    with low confidence."""
    found = clues(label_brand, facts)
    manufacturer = ((facts.get("onvif") or {}).get("manufacturer") or "").strip()
    if not found:
        named = manufacturer or label_brand
        if not named:
            return Verdict(None, None, [])
        source = "ONVIF manufacturer" if manufacturer else "brand on the label"
        return Verdict(named, "low", [f"{source} {named!r}; no other clue"])
    totals: dict[str, int] = {}
    for clue in found:
        totals[clue.maker] = totals.get(clue.maker, 0) + clue.weight
    maker = max(totals, key=lambda name: totals[name])
    score = totals[maker]
    confidence = "high" if score >= 5 else "medium" if score >= 3 else "low"
    evidence = [c.evidence for c in found if c.maker == maker]
    evidence += [f"against: {c.evidence}" for c in found if c.maker != maker]
    for said, value in (("ONVIF manufacturer", manufacturer), ("label", label_brand)):
        if value and not any(repr(value) in line for line in evidence):
            evidence.append(f"{said} {value!r} names no known maker: sold under another name")
    return Verdict(maker, confidence, evidence)
