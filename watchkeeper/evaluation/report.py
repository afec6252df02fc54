"""The evaluation report: Markdown tables, matplotlib plots and the JSON results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from watchkeeper.evaluation.metrics import RATE_KEYS, Curve
from watchkeeper.evaluation.runner import Curves


def _pyplot() -> Any:
    """matplotlib, imported only when a report is drawn: importing it writes a font
    cache, which commands such as `scan` must not do."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _percent(value: float) -> str:
    return f"{100 * value:.2f}%"


def _log_axis_floor(*curves: Curve) -> float:
    positives = [c.false_rate[c.false_rate > 0].min() for c in curves if (c.false_rate > 0).any()]
    return max(1e-6, min(positives, default=1e-4) / 2)


def _finite(curve: Curve) -> Curve:
    """Without the point at threshold -inf, where images without a face are 'accepted'."""
    keep = np.isfinite(curve.thresholds)
    return Curve(curve.thresholds[keep], curve.false_rate[keep], curve.true_rate[keep])


def plot_roc(curve: Curve, path: Path) -> None:
    plt = _pyplot()
    curve = _finite(curve)
    figure, (roc, det) = plt.subplots(1, 2, figsize=(11, 4.5))
    floor = _log_axis_floor(curve)
    far = np.maximum(curve.false_rate, floor)
    roc.plot(far, curve.true_rate)
    roc.set(
        xscale="log",
        xlabel="false accept rate (FAR)",
        ylabel="true accept rate (TAR)",
        title="ROC, all image pairs",
    )
    det.plot(far, np.maximum(1 - curve.true_rate, floor))
    det.set(
        xscale="log",
        yscale="log",
        xlabel="false match rate (FMR)",
        ylabel="false non-match rate (FNMR)",
        title="DET, all image pairs",
    )
    for axis in (roc, det):
        axis.grid(True, which="both", alpha=0.3)
        for rate in RATE_KEYS.values():
            axis.axvline(rate, color="grey", linewidth=0.6, linestyle=":")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_identification(curves: dict[str, Curve], path: Path) -> None:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 5))
    floor = _log_axis_floor(*curves.values())
    for label, curve in curves.items():
        curve = _finite(curve)
        axis.plot(np.maximum(curve.false_rate, floor), 1 - curve.true_rate, label=label)
    axis.set(
        xscale="log",
        xlabel="FPIR (strangers who raise an alert)",
        ylabel="FNIR (enrolled people missed)",
        title="Open-set identification",
        ylim=(0, 1),
    )
    for rate in RATE_KEYS.values():
        axis.axvline(rate, color="grey", linewidth=0.6, linestyle=":")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


FOOTFALLS = (500, 2_000, 10_000)
"""People passing a camera per day, for the false-alert table."""


def shop_terms(rows: list[dict[str, Any]]) -> list[str]:
    """What the 1-photo rows mean for a shop: false alerts per day and misses."""
    lines = [
        "### In a shop",
        "",
        "Each person who walks past a camera is one search. At the threshold for a "
        "given FPIR, a day with F visitors who are on no watchlist brings about F x FPIR "
        "false alerts (each one a candidate for two reviewers, never an action), and the "
        "share of watchlist subjects who pass unflagged is the FNIR.",
        "",
        "| watchlist | FPIR | "
        + " | ".join(f"false alerts/day at {f:,} visitors" for f in FOOTFALLS)
        + " | subjects missed |",
        "| --- | --- | " + " | ".join("---" for _ in FOOTFALLS) + " | --- |",
    ]
    for row in rows:
        if row["gallery_photos"] != 1:
            continue
        for key in ("1e-2", "1e-3"):
            rate = RATE_KEYS[key]
            alerts = " | ".join(f"{f * rate:g}" for f in FOOTFALLS)
            lines.append(
                f"| {row['watchlist_size']} | {key} | {alerts} | "
                f"{_percent(row['fnir_at_fpir'][key])} |"
            )
    lines.append("")
    return lines


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# Accuracy of {result['model']} on {result['dataset']}",
        "",
        f"Measured {result['date']} with Watchkeeper's own pipeline: detector "
        f"`{result['detector']}`, flip averaging {'on' if result['flip'] else 'off'}, "
        f"quality gate {'on' if result['quality_gate'] else 'off (every detected face used)'}, "
        f"{result['images']} images of {result['identities']} people"
        + (
            f" after {result['corrections']['images_changed']} label corrections from "
            f"`{result['corrections']['file']}`."
            if result["corrections"]["file"]
            else "."
        ),
        "",
        "## Failure to acquire",
        "",
    ]
    fta = result["failure_to_acquire"]
    lines.append(
        f"{fta['failed']} of {fta['images']} images ({_percent(fta['rate'])}) had no usable "
        "face. They count as misses for enrolled people and as correct rejections for "
        "strangers; none is left out."
    )
    lines += ["", "| reason | images |", "| --- | --- |"]
    lines += [f"| {reason} | {count} |" for reason, count in fta["reasons"].items()] or [
        "| (none) | 0 |"
    ]
    v = result["verification"]
    lines += [
        "",
        "## 1:1 verification",
        "",
        f"{v['genuine_pairs']:,} same-person pairs and {v['impostor_pairs']:,} different-person "
        f"pairs{' (a random sample)' if v['impostor_pairs_sampled'] else ''}.",
        "",
        "| FAR | TAR | threshold |",
        "| --- | --- | --- |",
    ]
    lines += [
        f"| {key} | {_percent(v['tar_at_far'][key])} | {v['threshold_at_far'][key]:.4f} |"
        for key in RATE_KEYS
    ]
    lines += ["", f"Equal error rate {_percent(v['eer'])} at {v['eer_threshold']:.4f}."]
    if "accuracy" in v:
        lines += [
            "",
            f"Pairs file ({v['pairs']} pairs"
            + (
                f", {v['pairs_left_out']} left out as they name an image the corrections leave out"
                if v["pairs_left_out"]
                else ""
            )
            + f"; {v['pairs_with_failed_image']} with an image "
            f"that failed to acquire): accuracy {_percent(v['accuracy'])} ± "
            f"{_percent(v['accuracy_std'])} under 10-fold cross-validation of the threshold "
            f"(best single threshold: {_percent(v['best_threshold_accuracy'])} at "
            f"{v['best_threshold']:.4f}).",
        ]
    lines += ["", "![ROC and DET](roc.png)", ""]
    ident = result["identification"]
    lines += [
        "## 1:N open-set identification (watchlists)",
        "",
        f"{ident['enrolled_identities']} people with two or more usable images are enrolled "
        f"(a watchlist of size k takes the first k in a seeded order, seed {ident['seed']}); "
        f"{ident['never_enrolled_identities']} other people are never enrolled. Every image "
        "not used for enrolment is searched. FNIR: enrolled people missed (not ranked first "
        "at or above the threshold); FPIR: searches by strangers that raise an alert. 95% "
        "intervals come from resampling people.",
        "",
        "| watchlist | photos | FNIR @ FPIR 1e-2 | FNIR @ 1e-3 | FNIR @ 1e-4 | "
        "thresholds (1e-2 / 1e-3 / 1e-4) | rank-1 | searches (enrolled / strangers) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in ident["by_watchlist"]:
        cells = [
            f"{_percent(row['fnir_at_fpir'][k])} "
            f"({_percent(row['fnir_at_fpir_ci95'][k][0])}-{_percent(row['fnir_at_fpir_ci95'][k][1])})"
            for k in RATE_KEYS
        ]
        thresholds = " / ".join(f"{row['threshold_at_fpir'][k]:.4f}" for k in RATE_KEYS)
        lines.append(
            f"| {row['watchlist_size']} | {row['gallery_photos']} | {' | '.join(cells)} | "
            f"{thresholds} | {_percent(row['rank1'])} | {row['mated_searches']} / "
            f"{row['nonmated_searches']} |"
        )
    lines += [
        "",
        "FPIR 1e-4 needs at least 10,000 strangers' searches to be measured; with fewer, "
        "the threshold is simply above every stranger's score.",
        "",
        "![Open-set identification](identification.png)",
        "",
        *shop_terms(ident["by_watchlist"]),
    ]
    if result.get("ablation"):
        lines += [
            "## What moves the numbers",
            "",
            "One change at a time, on the same people and photos. The track-like rows "
            "search with several images of one person at once, fused by quality as the "
            "engine fuses a track's best shots; their strangers are people who have "
            "several images.",
            "",
            "| step | protocol | FNIR @ FPIR 1e-2 | FNIR @ 1e-3 (95% interval) | rank-1 |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {step['step']} | {step['protocol']} | {_percent(step['fnir_at_fpir']['1e-2'])} | "
            f"{_percent(step['fnir_at_fpir']['1e-3'])} "
            f"({_percent(step['fnir_at_fpir_ci95']['1e-3'][0])}-"
            f"{_percent(step['fnir_at_fpir_ci95']['1e-3'][1])}) | {_percent(step['rank1'])} |"
            for step in result["ablation"]
        ]
        lines.append("")
    timing = result["timing"]
    lines += [
        "## Run",
        "",
        f"{timing['seconds']:.1f} s, {timing['cached_images']} of {result['images']} images "
        "from the embedding cache.",
        "",
    ]
    return "\n".join(lines)


def write_report(result: dict[str, Any], curves: Curves, folder: Path) -> Path:
    """Write report.md, results.json and the plots into ``folder``; return report.md."""
    folder.mkdir(parents=True, exist_ok=True)
    if curves.roc is not None:
        plot_roc(curves.roc, folder / "roc.png")
    plot_identification(curves.identification, folder / "identification.png")
    (folder / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    report = folder / "report.md"
    report.write_text(markdown(result))
    return report
