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
    failure_summary,
    identification,
    identification_searches,
    summarise_searches,
    verification,
)
from watchkeeper.models.registry import CalibratedThreshold, ModelRegistry, save_calibration
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


def _never_enrolled(value: str) -> int | None:
    if value == "all":
        return None
    if not value.isdigit():
        raise ConfigError(f"--never-enrolled takes a number or 'all', not {value!r}")
    return int(value)


def _embed(
    settings: Settings, dataset_path: Path, use_cache: bool, workers: int | None, label: str
) -> DatasetEmbeddings:
    dataset = scan_dataset(dataset_path)
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
        embeddings = _embed(settings, dataset, not no_cache, workers, "embedding images")
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
            "failure_to_acquire": failure_summary(embeddings),
            "verification": verification(embeddings, vectors, pair_list, curves),
            "identification": identification(embeddings, vectors, protocol, curves),
        }
        if ablation_steps:
            hog = settings.model_copy(
                update={"detection": settings.detection.model_copy(update={"backend": "hog"})}
            )
            baseline = _embed(hog, dataset, not no_cache, workers, "embedding images (HOG)")
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
    watchlist_size: Annotated[int, typer.Option(help="People on the watchlist.")],
    photos: Annotated[int, typer.Option(help="Enrolment photos per person (at most).")] = 1,
    model: ModelOption = None,
    never_enrolled: NeverEnrolledOption = "1000",
    seed: SeedOption = 0,
    save: Annotated[
        bool, typer.Option("--save", help="Store the threshold as the model's default.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False,
    workers: WorkersOption = None,
    no_cache: NoCacheOption = False,
) -> None:
    """Find the threshold that gives a target FPIR for a watchlist size."""
    try:
        if not 0 < fpir < 1:
            raise ConfigError("--fpir must lie between 0 and 1")
        settings = ctx.obj.settings(**({"embedder": model} if model else {}))
        registry = ModelRegistry(settings.models_dir)
        spec = registry.spec(settings.embedder)
        protocol = IdentificationSettings(never_enrolled=_never_enrolled(never_enrolled), seed=seed)
        embeddings = _embed(settings, dataset, not no_cache, workers, "embedding images")
        searches = identification_searches(
            embeddings, embeddings.vectors(spec.flip_average), watchlist_size, photos, protocol
        )
    except (WatchkeeperError, ValueError) as exc:
        error = exc if isinstance(exc, WatchkeeperError) else ConfigError(str(exc))
        raise fail(error) from None
    enrolled = len(set(searches.mated_owner.tolist()))
    threshold = searches.threshold_at_fpir(fpir)
    summary = summarise_searches(searches, protocol.bootstrap, seed)
    result = {
        "model": spec.model_id,
        "threshold": round(threshold, 6),
        "fpir": fpir,
        "achieved_fpir": round(searches.fpir(threshold), 6),
        "fnir": round(searches.fnir(threshold), 6),
        "watchlist_size": watchlist_size,
        "enrolled_people_searched": enrolled,
        "gallery_photos": photos,
        "mated_searches": summary["mated_searches"],
        "nonmated_searches": summary["nonmated_searches"],
        "dataset": str(dataset),
        "seed": seed,
        "date": datetime.date.today().isoformat(),
    }
    if enrolled < watchlist_size:
        stderr.print(
            f"warning: only {enrolled} people could be enrolled, not {watchlist_size}",
            highlight=False,
        )
    if save:
        provenance = (
            f"watchkeeper calibrate on {dataset} ({result['date']}): FPIR {fpir:g} at a "
            f"{watchlist_size}-person watchlist, {photos} enrolment photo(s) each, "
            f"{result['nonmated_searches']} searches by never-enrolled people, seed {seed}; "
            f"achieved FPIR {result['achieved_fpir']:g}, FNIR {result['fnir']:.3f}"
        )
        path = save_calibration(
            settings.models_dir,
            spec.name,
            CalibratedThreshold(value=result["threshold"], provenance=provenance),
        )
        result["saved_to"] = str(path)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    sys.stdout.write(
        f"threshold {result['threshold']:.6f} for FPIR {fpir:g} at a {watchlist_size}-person "
        f"watchlist: achieved FPIR {result['achieved_fpir']:g} over "
        f"{result['nonmated_searches']} strangers' searches, FNIR {result['fnir']:.3f}\n"
    )
    if save:
        sys.stdout.write(f"saved as {spec.name}'s default in {result['saved_to']}\n")
