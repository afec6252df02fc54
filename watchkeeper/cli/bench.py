"""`watchkeeper bench`: how fast this machine runs Watchkeeper, in figures."""

from __future__ import annotations

import json
import os
import platform
import sys
from typing import Annotated, Any

import numpy as np
import onnxruntime
import typer
from rich.console import Console
from rich.table import Table

from watchkeeper.benchmarking import (
    embedding_throughput,
    face_recognition_baseline,
    gallery_search,
    run_streams,
)
from watchkeeper.cli.app import app, fail, stderr
from watchkeeper.errors import WatchkeeperError
from watchkeeper.pipeline import FaceModels
from watchkeeper.video.sources import SourceKind, SourceSpec


def _sizes(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"not a comma-separated list of whole numbers: {text}") from None
    if not values or min(values) < 1:
        raise typer.BadParameter("give one or more sizes of at least 1")
    return values


@app.command()
def bench(
    ctx: typer.Context,
    sources: Annotated[
        list[str] | None,
        typer.Argument(help="Video files or stream URLs, each run as one camera or more."),
    ] = None,
    cameras: Annotated[int, typer.Option(min=1, help="Cameras per SOURCE (copies).")] = 1,
    duration: Annotated[
        float | None,
        typer.Option(help="Seconds to run live streams for (files run to their end)."),
    ] = None,
    fps: Annotated[
        float, typer.Option(help="Frames analysed per second per camera; 0 for every frame.")
    ] = 0.0,
    detection_width: Annotated[
        int | None, typer.Option(help="Detect on frames downscaled to this width (pixels).")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="Analysis threads per process (default: its share of the cores)."),
    ] = None,
    processes: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Worker processes sharing the cameras (streaming.processes); default 0: one "
            "per camera, each with its share of the cores, as `serve` runs them; 1: all in "
            "this process, as `scan` runs one source.",
        ),
    ] = None,
    baseline: Annotated[
        bool,
        typer.Option(
            help="Also run the plain face_recognition approach on every frame of the first "
            "file SOURCE, and give the ratio."
        ),
    ] = True,
    baseline_frames: Annotated[
        int | None, typer.Option(help="Stop the baseline after this many frames.")
    ] = None,
    batch_sizes: Annotated[
        str, typer.Option(help="Embedding batch sizes to measure, comma-separated.")
    ] = "1,8,32,64",
    embed_seconds: Annotated[
        float, typer.Option(min=0, help="Seconds per embedding batch size (0: skip).")
    ] = 3.0,
    gallery_sizes: Annotated[
        str, typer.Option(help="Gallery sizes (templates) to time exact search at.")
    ] = "1000,100000,1000000",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Measure the engine on SOURCEs (per-stage p50/p95, fps, faces/s, frame-to-decision
    latency, CPU and memory), the embedder's throughput, gallery search time and, on a
    file, the face_recognition baseline. Prints figures; keeps nothing."""
    overrides: dict[str, Any] = {"video": {"analysis_fps": fps}}
    if detection_width is not None:
        overrides["detection"] = {"max_width": detection_width}
    streaming = {"workers": workers, "processes": processes}
    if any(value is not None for value in streaming.values()):
        overrides["streaming"] = {k: v for k, v in streaming.items() if v is not None}
    sources = sources or []
    try:
        settings = ctx.obj.settings(**overrides)
        models = FaceModels.load(settings)
        detector, embedder = models.detector, models.embedder
        specs = [SourceSpec.parse(source) for source in sources]
        report: dict[str, Any] = {
            "machine": _machine(),
            "detector": detector.name,
            "detection_width": detector.width,
            "embedder": embedder.model_id,
            "runtime": embedder.runtime,
            "analysis_fps": fps,
        }
        if sources:
            with stderr.status(f"running {len(sources) * cameras} camera(s)", spinner="dots"):
                report["streams"] = run_streams(sources, cameras, duration, settings, models)
        if embed_seconds > 0:
            with stderr.status("timing the embedder", spinner="dots"):
                report["embedding"] = embedding_throughput(
                    embedder, _sizes(batch_sizes), embed_seconds
                )
        with stderr.status("timing gallery search", spinner="dots"):
            report["gallery_search"] = gallery_search(_sizes(gallery_sizes), embedder.dim)
        files = [spec.location for spec in specs if spec.kind is SourceKind.FILE]
        if baseline and files:
            with stderr.status(f"running the face_recognition baseline on {files[0]}"):
                result = face_recognition_baseline(files[0], baseline_frames)
            report["baseline"] = {"source": files[0], **result}
            streams = report.get("streams")
            if streams and cameras == 1 and len(sources) == 1 and fps == 0:
                report["speedup"] = round(streams["fps_total"] / result["fps"], 2)
    except WatchkeeperError as exc:
        raise fail(exc) from None
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        _print(report)


def _machine() -> dict[str, Any]:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": onnxruntime.__version__,
        "providers": onnxruntime.get_available_providers(),
    }


def _print(report: dict[str, Any]) -> None:
    console = Console()
    machine = report["machine"]
    console.print(
        f"{machine['cores']} cores, onnxruntime {machine['onnxruntime']}; detector "
        f"{report['detector']} at {report['detection_width']} px; embedder {report['embedder']} "
        f"on {report['runtime']}"
    )
    streams = report.get("streams")
    if streams:
        table = Table(title="Cameras")
        for column in ("camera", "fps", "frames", "dropped", "faces", "tracks", "embedded"):
            table.add_column(column, justify="left" if column == "camera" else "right")
        for row in streams["cameras"]:
            table.add_row(
                row["camera"] + (f" (error: {row['error']})" if row["error"] else ""),
                f"{row['fps']:.1f}",
                *(str(row[key]) for key in ("frames", "dropped", "faces", "tracks", "embedded")),
            )
        console.print(table)
        stages = Table(title="Stages (ms)")
        for column in ("stage", "count", "p50", "p95", "max"):
            stages.add_column(column, justify="left" if column == "stage" else "right")
        for stage, figures in streams["stages"].items():
            stages.add_row(
                stage,
                str(figures["count"]),
                f"{figures['p50_ms']:.1f}",
                f"{figures['p95_ms']:.1f}",
                f"{figures['max_ms']:.1f}",
            )
        console.print(stages)
        console.print(
            f"total {streams['fps_total']:.1f} fps over {len(streams['cameras'])} camera(s) "
            f"(slowest {streams['fps_per_camera_min']:.1f}); "
            f"{streams['faces_embedded_per_s']:.1f} faces embedded/s; frame-to-decision "
            f"p50 {streams['frame_to_decision_p50_ms']} ms, "
            f"p95 {streams['frame_to_decision_p95_ms']} ms; "
            f"{streams['cores_busy']:.2f} cores busy; peak memory {streams['peak_rss_mib']} MiB"
        )
    for row in report.get("embedding", []):
        console.print(
            f"embedding batch {row['batch']:>4}: {row['faces_per_s']:.1f} faces/s "
            f"({row['network_passes_per_s']:.1f} network passes/s, "
            f"{row['ms_per_face']:.3f} ms/face)"
        )
    for row in report["gallery_search"]:
        console.print(
            f"gallery search {row['templates']:>9,} templates: p50 {row['p50_ms']:.3f} ms, "
            f"p95 {row['p95_ms']:.3f} ms ({row['matrix_mib']} MiB)"
        )
    if "baseline" in report:
        base = report["baseline"]
        console.print(
            f"face_recognition baseline: {base['fps']:.2f} fps, {base['faces']} faces in "
            f"{base['frames']} frames"
            + (f"; Watchkeeper is {report['speedup']:.1f}x faster" if "speedup" in report else "")
        )
