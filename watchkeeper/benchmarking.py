"""Measurements behind `watchkeeper bench`: the streaming engine on real sources, the
embedder's throughput, exact gallery search, and the plain face_recognition baseline.

Every function returns plain figures (seconds, counts) for the command to print;
nothing here asserts a speed. No face data is kept: the engine runs against a
gallery of random unit vectors (no face ever matches one), and embedding
throughput is measured on random chips (the network's cost does not depend on
what the pixels show).
"""

from __future__ import annotations

import logging
import resource
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np

from watchkeeper.config import Settings
from watchkeeper.errors import SourceError, WatchkeeperError
from watchkeeper.matching.gallery import Gallery
from watchkeeper.pipeline import CameraPipeline, FaceModels, Matcher
from watchkeeper.streaming.engine import RecognitionEngine
from watchkeeper.streaming.processes import CameraReport, ProcessEngine
from watchkeeper.streaming.timing import StageTimings
from watchkeeper.video.sources import open_source
from watchkeeper.vision.embedding import Embeddings, FaceEmbedder

log = logging.getLogger(__name__)

BENCH_GALLERY_SIZE = 1000
"""Templates in the synthetic gallery the engine searches during a run."""


def random_gallery(model_id: str, size: int, dim: int, seed: int = 0) -> Gallery:
    """``size`` random unit vectors, one per made-up subject: a gallery with the cost of
    a real one that no face can match."""
    vectors = np.random.default_rng(seed).standard_normal((size, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return Gallery(model_id, vectors, [f"s{index:07d}" for index in range(size)])


@dataclass
class ResourceMeter:
    """Wall time, CPU time of this process (all threads) and its peak memory."""

    wall_start: float = field(default_factory=time.perf_counter)
    cpu_start: float = field(default_factory=lambda: _cpu_seconds())

    def read(self) -> dict[str, float]:
        wall = time.perf_counter() - self.wall_start
        cpu = _cpu_seconds() - self.cpu_start
        return {
            "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
            "cores_busy": round(cpu / wall, 2) if wall > 0 else 0.0,
            "peak_rss_mib": round(peak_rss_mib(), 1),
        }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_streams(
    sources: list[str],
    cameras: int,
    duration_s: float | None,
    settings: Settings,
    models: FaceModels,
) -> dict[str, Any]:
    """Every source opened ``cameras`` times, all in one engine (in this process, or
    shared among ``settings.streaming.processes`` worker processes), until the files
    end or ``duration_s`` passes (live sources). Per-camera and total figures.

    Rates count from each camera's first frame; with worker processes, CPU time and
    peak memory add up this process's and every worker's."""
    embedder = models.embedder
    gallery = random_gallery(embedder.model_id, BENCH_GALLERY_SIZE, embedder.dim)
    names = [
        (source, source if cameras == 1 else f"{source}#{copy + 1}")
        for source in sources
        for copy in range(cameras)
    ]

    def pipeline() -> CameraPipeline:
        return CameraPipeline(embedder.model_id, Matcher(gallery, 1.0), settings.tracking)

    if settings.streaming.processes != 1:  # the service's layout (0) or a pool of them
        engine = ProcessEngine(settings)
        for source, name in names:
            engine.add_camera(name, source, pipeline())
        engine.start()
        meter = ResourceMeter()
        _run_for(engine, duration_s, meter)
        used = meter.read()
        used["cpu_s"] += sum(worker.cpu_s for worker in engine.usage)
        used["peak_rss_mib"] += sum(worker.peak_rss_mib for worker in engine.usage)
        order = {name: index for index, (_, name) in enumerate(names)}
        reports = sorted(engine.reports, key=lambda report: order[report.name])  # as given
        unopened = [r for r in reports if r.error is not None and r.first_frame is None]
        if unopened:  # as in one process: a source that cannot be opened fails the bench
            raise SourceError(f"{unopened[0].name}: {unopened[0].error}")
        return _stream_figures(reports, engine.timings, used, engine.processes, engine.workers)
    timings = StageTimings()
    local = RecognitionEngine.with_models(settings, models, timings)
    for source, name in names:
        local.add_camera(name, open_source(source, settings.video), pipeline())
    local.start()
    meter = ResourceMeter()
    _run_for(local, duration_s, meter)
    reports = [
        CameraReport(
            camera.name,
            camera.pipeline.stats,
            camera.source.decoded,
            camera.queue.dropped,
            camera.analysed_fps,
            camera.first_frame,
            camera.ended,
            str(camera.error) if camera.error else None,
        )
        for camera in local.cameras
    ]
    return _stream_figures(reports, timings, meter.read(), 1, local.workers)


def _run_for(
    engine: RecognitionEngine | ProcessEngine, duration_s: float | None, meter: ResourceMeter
) -> None:
    for _ in engine.events():
        if duration_s is not None and time.perf_counter() - meter.wall_start >= duration_s:
            engine.stop()


def _stream_figures(
    reports: list[CameraReport],
    timings: StageTimings,
    used: dict[str, float],
    processes: int,
    workers: int,
) -> dict[str, Any]:
    rows = [
        {
            "camera": report.name,
            "frames": report.stats.frames,
            "decoded": report.decoded,
            "dropped": report.dropped,
            "faces": report.stats.faces,
            "usable_faces": report.stats.usable_faces,
            "tracks": report.stats.tracks,
            "embedded": report.stats.embeddings,
            "fps": round(report.analysed_fps, 2),
            "error": report.error,
        }
        for report in reports
    ]
    starts = [r.first_frame for r in reports if r.first_frame is not None]
    ends = [r.ended for r in reports if r.ended is not None]
    span = max(ends) - min(starts) if starts and ends else used["wall_s"]
    summary = timings.summary()
    frames = sum(row["frames"] for row in rows)
    embedded = sum(row["embedded"] for row in rows)
    latency = summary.get("frame_to_decision")
    used["cores_busy"] = round(used["cpu_s"] / used["wall_s"], 2) if used["wall_s"] else 0.0
    return {
        "cameras": rows,
        "processes": processes,
        "workers": workers,
        "frames": frames,
        "faces": sum(row["faces"] for row in rows),
        "embedded": embedded,
        "fps_total": round(frames / span, 2) if span > 0 else 0.0,
        "fps_per_camera_min": min(row["fps"] for row in rows),
        "faces_embedded_per_s": round(embedded / span, 2) if span > 0 else 0.0,
        "frame_to_decision_p50_ms": round(latency.p50_s * 1e3, 1) if latency else None,
        "frame_to_decision_p95_ms": round(latency.p95_s * 1e3, 1) if latency else None,
        "stages": {stage: s.as_dict() for stage, s in summary.items()},
        **used,
    }


def embedding_throughput(
    embedder: FaceEmbedder, batch_sizes: list[int], seconds: float, seed: int = 0
) -> list[dict[str, Any]]:
    """Faces embedded per second at each batch size (with the model's flip averaging,
    as in production: two network passes per face), on random chips, for about
    ``seconds`` per size."""
    rng = np.random.default_rng(seed)
    size = embedder.layout.size
    rows = []
    for batch in batch_sizes:
        chips = list(rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8))
        embedder.embed(chips)  # warm-up: allocations, kernel selection
        faces, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            embedder.embed(chips)
            faces += batch
        elapsed = time.perf_counter() - started
        passes = 2 if embedder.spec.flip_average else 1
        rows.append(
            {
                "batch": batch,
                "faces_per_s": round(faces / elapsed, 1),
                "network_passes_per_s": round(passes * faces / elapsed, 1),
                "ms_per_face": round(elapsed / faces * 1e3, 3),
            }
        )
    return rows


def gallery_search(
    sizes: list[int], dim: int, probes: int = 3, repeats: int = 20, seed: int = 0
) -> list[dict[str, Any]]:
    """Time of one exact open-set decision (a track of ``probes`` shots against every
    template) for galleries of each size."""
    rows = []
    rng = np.random.default_rng(seed + 1)
    for size in sizes:
        gallery = random_gallery("bench@1", size, dim, seed)
        shots = rng.standard_normal((probes, dim), dtype=np.float32)
        shots /= np.linalg.norm(shots, axis=1, keepdims=True)
        probe = Embeddings("bench@1", shots)
        weights = np.ones(probes)
        gallery.decide(probe, weights, 0.9, 5)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            gallery.decide(probe, weights, 0.9, 5)
            times.append(time.perf_counter() - started)
        rows.append(
            {
                "templates": size,
                "p50_ms": round(float(np.percentile(times, 50)) * 1e3, 3),
                "p95_ms": round(float(np.percentile(times, 95)) * 1e3, 3),
                "matrix_mib": round(gallery.matrix.nbytes / 2**20, 1),
            }
        )
        del gallery
    return rows


def face_recognition_baseline(path: str, limit: int | None = None) -> dict[str, Any]:
    """The plain face_recognition-library approach on every frame of a file: HOG
    detection with one upsampling step, then dlib's ResNet on every face found (5-point
    landmarks), as that library's README does it. Single-threaded, as the library is."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # face_recognition_models imports pkg_resources
            import face_recognition
    except ImportError as exc:
        raise WatchkeeperError(
            "the baseline needs the face_recognition package (a development dependency: "
            "`uv sync`), or run with --no-baseline"
        ) from exc
    stages = {"decode": 0.0, "detect": 0.0, "embed": 0.0}
    frames = faces = 0
    meter = ResourceMeter()
    with av.open(path) as container:
        decoded = container.decode(video=0)
        while limit is None or frames < limit:
            mark = time.perf_counter()
            frame = next(decoded, None)
            if frame is None:
                break
            rgb = frame.to_ndarray(format="rgb24")
            stages["decode"] += time.perf_counter() - mark
            mark = time.perf_counter()
            locations = face_recognition.face_locations(rgb, number_of_times_to_upsample=1)
            stages["detect"] += time.perf_counter() - mark
            mark = time.perf_counter()
            face_recognition.face_encodings(rgb, locations, model="small")
            stages["embed"] += time.perf_counter() - mark
            frames += 1
            faces += len(locations)
    used = meter.read()
    return {
        "frames": frames,
        "faces": faces,
        "fps": round(frames / used["wall_s"], 3),
        "stage_seconds": {stage: round(value, 3) for stage, value in stages.items()},
        **used,
    }
