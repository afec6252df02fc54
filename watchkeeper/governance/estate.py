"""The camera estate audit's rules: who may see and change the register, and the
audit event of every discovery, import, probe, marking and report.

Seeing the register needs :attr:`Permission.ESTATE_VIEW` (admins, managers,
auditors); discovering, importing and probing need :attr:`Permission.ESTATE_SURVEY`
(admins, managers). Both are site-scoped like alerts: a manager sees and surveys only
the sites they are bound to. Recognition cameras join the register whenever it is
read or changed, so the register never misses a camera the organisation runs.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from watchkeeper.errors import NotFoundError, PolicyError
from watchkeeper.estate import register
from watchkeeper.estate.discover import Found
from watchkeeper.estate.importer import AssetRow
from watchkeeper.estate.probe import ProbeResult
from watchkeeper.governance import audit
from watchkeeper.governance.access import Permission, require, site_scope
from watchkeeper.store.crypto import KeyRing
from watchkeeper.store.models import (
    EstateDevice,
    EstateProbe,
    EstateSensitiveSite,
    Organisation,
    Site,
    User,
    utcnow,
)


def _check_site(user: User, site: Site, organisation: Organisation) -> None:
    scope = site_scope(user)
    if site.organisation_id != organisation.id or (scope is not None and site.id not in scope):
        raise NotFoundError(f"no site {site.name!r}")


def join_cameras(session: Session, keys: KeyRing, organisation: Organisation, actor: User) -> int:
    """Add every recognition camera with a network address to the register (once).
    Cameras that share an address (channels of one recorder) are one device, linked
    to the first of them."""
    joined = 0
    for camera in register.cameras_outside(session, organisation.id):
        address = register.camera_address(camera)
        if address is None:
            continue
        host, ports = address
        existing = register.find_device(session, camera.site, host)
        if existing is not None and existing.camera_id is not None:
            continue  # another channel of a device already in the register
        device, _ = register.upsert_device(session, camera.site, host, "camera", ports)
        device.camera_id = camera.id
        device.location = device.location or camera.name
        joined += 1
    if joined:
        session.flush()
        audit.record(
            session, keys, organisation.id, actor.name, "estate.cameras.join", cameras=joined
        )
    return joined


def record_discovery(
    session: Session,
    keys: KeyRing,
    organisation: Organisation,
    actor: User,
    site: Site,
    found: list[Found],
    networks: list[str],
    seconds: float,
) -> list[EstateDevice]:
    """Store what a discovery found at ``site``, audited with the networks probed."""
    require(actor, Permission.ESTATE_SURVEY)
    _check_site(actor, site, organisation)
    join_cameras(session, keys, organisation, actor)
    now = utcnow()
    devices, new = [], 0
    for item in found:
        device, created = register.upsert_device(
            session, site, item.address, "discovered", item.ports
        )
        device.first_seen_at = device.first_seen_at or now
        device.last_seen_at = now
        devices.append(device)
        new += created
    audit.record(
        session,
        keys,
        organisation.id,
        actor.name,
        "estate.discover",
        "site",
        site.id,
        networks=networks,
        found=len(found),
        new=new,
        seconds=round(seconds, 2),
    )
    return devices


def import_assets(
    session: Session,
    keys: KeyRing,
    organisation: Organisation,
    actor: User,
    rows: list[AssetRow],
    file_name: str,
) -> tuple[int, int]:
    """Store an asset list's rows (all or none); (new devices, updated devices)."""
    require(actor, Permission.ESTATE_SURVEY)
    sites: dict[str, Site] = {}
    unknown = sorted(
        {row.site for row in rows}
        - {
            s.name
            for s in session.scalars(select(Site).where(Site.organisation_id == organisation.id))
        }
    )
    if unknown:
        raise NotFoundError(
            f"asset list refused, nothing imported: no site(s) {', '.join(map(repr, unknown))}"
        )
    for row in rows:
        if row.site not in sites:
            sites[row.site] = session.scalars(
                select(Site).where(Site.organisation_id == organisation.id, Site.name == row.site)
            ).one()
            try:
                _check_site(actor, sites[row.site], organisation)
            except NotFoundError:
                raise PolicyError(
                    f"asset list refused, nothing imported: {actor.name!r} may not survey "
                    f"site {row.site!r}"
                ) from None
    join_cameras(session, keys, organisation, actor)
    new = updated = 0
    for row in rows:
        _, created = register.upsert_device(
            session,
            sites[row.site],
            row.address,
            "imported",
            row.ports,
            location=row.location,
            label_brand=row.brand,
            label_model=row.model,
            installer=row.installer,
        )
        new += created
        updated += not created
    audit.record(
        session,
        keys,
        organisation.id,
        actor.name,
        "estate.import",
        file=file_name,
        rows=len(rows),
        new=new,
        updated=updated,
    )
    return new, updated


def devices_to_probe(
    session: Session,
    keys: KeyRing,
    organisation: Organisation,
    actor: User,
    site: Site | None = None,
    ident: str | None = None,
) -> list[EstateDevice]:
    """The devices a probe run will ask: one, a site's, or all the actor may survey."""
    require(actor, Permission.ESTATE_SURVEY)
    join_cameras(session, keys, organisation, actor)
    if ident is not None:
        return [device(session, organisation, actor, ident)]
    return _visible(session, organisation, actor, site)


def record_probes(
    session: Session,
    keys: KeyRing,
    organisation: Organisation,
    actor: User,
    results: list[tuple[EstateDevice, ProbeResult]],
    firmware_max_age_days: int,
    credentials_given: bool,
) -> list[EstateProbe]:
    """Store a probe run's results with their findings; one audit event per device."""
    require(actor, Permission.ESTATE_SURVEY)
    now = utcnow()
    probes = []
    for target, result in results:
        _check_site(actor, target.site, organisation)
        probe = register.store_probe(session, target, result, now, firmware_max_age_days)
        probes.append(probe)
        audit.record(
            session,
            keys,
            organisation.id,
            actor.name,
            "estate.probe",
            "estate_device",
            target.id,
            answered=probe.answered,
            maker=target.maker,
            findings=sorted({f.rule for f in probe.findings}),
            credentials_used=credentials_given,
            seconds=probe.seconds,
        )
    return probes


def mark_sensitive(
    session: Session,
    keys: KeyRing,
    organisation: Organisation,
    actor: User,
    site: Site,
    sensitive: bool,
    note: str | None,
) -> None:
    require(actor, Permission.ESTATE_SURVEY)
    _check_site(actor, site, organisation)
    marking = session.get(EstateSensitiveSite, site.id)
    if sensitive and marking is None:
        session.add(EstateSensitiveSite(site_id=site.id, note=note, marked_by=actor.name))
    elif not sensitive and marking is not None:
        session.delete(marking)
    session.flush()
    audit.record(
        session,
        keys,
        organisation.id,
        actor.name,
        "estate.site.sensitive",
        "site",
        site.id,
        sensitive=sensitive,
    )


def _visible(
    session: Session, organisation: Organisation, user: User, site: Site | None = None
) -> list[EstateDevice]:
    query = select(EstateDevice).join(Site).where(EstateDevice.organisation_id == organisation.id)
    scope = site_scope(user)
    if scope is not None:
        query = query.where(EstateDevice.site_id.in_(list(scope)))
    if site is not None:
        _check_site(user, site, organisation)
        query = query.where(EstateDevice.site_id == site.id)
    return list(session.scalars(query.order_by(Site.name, EstateDevice.address)))


def device(session: Session, organisation: Organisation, user: User, ident: str) -> EstateDevice:
    found = register.device_by_id(session, organisation.id, ident)
    scope = site_scope(user)
    if found is None or (scope is not None and found.site_id not in scope):
        raise NotFoundError(
            f"no estate device {ident!r} (ids as `watchkeeper estate list` shows them)"
        )
    return found


def sensitive_sites(session: Session, organisation: Organisation) -> set[str]:
    return set(
        session.scalars(
            select(Site.name)
            .join(EstateSensitiveSite, EstateSensitiveSite.site_id == Site.id)
            .where(Site.organisation_id == organisation.id)
        )
    )


def register_view(
    session: Session,
    keys: KeyRing,
    organisation: Organisation,
    user: User,
    site: str | None = None,
    maker: str | None = None,
    finding: str | None = None,
) -> list[dict[str, Any]]:
    """The register as the user may see it, filtered by site name, maker and rule id."""
    require(user, Permission.ESTATE_VIEW)
    join_cameras(session, keys, organisation, user)
    devices = _visible(session, organisation, user)
    findings = register.current_findings(session, devices)
    sensitive = sensitive_sites(session, organisation)
    views = [
        register.device_view(d, findings.get(d.id, []), d.site.name in sensitive) for d in devices
    ]
    if site:
        views = [v for v in views if v["site"] == site]
    if maker:
        views = [v for v in views if (v["maker"] or "").lower() == maker.lower()]
    if finding:
        views = [v for v in views if any(f["rule"] == finding for f in v["findings"])]
    return views


def device_detail(
    session: Session, organisation: Organisation, user: User, ident: str
) -> dict[str, Any]:
    """One device with its probe history, newest first."""
    require(user, Permission.ESTATE_VIEW)
    found = device(session, organisation, user, ident)
    findings = register.current_findings(session, [found])
    view = register.device_view(
        found, findings.get(found.id, []), found.site.name in sensitive_sites(session, organisation)
    )
    view["probes"] = [register.probe_view(p) for p in found.probes]
    return view


def record_report(
    session: Session,
    keys: KeyRing,
    organisation: Organisation,
    user: User,
    files: list[str],
    devices: int,
) -> None:
    require(user, Permission.ESTATE_VIEW)
    audit.record(
        session, keys, organisation.id, user.name, "estate.report", files=files, devices=devices
    )


def estate_counts(views: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts for the report and the transparency page."""
    flagged = [v for v in views if v["findings"]]
    return {
        "devices": len(views),
        "flagged": len(flagged),
        "by_maker": dict(Counter(v["maker"] or "unknown" for v in views).most_common()),
        "by_site": dict(Counter(v["site"] for v in views).most_common()),
        "by_finding": dict(Counter(f["rule"] for v in views for f in v["findings"]).most_common()),
        "at": dt.datetime.now(dt.UTC).isoformat(),
    }


def transparency_counts(session: Session, organisation: Organisation, user: User) -> dict[str, Any]:
    """The organisation's estate in counts, for the transparency page (anyone with
    :attr:`Permission.VIEW`): devices by maker, and devices by current finding."""
    require(user, Permission.VIEW)
    devices = list(
        session.scalars(select(EstateDevice).where(EstateDevice.organisation_id == organisation.id))
    )
    findings = register.current_findings(session, devices)
    by_rule: Counter[str] = Counter()
    for found in findings.values():
        by_rule.update({f.rule for f in found})
    return {
        "devices": len(devices),
        "flagged": sum(1 for d in devices if findings.get(d.id)),
        "by_maker": dict(Counter(d.maker or "unknown" for d in devices).most_common()),
        "by_finding": dict(by_rule.most_common()),
    }
