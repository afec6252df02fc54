"""`watchkeeper eval` and `watchkeeper calibrate`: measured accuracy on labelled data."""

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
from watchkeeper.models.registry import Calibration, ModelRegistry, save_calibration
from watchkeeper.vision.detection import create_detector

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


@app.command("eval")
def evaluate(
    ctx: typer.Context,
    dataset: DatasetArgument,
    pairs: Annotated[
        Path | None, typer.Option(help="Verification pairs file in the LFW format.")
    ] = None,
    model: ModelOption = None,
    out: Annotated[
        Path | None, typer.Option(help="Write report.md, plots and results.json here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    never_enrolled: NeverEnrolledOption = "1000",
    seed: SeedOption = 0,
    ablation_steps: Annotated[
        bool,
        typer.Option(
            "--ablation",
            help="Also run dlib's own recipe (HOG, 5-point chip) and show each step's effect.",
        ),
    ] = False,
    corrections: CorrectionsOption = None,
    ignore_quality_gate: Annotated[
        bool,
        typer.Option(
            "--ignore-quality-gate",
            help="Use every detected face, as published LFW figures do (not how Watchkeeper runs).",
        ),
    ] = False,
    workers: WorkersOption = None,
    no_cache: NoCacheOption = False,
) -> None:
    """Measure verification and watchlist (open-set) accuracy on a labelled dataset."""
    started = time.perf_counter()
    try:
        settings = ctx.obj.settings(**({"embedder": model} if model else {}))
        registry = ModelRegistry(settings.models_dir)
        spec = registry.spec(settings.embedder)
        protocol = IdentificationSettings(never_enrolled=_never_enrolled(never_enrolled), seed=seed)
        pair_list = read_pairs(pairs) if pairs is not None else None
        detector = create_detector(settings.detection, registry).name
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
