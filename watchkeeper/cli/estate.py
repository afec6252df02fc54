"""`watchkeeper estate`: the camera estate audit (discover, import, probe, list, show,
sensitive, report). Devices are only ever read; every run is in the audit log."""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from watchkeeper.cli.app import app, stderr
from watchkeeper.cli.records import (
    JsonOption,
    OrganisationOption,
    UserOption,
    cli_errors,
    emit_fields,
    emit_json,
    emit_table,
    governed,
)
from watchkeeper.errors import ConfigError
from watchkeeper.estate import discover as discovery
from watchkeeper.estate.identify import identify
from watchkeeper.estate.importer import read_assets
from watchkeeper.estate.probe import DEFAULT_PORTS, Credentials, Limits, probe_device
from watchkeeper.estate.report import write_report
from watchkeeper.governance import access
from watchkeeper.governance import estate as governance

CONFIRM_ABOVE = discovery.MAX_ADDRESSES_WITHOUT_CONFIRMATION
estate_app = typer.Typer(
    help="The camera estate audit: which cameras you run, who made them, what they can "
    "do, and which to replace first. Devices are only read, never changed.",
    no_args_is_help=True,
)
app.add_typer(estate_app, name="estate")

PortsOption = Annotated[
    str | None,
    typer.Option(
        "--ports",
        help="Ports to try, as SERVICE=PORT,... (services: http, https, rtsp, onvif, "
        "telnet, hikvision-sdk, dahua-sdk, http-alt, onvif-alt). Default: the usual ones.",
        show_default=False,
    ),
]


def parse_ports(text: str | None, default: dict[str, int]) -> dict[str, int]:
    if text is None:
        return dict(default)
    ports: dict[str, int] = {}
    for part in text.split(","):
        name, _, number = part.strip().partition("=")
        if not name or not number.isdigit() or not 1 <= int(number) <= 65535:
            raise ConfigError(f"--ports: {part.strip()!r} is not SERVICE=PORT (1 to 65535)")
        ports[name] = int(number)
    return ports


def progress_bar(what: str) -> Progress:
    return Progress(
        TextColumn(what),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=True,
    )


@estate_app.command("discover")
def discover_command(
    ctx: typer.Context,
    site: Annotated[str, typer.Option(help="Site the devices found are at.")],
    network: Annotated[
        list[str], typer.Option(help="Network to probe, e.g. 192.168.1.0/24 (repeatable).")
    ],
    yes: Annotated[
        bool,
        typer.Option(
            "--yes",
            help=f"Go ahead with more than {CONFIRM_ABOVE} addresses.",
        ),
    ] = False,
    rate: Annotated[
        float | None,
        typer.Option(
            min=1, max=5000, help="New connections a second, at most (estate.discovery_rate)."
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            min=0.05,
            max=30,
            help="Seconds to wait for each connection (estate.discovery_timeout_s).",
        ),
    ] = None,
    ws_discovery: Annotated[
        bool, typer.Option(help="Also send an ONVIF WS-Discovery probe on the local segment.")
    ] = True,
    ports: PortsOption = None,
    user: UserOption = None,
    organisation: OrganisationOption = None,
    as_json: JsonOption = False,
) -> None:
    """Find cameras and recorders on the named networks (and no others)."""
    with cli_errors():
        config = ctx.obj.settings().estate
        rate = config.discovery_rate if rate is None else rate
        timeout = config.discovery_timeout_s if timeout is None else timeout
        networks = discovery.parse_networks(network, yes)
        plan = parse_ports(ports, discovery.CAMERA_PORTS)
        with governed(ctx, user, organisation) as g:  # refuse early: who, which site
            access.require(g.actor, access.Permission.ESTATE_SURVEY)
            access.site(g.session, g.organisation.id, site)
        started = time.monotonic()
        with progress_bar("sweeping") as bar:
            task = bar.add_task("sweep", total=None)
            found = asyncio.run(
                discovery.sweep(
                    networks,
                    plan,
                    rate=rate,
                    timeout=timeout,
                    progress=lambda done, total: bar.update(task, completed=done, total=total),
                )
            )
        announced = discovery.ws_discover() if ws_discovery else []
        merged = discovery.merge(found.values(), announced)
        seconds = time.monotonic() - started
        with governed(ctx, user, organisation) as g:
            devices = governance.record_discovery(
                g.session,
                g.store.keys,
                g.organisation,
                g.actor,
                access.site(g.session, g.organisation.id, site),
                merged,
                [str(n) for n in networks],
                seconds,
            )
            rows = [{"id": str(d.id)[:8], "address": d.address, "ports": d.ports} for d in devices]
    if as_json:
        emit_json({"found": len(rows), "seconds": round(seconds, 2), "devices": rows})
    else:
        emit_table(
            f"{len(rows)} device(s) found in {seconds:.1f} s", rows, ["id", "address", "ports"]
        )
        stderr.print("next: `watchkeeper estate probe` asks each what it is")


@estate_app.command("import")
def import_command(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV asset list; its first row names the columns.")],
    user: UserOption = None,
    organisation: OrganisationOption = None,
    as_json: JsonOption = False,
) -> None:
    """Import an asset list (columns site, ip, and optionally location, port, brand,
    model, installer). One bad row refuses the whole file."""
    with cli_errors():
        try:
            text = file.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {file}: {exc}") from None
        rows = read_assets(text)
        with governed(ctx, user, organisation) as g:
            new, updated = governance.import_assets(
                g.session, g.store.keys, g.organisation, g.actor, rows, file.name
            )
    if as_json:
        emit_json({"rows": len(rows), "new": new, "updated": updated})
    else:
        stderr.print(f"imported {len(rows)} row(s): {new} new device(s), {updated} updated")


@estate_app.command("probe")
def probe_command(
    ctx: typer.Context,
    site: Annotated[str | None, typer.Option(help="Only this site's devices.")] = None,
    device: Annotated[
        str | None, typer.Option(help="Only this device (id from `estate list`).")
    ] = None,
    username: Annotated[
        str | None,
        typer.Option(help="User name for these devices (with --password-stdin); never guessed."),
    ] = None,
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the devices' password from standard input."),
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(
            min=0.1, max=60, help="Seconds each question may take (estate.probe_timeout_s)."
        ),
    ] = None,
    max_body_kib: Annotated[
        int | None,
        typer.Option(
            min=4, max=65536, help="Most KiB read of one answer (estate.probe_max_body_kib)."
        ),
    ] = None,
    firmware_max_age: Annotated[
        int | None,
        typer.Option(
            min=1, help="Days after which firmware counts as old (estate.firmware_max_age_days)."
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, max=256, help="Devices asked at once (estate.probe_concurrency)."),
    ] = None,
    ports: PortsOption = None,
    user: UserOption = None,
    organisation: OrganisationOption = None,
    as_json: JsonOption = False,
) -> None:
    """Ask each device, read-only, what it is; identify its maker; record findings."""
    with cli_errors():
        config = ctx.obj.settings().estate
        timeout = config.probe_timeout_s if timeout is None else timeout
        max_body_kib = config.probe_max_body_kib if max_body_kib is None else max_body_kib
        if firmware_max_age is None:
            firmware_max_age = config.firmware_max_age_days
        concurrency = config.probe_concurrency if concurrency is None else concurrency
        if password_stdin and username is None:
            raise ConfigError("--password-stdin needs --username")
        if username is not None and site is None and device is None:
            raise ConfigError(
                "credentials are given for a site or a device: add --site NAME or --device ID"
            )
        if username is not None and not password_stdin:
            raise ConfigError(
                "give the password for --username on standard input (--password-stdin)"
            )
        credentials = (
            Credentials(username, sys.stdin.readline().rstrip("\n"))
            if username is not None
            else None
        )
        defaults = parse_ports(ports, DEFAULT_PORTS)
        with governed(ctx, user, organisation) as g:
            chosen = access.site(g.session, g.organisation.id, site) if site else None
            targets = [
                (str(d.id), d.address, dict(d.ports or {}), d.label_brand)
                for d in governance.devices_to_probe(
                    g.session, g.store.keys, g.organisation, g.actor, chosen, device
                )
            ]
        limits = Limits(timeout=timeout, max_body=max_body_kib * 1024)
        with progress_bar("probing") as bar:
            task = bar.add_task("probe", total=len(targets))
            results = asyncio.run(
                _probe_all(
                    targets, credentials, limits, defaults, concurrency, lambda: bar.advance(task)
                )
            )
        with governed(ctx, user, organisation) as g:
            pairs = [
                (governance.device(g.session, g.organisation, g.actor, ident), result)
                for ident, result in results
            ]
            probes = governance.record_probes(
                g.session,
                g.store.keys,
                g.organisation,
                g.actor,
                pairs,
                firmware_max_age,
                credentials is not None,
            )
            rows = [
                {
                    "id": str(d.id)[:8],
                    "address": d.address,
                    "answered": p.answered,
                    "maker": d.maker,
                    "confidence": d.maker_confidence,
                    "findings": [f.rule for f in p.findings],
                    "seconds": p.seconds,
                }
                for (d, _), p in zip(pairs, probes, strict=True)
            ]
    if as_json:
        emit_json(rows)
    else:
        emit_table(f"{len(rows)} device(s) probed", rows, list(rows[0]) if rows else ["id"])


async def _probe_all(targets, credentials, limits, defaults, concurrency, advance):
    slots = asyncio.Semaphore(concurrency)

    async def one(ident: str, address: str, ports: dict[str, int], brand: str | None):
        async with slots:
            result = await probe_device(
                address,
                ports,
                credentials,
                limits,
                lambda facts: identify(brand, facts).maker,
                defaults,
            )
            advance()
            return ident, result

    return await asyncio.gather(*(one(*target) for target in targets))


@estate_app.command("list")
def list_command(
    ctx: typer.Context,
    site: Annotated[str | None, typer.Option(help="Only this site.")] = None,
    maker: Annotated[str | None, typer.Option(help="Only this maker.")] = None,
    finding: Annotated[
        str | None, typer.Option(help="Only devices with this finding (rule id).")
    ] = None,
    user: UserOption = None,
    organisation: OrganisationOption = None,
    as_json: JsonOption = False,
) -> None:
    """The register: every device the user may see."""
    with cli_errors(), governed(ctx, user, organisation) as g:
        views = governance.register_view(
            g.session, g.store.keys, g.organisation, g.actor, site, maker, finding
        )
    if as_json:
        emit_json(views)
        return
    rows = [
        {
            "id": v["short_id"],
            "site": v["site"],
            "address": v["address"],
            "label": v["label_brand"],
            "maker": v["maker"],
            "model": v["model"],
            "firmware": v["firmware"],
            "findings": [f["rule"] for f in v["findings"]],
            "last_seen": v["last_seen_at"],
        }
        for v in views
    ]
    emit_table(
        f"{len(rows)} device(s)",
        rows,
        ["id", "site", "address", "label", "maker", "model", "firmware", "findings", "last_seen"],
    )


@estate_app.command("show")
def show_command(
    ctx: typer.Context,
    ident: Annotated[
        str, typer.Argument(metavar="ID", help="Device id (or its first 6 to 8 hex digits).")
    ],
    user: UserOption = None,
    organisation: OrganisationOption = None,
    as_json: JsonOption = False,
) -> None:
    """One device: what it is, who made it and why we think so, findings, probe history."""
    with cli_errors(), governed(ctx, user, organisation) as g:
        view = governance.device_detail(g.session, g.organisation, g.actor, ident)
    if as_json:
        emit_json(view)
        return
    shown = {k: v for k, v in view.items() if k not in ("probes", "findings", "maker_evidence")}
    shown["maker_evidence"] = view["maker_evidence"]
    shown["findings"] = [f"{f['severity']}: {f['rule']}: {f['why']}" for f in view["findings"]]
    shown["probes"] = [
        f"{p['at'][:16]} answered={p['answered']} {p['seconds']} s" for p in view["probes"]
    ]
    emit_fields(f"device {view['short_id']}", shown)


@estate_app.command("sensitive")
def sensitive_command(
    ctx: typer.Context,
    site: Annotated[str, typer.Argument(help="Site name.")],
    off: Annotated[bool, typer.Option("--off", help="Unmark it.")] = False,
    note: Annotated[str | None, typer.Option(help="Why it is sensitive.")] = None,
    user: UserOption = None,
    organisation: OrganisationOption = None,
) -> None:
    """Mark a site sensitive (UK guidance applies in full; its devices are replaced first).
    Findings change at the next probe."""
    with cli_errors(), governed(ctx, user, organisation) as g:
        found = access.site(g.session, g.organisation.id, site)
        governance.mark_sensitive(
            g.session, g.store.keys, g.organisation, g.actor, found, not off, note
        )
    stderr.print(
        f"site {site!r} {'is no longer' if off else 'is now'} marked sensitive; "
        "run `watchkeeper estate probe` to update findings"
    )


@estate_app.command("report")
def report_command(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Folder for estate-report.html, .pdf and .csv.")],
    user: UserOption = None,
    organisation: OrganisationOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write the replacement plan: HTML, PDF and CSV, with counts, charts and sources."""
    with cli_errors(), governed(ctx, user, organisation) as g:
        views = governance.register_view(g.session, g.store.keys, g.organisation, g.actor)
        counts = governance.estate_counts(views)
        try:
            written = write_report(out, g.organisation.name, views, counts)
        except OSError as exc:
            raise ConfigError(f"cannot write the report into {out}: {exc}") from None
        files = [str(p) for p in asdict(written).values()]
        governance.record_report(
            g.session, g.store.keys, g.organisation, g.actor, files, len(views)
        )
    if as_json:
        emit_json({"files": files, **counts})
    else:
        for path in files:
            stderr.print(f"wrote {path}")
