"""Reading an existing asset list: a CSV file whose header row names its columns.

Columns: ``site`` and ``ip`` (required), ``location``, ``port``, ``brand``, ``model``,
``installer`` (optional; names are matched without regard to case or spaces). Every
row is checked before anything is stored: one bad row refuses the whole file, with
every bad row named, so that an import is all or nothing.
"""

from __future__ import annotations

import csv
import io
import ipaddress
from dataclasses import dataclass

from watchkeeper.errors import ConfigError

REQUIRED = ("site", "ip")
OPTIONAL = ("location", "port", "brand", "model", "installer")
MAX_ROWS = 100_000
PORT_SERVICES = {
    554: "rtsp",
    443: "https",
    23: "telnet",
    8000: "hikvision-sdk",
    37777: "dahua-sdk",
}
"""The service a port in the list is taken for; any other port is the web interface."""


@dataclass(frozen=True)
class AssetRow:
    line: int
    site: str
    address: str
    ports: dict[str, int]
    location: str | None
    brand: str | None
    model: str | None
    installer: str | None


def _column(name: str) -> str:
    return name.strip().lower().replace(" ", "_")


def read_assets(text: str) -> list[AssetRow]:
    """Every row of the asset list, or :class:`ConfigError` naming every bad row."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    if not reader.fieldnames:
        raise ConfigError("the asset list is empty; its first row must name the columns")
    columns = {_column(name): name for name in reader.fieldnames if name}
    missing = [name for name in REQUIRED if name not in columns]
    unknown = sorted(set(columns) - set(REQUIRED) - set(OPTIONAL))
    if missing or unknown:
        parts = [f"missing column(s) {', '.join(missing)}"] if missing else []
        parts += [f"unknown column(s) {', '.join(unknown)}"] if unknown else []
        raise ConfigError(
            f"asset list header: {'; '.join(parts)} (columns: site, ip, {', '.join(OPTIONAL)})"
        )
    rows: list[AssetRow] = []
    errors: list[str] = []
    seen: dict[tuple[str, str], int] = {}
    for line, raw in enumerate(reader, start=2):
        if line > MAX_ROWS + 1:
            raise ConfigError(f"the asset list has more than {MAX_ROWS} rows")
        if None in raw:
            errors.append(f"line {line}: more fields than columns")
            continue
        values = {_column(k): (v or "").strip() for k, v in raw.items() if k}
        if not any(values.values()):
            continue
        problems = []
        if not values["site"]:
            problems.append("no site")
        address = values["ip"]
        try:
            address = str(ipaddress.ip_address(address))
        except ValueError:
            problems.append(f"ip {values['ip']!r} is not an IP address")
        ports: dict[str, int] = {}
        if values.get("port"):
            if not values["port"].isdigit() or not 1 <= int(values["port"]) <= 65535:
                problems.append(f"port {values['port']!r} is not 1 to 65535")
            else:
                port = int(values["port"])
                ports[PORT_SERVICES.get(port, "http")] = port
        key = (values["site"], address)
        if not problems and key in seen:
            problems.append(f"same site and ip as line {seen[key]}")
        if problems:
            errors.append(f"line {line}: {', '.join(problems)}")
            continue
        seen[key] = line
        rows.append(
            AssetRow(
                line=line,
                site=values["site"],
                address=address,
                ports=ports,
                location=values.get("location") or None,
                brand=values.get("brand") or None,
                model=values.get("model") or None,
                installer=values.get("installer") or None,
            )
        )
    if errors:
        shown = "; ".join(errors[:10]) + (
            f"; and {len(errors) - 10} more" if len(errors) > 10 else ""
        )
        raise ConfigError(f"asset list refused, nothing imported: {shown}")
    if not rows:
        raise ConfigError("the asset list has a header but no rows")
    return rows
