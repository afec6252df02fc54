"""The replacement plan's order, and device-chosen text kept inert in HTML and CSV."""

from __future__ import annotations

import csv
from pathlib import Path

from watchkeeper.estate.report import render_html, replacement_order, write_csv
from watchkeeper.governance.estate import estate_counts


def view(ident: str, site: str, sensitive: bool, *findings: tuple[str, str], **extra) -> dict:
    return {
        "id": ident,
        "site": site,
        "sensitive_site": sensitive,
        "address": f"10.0.0.{ident}",
        "location": None,
        "label_brand": None,
        "label_model": None,
        "maker": "Hikvision",
        "maker_confidence": "high",
        "maker_evidence": ["MAC registered to Hikvision"],
        "model": None,
        "firmware": None,
        "mac": None,
        "last_seen_at": None,
        "findings": [
            {"rule": rule, "severity": severity, "why": rule, "evidence": []}
            for rule, severity in findings
        ],
    } | extra


VIEWS = [
    view("1", "Leeds", False, ("plain-http", "medium")),
    view("2", "Leeds", False, ("telnet-open", "high"), ("plain-http", "medium")),
    view("3", "Leeds", False, ("face-recognition-offered", "medium")),
    view("4", "Depot", True, ("firmware-old", "medium")),
    view("5", "Leeds", False, ("fcc-covered-list", "high")),
    view("6", "Leeds", False),
]


def test_sensitive_sites_then_flagged_capabilities_then_severity() -> None:
    assert [v["id"] for v in replacement_order(VIEWS)] == ["4", "3", "2", "5", "1"]


def test_device_text_cannot_run_as_a_formula_or_script(tmp_path: Path) -> None:
    hostile = view(
        "7",
        "Leeds",
        False,
        ("plain-http", "medium"),
        model='=HYPERLINK("http://x")',
        firmware="<script>alert(1)</script>",
    )
    views = [*VIEWS, hostile]
    write_csv(tmp_path / "plan.csv", views)
    with (tmp_path / "plan.csv").open() as file:
        rows = {row["address"]: row for row in csv.DictReader(file)}
    assert rows["10.0.0.7"]["model"] == '\'=HYPERLINK("http://x")'
    assert rows["10.0.0.6"]["priority"] == ""  # no finding: listed, not planned
    html = render_html("Corner <Shops>", views, estate_counts(views))
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Corner &lt;Shops&gt;" in html
