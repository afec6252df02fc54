"""The replacement plan: HTML (Jinja), PDF (WeasyPrint) and CSV from the register.

The plan orders devices to replace: those at sensitive sites first, then those that
offer flagged capabilities (face recognition, demographic or emotion analytics), then
by their most severe finding and the number of findings. Every device in the plan
says why (its findings) and on what evidence; the rules' sources close the report.
Charts (matplotlib, Agg backend) are embedded as PNG data: the HTML is one file.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from watchkeeper.estate.rules import SEVERITY_ORDER, rules

HERE = Path(__file__).parent
CAPABILITY_RULES = {
    "face-recognition-offered",
    "demographic-analytics-offered",
    "emotion-analytics-offered",
}
CSV_COLUMNS = [
    "priority",
    "site",
    "sensitive_site",
    "location",
    "address",
    "label_brand",
    "maker",
    "maker_confidence",
    "model",
    "firmware",
    "mac",
    "findings",
    "why",
    "evidence",
    "last_seen_at",
]


@dataclass(frozen=True)
class Written:
    html: Path
    pdf: Path
    csv: Path


def replacement_order(views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Devices with findings, most urgent first."""

    def urgency(view: dict[str, Any]) -> tuple:
        rules_found = {f["rule"] for f in view["findings"]}
        worst = min((SEVERITY_ORDER.get(f["severity"], 9) for f in view["findings"]), default=9)
        return (
            not view["sensitive_site"],
            not (rules_found & CAPABILITY_RULES),
            worst,
            -len(view["findings"]),
            view["site"],
            view["address"],
        )

    return sorted((v for v in views if v["findings"]), key=urgency)


def evidence_lines(view: dict[str, Any]) -> list[str]:
    """The maker's evidence and each finding's, each line once, in order."""
    lines = list(view["maker_evidence"] or [])
    for finding in view["findings"]:
        lines += finding["evidence"]
    return list(dict.fromkeys(lines))


def _chart(title: str, counts: dict[str, int]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(6, 0.4 * max(len(counts), 2) + 1))
    names = list(counts)[::-1]
    axes.barh(names, [counts[n] for n in names], color="#3b6ea5")
    axes.set_title(title)
    axes.set_xlabel("devices")
    axes.xaxis.get_major_locator().set_params(integer=True)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    pyplot.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def render_html(organisation: str, views: list[dict[str, Any]], counts: dict[str, Any]) -> str:
    environment = Environment(
        loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape()
    )
    table = rules()
    charts = [
        _chart("Devices by maker", counts["by_maker"]),
        _chart("Devices by site", counts["by_site"]),
    ]
    if counts["by_finding"]:
        charts.append(
            _chart(
                "Devices by finding",
                {table[k].title if k in table else k: v for k, v in counts["by_finding"].items()},
            )
        )
    return environment.get_template("estate_report.html").render(
        organisation=organisation,
        made=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        counts=counts,
        plan=replacement_order(views),
        devices=views,
        rules=table,
        charts=charts,
        evidence_lines=evidence_lines,
    )


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """A cell that a spreadsheet will not run as a formula: devices choose their own
    model and firmware strings, so a text starting like a formula gets a leading '."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_csv(path: Path, views: list[dict[str, Any]]) -> None:
    plan = replacement_order(views)
    ranked = {v["id"]: i for i, v in enumerate(plan, start=1)}
    ordered = plan + [v for v in views if v["id"] not in ranked]
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, CSV_COLUMNS)
        writer.writeheader()
        for view in ordered:
            row = {
                **{k: view.get(k) for k in CSV_COLUMNS if k in view},
                "priority": ranked.get(view["id"], ""),
                "findings": " ".join(f["rule"] for f in view["findings"]),
                "why": " | ".join(f["why"] for f in view["findings"]),
                "evidence": " | ".join(view["maker_evidence"] or []),
            }
            writer.writerow({k: spreadsheet_safe(v) for k, v in row.items()})


def write_report(
    out: Path, organisation: str, views: list[dict[str, Any]], counts: dict[str, Any]
) -> Written:
    """Write estate-report.html, .pdf and .csv into ``out`` (made if missing)."""
    from weasyprint import HTML  # heavy import, only when a report is written

    out.mkdir(parents=True, exist_ok=True)
    written = Written(
        out / "estate-report.html", out / "estate-report.pdf", out / "estate-report.csv"
    )
    document = render_html(organisation, views, counts)
    written.html.write_text(document, encoding="utf-8")
    HTML(string=document, base_url=str(out)).write_pdf(written.pdf)
    write_csv(written.csv, views)
    return written
