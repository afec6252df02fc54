"""The estate register in the database: devices, their probes and findings.

These helpers read and write rows only; who may call them, and the audit event each
change makes, is :mod:`watchkeeper.governance.estate`'s business. Views are plain
dicts (JSON-ready) that the command line, the API and the report share.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import String, cast, select
from sqlalchemy.orm import Session

from watchkeeper.estate.identify import identify
from watchkeeper.estate.probe import ProbeResult
from watchkeeper.estate.rules import SEVERITY_ORDER, evaluate
from watchkeeper.store.models import (
    Camera,
    EstateDevice,
    EstateFinding,
    EstateProbe,
    EstateSensitiveSite,
    Site,
)

URL_PORTS = {
    "rtsp": ("rtsp", 554),
    "rtsps": ("rtsp", 322),
    "http": ("http", 80),
    "https": ("https", 443),
}


def find_device(session: Session, site: Site, address: str) -> EstateDevice | None:
    return session.scalars(
        select(EstateDevice).where(EstateDevice.site_id == site.id, EstateDevice.address == address)
    ).one_or_none()


def upsert_device(
    session: Session,
    site: Site,
    address: str,
    origin: str,
    ports: dict[str, int] | None = None,
    **labels: Any,
) -> tuple[EstateDevice, bool]:
    """The site's device at ``address`` (made if new), with ``ports`` and the given
    labels added; True when it was made."""
    device = find_device(session, site, address)
    created = device is None
    if device is None:
        device = EstateDevice(
            organisation_id=site.organisation_id,
            site=site,
            address=address,
            origin=origin,
            ports={},
            capabilities=[],
            evidence=[],
        )
        session.add(device)
    device.ports = {**(device.ports or {}), **(ports or {})}
    for name, value in labels.items():
        if value is not None:
            setattr(device, name, value)
    if created and device.label_brand and device.maker is None:
        verdict = identify(device.label_brand, {})
        device.maker, device.maker_confidence, device.evidence = (
            verdict.maker,
            verdict.confidence,
            verdict.evidence,
        )
    session.flush()
    return device, created


def camera_address(camera: Camera) -> tuple[str, dict[str, int]] | None:
    """The host and port of a network camera's stream URL; None for files and webcams."""
    parts = urlsplit(camera.source_display)
    if parts.scheme not in URL_PORTS or not parts.hostname:
        return None
    service, default = URL_PORTS[parts.scheme]
    return parts.hostname, {service: parts.port or default}


def cameras_outside(session: Session, organisation_id: uuid.UUID) -> list[Camera]:
    """The organisation's recognition cameras not yet in the register."""
    joined = select(EstateDevice.camera_id).where(EstateDevice.camera_id.is_not(None))
    return list(
        session.scalars(
            select(Camera)
            .join(Site)
            .where(Site.organisation_id == organisation_id, Camera.id.not_in(joined))
        )
    )


def is_sensitive(session: Session, site_id: uuid.UUID) -> bool:
    return session.get(EstateSensitiveSite, site_id) is not None


def store_probe(
    session: Session,
    device: EstateDevice,
    result: ProbeResult,
    now: dt.datetime,
    firmware_max_age_days: int,
) -> EstateProbe:
    """Record ``result`` as ``device``'s newest probe, with the maker's verdict and
    the findings of the rules."""
    answered = result.answered
    facts = result.facts
    if answered:
        verdict = identify(device.label_brand, facts)
        onvif = facts.get("onvif") or {}
        device.maker, device.maker_confidence, device.evidence = (
            verdict.maker,
            verdict.confidence,
            verdict.evidence,
        )
        device.model = onvif.get("model") or device.model or device.label_model
        device.firmware = onvif.get("firmware") or device.firmware
        device.serial = onvif.get("serial") or device.serial
        device.mac = facts.get("mac") or device.mac
        device.capabilities = list(onvif.get("analytics") or device.capabilities or [])
        device.ports = {**(device.ports or {}), **(facts.get("open_ports") or {})}
    found = evaluate(
        maker=device.maker,
        maker_evidence=list(device.evidence or []),
        answered=answered,
        facts=facts,
        problems=result.problems,
        last_seen=device.last_seen_at,
        sensitive_site=is_sensitive(session, device.site_id),
        now=now,
        firmware_max_age_days=firmware_max_age_days,
    )
    probe = EstateProbe(
        device=device,
        at=now,
        answered=answered,
        seconds=result.seconds,
        facts=facts,
        problems=result.problems,
        findings=[
            EstateFinding(rule=f.rule, severity=f.severity, why=f.why, evidence=f.evidence)
            for f in found
        ],
    )
    session.add(probe)
    session.flush()
    device.latest_probe_id = probe.id
    if answered:
        device.first_seen_at = device.first_seen_at or now
        device.last_seen_at = now
    return probe


def current_findings(
    session: Session, devices: Iterable[EstateDevice]
) -> dict[uuid.UUID, list[EstateFinding]]:
    """Each device's findings from its newest probe (one query for all)."""
    latest = {d.latest_probe_id: d.id for d in devices if d.latest_probe_id is not None}
    result: dict[uuid.UUID, list[EstateFinding]] = {}
    if not latest:
        return result
    rows = session.scalars(select(EstateFinding).where(EstateFinding.probe_id.in_(list(latest))))
    for finding in rows:
        result.setdefault(latest[finding.probe_id], []).append(finding)
    for findings in result.values():
        findings.sort(key=lambda f: (SEVERITY_ORDER.get(f.severity, 9), f.rule))
    return result


def finding_view(finding: EstateFinding) -> dict[str, Any]:
    return {
        "rule": finding.rule,
        "severity": finding.severity,
        "why": finding.why,
        "evidence": finding.evidence,
    }


def device_view(
    device: EstateDevice, findings: list[EstateFinding], sensitive: bool
) -> dict[str, Any]:
    return {
        "id": str(device.id),
        "short_id": str(device.id)[:8],
        "site": device.site.name,
        "sensitive_site": sensitive,
        "location": device.location,
        "address": device.address,
        "ports": device.ports,
        "origin": device.origin,
        "camera_id": None if device.camera_id is None else str(device.camera_id),
        "label_brand": device.label_brand,
        "label_model": device.label_model,
        "installer": device.installer,
        "maker": device.maker,
        "maker_confidence": device.maker_confidence,
        "maker_evidence": device.evidence,
        "model": device.model,
        "firmware": device.firmware,
        "serial": device.serial,
        "mac": device.mac,
        "capabilities": device.capabilities,
        "findings": [finding_view(f) for f in findings],
        "first_seen_at": device.first_seen_at.isoformat() if device.first_seen_at else None,
        "last_seen_at": device.last_seen_at.isoformat() if device.last_seen_at else None,
    }


def probe_view(probe: EstateProbe) -> dict[str, Any]:
    return {
        "id": str(probe.id),
        "at": probe.at.isoformat(),
        "answered": probe.answered,
        "seconds": probe.seconds,
        "facts": probe.facts,
        "problems": probe.problems,
        "findings": [finding_view(f) for f in probe.findings],
    }


def device_by_id(session: Session, organisation_id: uuid.UUID, ident: str) -> EstateDevice | None:
    """A device by its id or the first 6 to 8 hex digits lists show."""
    text = ident.strip().lower()
    try:
        found = session.get(EstateDevice, uuid.UUID(text))
        return found if found is not None and found.organisation_id == organisation_id else None
    except ValueError:
        pass
    if not 6 <= len(text) <= 8 or any(c not in "0123456789abcdef" for c in text):
        return None
    matches = session.scalars(
        select(EstateDevice)
        .where(EstateDevice.organisation_id == organisation_id)
        .where(cast(EstateDevice.id, String).like(f"{text}%"))
        .limit(2)
    ).all()
    return matches[0] if len(matches) == 1 else None
