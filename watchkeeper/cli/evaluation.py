"""`watchkeeper eval` and `watchkeeper calibrate`: measured accuracy on labelled data,
photos (a dataset folder) or a shop's own clips (a video manifest)."""

from __future__ import annotations

import datetime
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from watchkeeper.cli.app import app, fail, stderr
from watchkeeper.cli.scan import enrol_folder, progress_display, summary_record
from watchkeeper.config import Settings
from watchkeeper.errors import ConfigError, WatchkeeperError
from watchkeeper.evaluation.dataset import scan_dataset
from watchkeeper.evaluation.embeddings import DatasetEmbeddings, EmbeddingCache, embed_dataset
from watchkeeper.evaluation.metrics import RATE_KEYS
from watchkeeper.evaluation.pairs import read_pairs
from watchkeeper.evaluation.report import write_report
from watchkeeper.evaluation.runner import (
    Curves,
    IdentificationSettings,
    ablation,
    calibrate_size,
    failure_summary,
    identification,
    verification,
)
from watchkeeper.evaluation.video import ClipGallery, clip_result, load_manifest, totals
from watchkeeper.models.registry import Calibration, ModelRegistry, save_calibration
from watchkeeper.pipeline import FaceModels, MatchEvent, model_name
from watchkeeper.service.live_camera import run_source
from watchkeeper.streaming.engine import CameraEvent
from watchkeeper.video.sources import open_source
from watchkeeper.vision.detection import detector_backend

CACHE_FILE = "eval-embeddings.sqlite3"

DatasetArgument = Annotated[
    Path, typer.Argument(help="Folder with one sub-folder of images per identity.")
]
ModelOption = Annotated[
    str | None, typer.Option("--model", help="Identity embedder (registry name).")
]
NeverEnrolledOption = Annotated[
    str,
    typer.Option(help="People never enrolled, searched as strangers: a number or 'all'."),
]
SeedOption = Annotated[int, typer.Option(help="Seed of the enrolled/never-enrolled split.")]
WorkersOption = Annotated[
    int | None, typer.Option(help="Processes embedding images (default: one per core).")
]
NoCacheOption = Annotated[
    bool, typer.Option("--no-cache", help="Neither read nor write the embedding cache.")
]
CorrectionsOption = Annotated[
    Path | None,
    typer.Option(help="Label corrections for the dataset (see docs/lfw-dev-corrections.txt)."),
]


def _never_enrolled(value: str) -> int | None:
    if value == "all":
        return None
    if not value.isdigit():
        raise ConfigError(f"--never-enrolled takes a number or 'all', not {value!r}")
    return int(value)


def _embed(
    settings: Settings,
    dataset_path: Path,
    corrections: Path | None,
    use_cache: bool,
    workers: int | None,
    label: str,
) -> DatasetEmbeddings:
    dataset = scan_dataset(dataset_path, corrections)
    cache = EmbeddingCache(settings.cache_dir / CACHE_FILE) if use_cache else None
    try:
        with Progress(
            *Progress.get_default_columns()[:-1],
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=stderr,
            transient=True,
        ) as progress:
            task = progress.add_task(label, total=len(dataset.images))
            return embed_dataset(
                dataset,
                settings,
                cache,
                workers,
                lambda done, total: progress.update(task, completed=done, total=total),
            )
    finally:
        if cache is not None:
            cache.close()


PHOTOS = "Photo dataset (DATASET folder)"
VIDEOS = "Video manifest (MANIFEST.toml)"
PHOTO_OPTIONS = (
    "pairs",
    "out",
    "never_enrolled",
    "seed",
    "ablation_steps",
    "corrections",
    "ignore_quality_gate",
    "workers",
    "no_cache",
)
VIDEO_OPTIONS = ("threshold", "strict")


def _set(ctx: typer.Context, name: str) -> bool:
    """Whether the user set option ``name`` (on the command line or by environment)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def _given(ctx: typer.Context, names: tuple[str, ...]) -> list[str]:
    """The options among ``names`` that the user set, as they are spelt."""
    return [p.opts[0] for p in ctx.command.params if p.name in names and _set(ctx, p.name)]


@app.command("eval")
def evaluate(
    ctx: typer.Context,
    dataset: Annotated[
        Path,
        typer.Argument(
            metavar="DATASET_OR_MANIFEST",
            help="A folder with one sub-folder of images per identity (photo protocol), or "
            "a TOML manifest of video clips, the people expected in each and an enrolment "
            "folder (video protocol: each clip runs through the live pipeline).",
            show_default=False,
        ),
    ],
    pairs: Annotated[
        Path | None,
        typer.Option(help="Verification pairs file in the LFW format.", rich_help_panel=PHOTOS),
    ] = None,
    model: ModelOption = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Write report.md, plots and results.json here.", rich_help_panel=PHOTOS),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    never_enrolled: Annotated[
        str,
        typer.Option(
            help="People never enrolled, searched as strangers: a number or 'all'.",
            rich_help_panel=PHOTOS,
        ),
    ] = "1000",
    seed: Annotated[
        int,
        typer.Option(help="Seed of the enrolled/never-enrolled split.", rich_help_panel=PHOTOS),
    ] = 0,
    ablation_steps: Annotated[
        bool,
        typer.Option(
            "--ablation",
            help="Also run dlib's own recipe (HOG, 5-point chip) and show each step's effect.",
            rich_help_panel=PHOTOS,
        ),
    ] = False,
    corrections: Annotated[
        Path | None,
        typer.Option(
            help="Label corrections for the dataset (see docs/lfw-dev-corrections.txt).",
            rich_help_panel=PHOTOS,
        ),
    ] = None,
    ignore_quality_gate: Annotated[
        bool,
        typer.Option(
            "--ignore-quality-gate",
            help="Use every detected face, as published LFW figures do (not how Watchkeeper runs).",
            rich_help_panel=PHOTOS,
        ),
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Processes embedding images (default: one per core).", rich_help_panel=PHOTOS
        ),
    ] = None,
    no_cache: Annotated[
        bool,
        typer.Option(
            "--no-cache",
            help="Neither read nor write the embedding cache.",
            rich_help_panel=PHOTOS,
        ),
    ] = False,
    threshold: Annotated[
        float | None,
        typer.Option(
            help="Match threshold (cosine); default: the one `scan` would use, the model's "
            "calibration for the enrolment folder's size.",
            rich_help_panel=VIDEOS,
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Exit 1 when an expected person is missed or a stranger matched (for CI); "
            "otherwise the exit status says only whether the evaluation ran.",
            rich_help_panel=VIDEOS,
        ),
    ] = False,
) -> None:
    """Measure accuracy on labelled photos (verification and watchlist figures), or
    check a threshold on your own clips with a video manifest (.toml)."""
    if dataset.suffix.lower() == ".toml":
        misplaced = _given(ctx, PHOTO_OPTIONS)
        if misplaced:
            raise fail(
                ConfigError(f"{', '.join(misplaced)}: for a photo dataset, not a video manifest")
            )
        _evaluate_video(ctx, dataset, model, threshold, as_json, strict)
        return
    misplaced = _given(ctx, VIDEO_OPTIONS)
    if misplaced:
        raise fail(
            ConfigError(
                f"{', '.join(misplaced)}: for a video manifest (.toml), not a photo dataset"
            )
        )
    started = time.perf_counter()
    try:
        settings = ctx.obj.settings(**({"embedder": model} if model else {}))
        registry = ModelRegistry(settings.models_dir)
        spec = registry.spec(settings.embedder)
        protocol = IdentificationSettings(never_enrolled=_never_enrolled(never_enrolled), seed=seed)
        pair_list = read_pairs(pairs) if pairs is not None else None
        detector = detector_backend(settings.detection, registry)
        embeddings = _embed(
            settings, dataset, corrections, not no_cache, workers, "embedding images"
        )
        if ignore_quality_gate:
            embeddings = embeddings.without_quality_gate()
        vectors = embeddings.vectors(spec.flip_average)
        curves = Curves()
        result: dict[str, Any] = {
            "dataset": str(dataset),
            "date": datetime.date.today().isoformat(),
            "model": spec.model_id,
            "detector": detector,
            "flip": spec.flip_average,
            "images": len(embeddings.failures),
            "identities": len(embeddings.identities),
            "corrections": {
                "file": str(corrections) if corrections else None,
                "images_changed": embeddings.dataset.corrections,
            },
            "quality_gate": not ignore_quality_gate,
            "failure_to_acquire": failure_summary(embeddings),
            "verification": verification(embeddings, vectors, pair_list, curves),
            "identification": identification(embeddings, vectors, protocol, curves),
        }
        if ablation_steps:
            hog = settings.model_copy(
                update={"detection": settings.detection.model_copy(update={"backend": "hog"})}
            )
            baseline = _embed(
                hog, dataset, corrections, not no_cache, workers, "embedding images (HOG)"
            )
            if ignore_quality_gate:
                baseline = baseline.without_quality_gate()
            result["ablation"] = ablation(embeddings, baseline, protocol)
    except (WatchkeeperError, ValueError) as exc:
        error = exc if isinstance(exc, WatchkeeperError) else ConfigError(str(exc))
        raise fail(error) from None
    result["timing"] = {
        "seconds": round(time.perf_counter() - started, 1),
        "cached_images": embeddings.cached,
    }
    if out is not None:
        report = write_report(result, curves, out)
        stderr.print(f"report written to {report}", highlight=False)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        _print_summary(result)


def _threshold_source(ctx: typer.Context, models: FaceModels, size: int) -> str:
    """Where the threshold in use comes from, in words."""
    if _set(ctx, "threshold"):
        return "--threshold"
    if models.matching.threshold is not None:
        return "the matching.threshold setting"
    spec = models.registry.spec(model_name(models.embedder.model_id))
    assert spec.calibration is not None  # FaceModels.threshold has refused otherwise
    return f"{spec.name}'s calibration for {size} people (FPIR {spec.calibration.fpir:g})"


def _evaluate_video(
    ctx: typer.Context,
    manifest_path: Path,
    model: str | None,
    threshold: float | None,
    as_json: bool,
    strict: bool,
) -> None:
    """The video protocol: each clip of the manifest through `scan`'s own pipeline."""
    started = time.perf_counter()
    overrides: dict[str, Any] = {}
    if model:
        overrides["embedder"] = model
    if threshold is not None:
        overrides["matching"] = {"threshold": threshold}
    clips: list[dict[str, Any]] = []
    try:
        settings = ctx.obj.settings(**overrides)
        manifest = load_manifest(manifest_path)
        models = FaceModels.load(settings)
        enrolled = enrol_folder(models, manifest.enrolment)
        gallery = enrolled.gallery
        match_threshold = models.threshold(len(gallery.subjects))
        source_of_threshold = _threshold_source(ctx, models, len(gallery.subjects))
        for number, clip in enumerate(manifest.clips, start=1):
            clip_gallery = ClipGallery(gallery, clip.expected)
            pipeline = models.pipeline(clip_gallery, settings.tracking, len(gallery.subjects))
            events: list[MatchEvent] = []

            def collect(item: CameraEvent | None, events: list[MatchEvent] = events) -> None:
                if item is not None:
                    events.append(item.event)

            frame_source = open_source(clip.source, settings.video)
            label = f"clip {number} of {len(manifest.clips)}: {clip.label}"
            with progress_display(frame_source, pipeline, label) as show:
                run = run_source(
                    settings, models, clip.label, frame_source, pipeline, collect, show
                )
            if run.failure is not None:
                raise run.failure
            if run.interrupted:
                raise typer.Exit(130)
            clips.append(clip_result(clip, events, clip_gallery, summary_record(run)))
    except WatchkeeperError as exc:
        raise fail(exc) from None
    refused = sum(not outcome.accepted for outcome in enrolled.outcomes)
    result: dict[str, Any] = {
        "manifest": str(manifest_path),
        "enrolment": str(manifest.enrolment),
        "enrolled_people": len(gallery.subjects),
        "enrolment_photos": len(enrolled.outcomes) - refused,
        "enrolment_photos_refused": refused,
        "model": models.embedder.model_id,
        "detector": models.detector.name,
        "threshold": round(match_threshold, 4),
        "threshold_source": source_of_threshold,
        "clips": clips,
        "totals": totals(clips),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        print_video_result(result, Console())
    if strict and not result["totals"]["passed"]:
        raise typer.Exit(1)


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_video_result(result: dict[str, Any], console: Console) -> None:
    """The video protocol's result as a table, one row per clip."""
    console.print(
        f"{result['model']}: {result['enrolled_people']} people enrolled from "
        f"{result['enrolment']} ({result['enrolment_photos']} photos, "
        f"{result['enrolment_photos_refused']} refused); threshold "
        f"{result['threshold']:.3f} from {result['threshold_source']}",
        highlight=False,
    )
    table = Table(title="Clips")
    for column in (
        "clip",
        "matched (score, first seen)",
        "missed (best score)",
        "strangers matched",
        "closest stranger",
        "tracks",
    ):
        table.add_column(column)
    for clip in result["clips"]:
        table.add_row(
            clip["clip"],
            "\n".join(
                f"{m['person']} {m['score']:.3f} at {m['first_seen']:.1f} s"
                for m in clip["matched"]
            )
            or ("-" if clip["expected"] else "(nobody expected)"),
            "\n".join(f"{m['person']} ({_score(m['best_score'])})" for m in clip["missed"]) or "-",
            "\n".join(
                f"{m['person']} {m['score']:.3f} ({m['tracks']} track(s))"
                for m in clip["false_matches"]
            )
            or "-",
            _score(clip["closest_stranger_score"]),
            str(clip["tracks"]),
        )
    console.print(table)
    t = result["totals"]
    console.print(
        f"{t['clips']} clips, {t['tracks']} tracks: {t['matched']} of {t['expected']} "
        f"expected people matched, {t['missed']} missed, {t['false_matches']} stranger(s) "
        f"matched ({t['false_match_tracks']} track(s)): "
        + ("PASSED" if t["passed"] else "NOT PASSED"),
        highlight=False,
    )


def _print_summary(result: dict[str, Any]) -> None:
    console = Console()
    verification_result = result["verification"]
    identification_result = result["identification"]
    fta = result["failure_to_acquire"]
    console.print(
        f"{result['model']} on {result['dataset']}: {result['images']} images, "
        f"{result['identities']} people; failure to acquire {fta['failed']} "
        f"({100 * fta['rate']:.2f}%)",
        highlight=False,
    )
    if "accuracy" in verification_result:
        console.print(
            f"pairs accuracy (10-fold): {100 * verification_result['accuracy']:.2f}% "
            f"± {100 * verification_result['accuracy_std']:.2f}",
            highlight=False,
        )
    table = Table(title="1:1 verification, all pairs")
    for column in ("FAR", "TAR", "threshold"):
        table.add_column(column)
    for key in RATE_KEYS:
        table.add_row(
            key,
            f"{100 * verification_result['tar_at_far'][key]:.2f}%",
            f"{verification_result['threshold_at_far'][key]:.4f}",
        )
    console.print(table)
    table = Table(title="1:N open-set identification: FNIR at FPIR (thresholds)")
    for column in ("watchlist", "photos", *RATE_KEYS, "rank-1"):
        table.add_column(column)
    for row in identification_result["by_watchlist"]:
        table.add_row(
            str(row["watchlist_size"]),
            str(row["gallery_photos"]),
            *(
                f"{100 * row['fnir_at_fpir'][key]:.1f}% ({row['threshold_at_fpir'][key]:.3f})"
                for key in RATE_KEYS
            ),
            f"{100 * row['rank1']:.1f}%",
        )
    console.print(table)
    for step in result.get("ablation", []):
        console.print(
            f"{step['step']}: FNIR {100 * step['fnir_at_fpir']['1e-3']:.1f}% at FPIR 1e-3",
            highlight=False,
        )


@app.command()
def calibrate(
    ctx: typer.Context,
    dataset: DatasetArgument,
    fpir: Annotated[float, typer.Option(help="Target false-positive identification rate.")],
    watchlist_size: Annotated[
        list[int], typer.Option(help="People on the watchlist; repeat for several sizes.")
    ],
    photos: Annotated[int, typer.Option(help="Enrolment photos per person (at most).")] = 1,
    draws: Annotated[
        int,
        typer.Option(help="Random watchlists per size; the median threshold is kept.", min=1),
    ] = 5,
    model: ModelOption = None,
    never_enrolled: NeverEnrolledOption = "1000",
    seed: SeedOption = 0,
    corrections: CorrectionsOption = None,
    save: Annotated[
        bool, typer.Option("--save", help="Store the thresholds as the model's calibration.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False,
    workers: WorkersOption = None,
    no_cache: NoCacheOption = False,
) -> None:
    """Find the thresholds that give a target FPIR at given watchlist sizes."""
    try:
        if not 0 < fpir < 1:
            raise ConfigError("--fpir must lie between 0 and 1")
        settings = ctx.obj.settings(**({"embedder": model} if model else {}))
        registry = ModelRegistry(settings.models_dir)
        spec = registry.spec(settings.embedder)
        strangers = _never_enrolled(never_enrolled)
        embeddings = _embed(
            settings, dataset, corrections, not no_cache, workers, "embedding images"
        )
        vectors = embeddings.vectors(spec.flip_average)
        rows = [
            calibrate_size(embeddings, vectors, size, photos, fpir, draws, strangers, seed)
            for size in sorted(set(watchlist_size))
        ]
    except (WatchkeeperError, ValueError) as exc:
        error = exc if isinstance(exc, WatchkeeperError) else ConfigError(str(exc))
        raise fail(error) from None
    result: dict[str, Any] = {
        "model": spec.model_id,
        "fpir": fpir,
        "gallery_photos": photos,
        "draws": draws,
        "dataset": str(dataset),
        "corrections": str(corrections) if corrections else None,
        "never_enrolled": never_enrolled,
        "seed": seed,
        "date": datetime.date.today().isoformat(),
        "sizes": rows,
    }
    for row in rows:
        if row["enrolled"] < row["watchlist_size"]:
            stderr.print(
                f"warning: only {row['enrolled']} people could be enrolled, not "
                f"{row['watchlist_size']}",
                highlight=False,
            )
    if save:
        figures = "; ".join(
            f"{r['watchlist_size']}: {r['threshold']:.4f} (FNIR {r['fnir']:.3f})" for r in rows
        )
        provenance = (
            f"watchkeeper calibrate on {dataset}"
            + (f" with corrections {corrections}" if corrections else "")
            + f", {result['date']}: FPIR {fpir:g}, {photos} enrolment photo(s) per person, "
            f"median of {draws} seeded watchlists per size (seed {seed}), "
            f"{rows[0]['nonmated_searches']} searches by never-enrolled people. "
            f"Size: threshold (FNIR): {figures}"
        )
        path = save_calibration(
            settings.models_dir,
            spec.name,
            Calibration(
                fpir=fpir,
                thresholds={r["watchlist_size"]: r["threshold"] for r in rows},
                provenance=provenance,
            ),
        )
        result["saved_to"] = str(path)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    for row in rows:
        sys.stdout.write(
            f"watchlist {row['watchlist_size']:>5}: threshold {row['threshold']:.6f} "
            f"(draws {row['threshold_min']:.4f}-{row['threshold_max']:.4f}), "
            f"FNIR {row['fnir']:.3f} at FPIR {fpir:g}\n"
        )
    if save:
        sys.stdout.write(f"saved as {spec.name}'s calibration in {result['saved_to']}\n")
