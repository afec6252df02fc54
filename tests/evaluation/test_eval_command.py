"""`watchkeeper eval` and `calibrate` on a small LFW subset, through the real pipeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.support.data import MODELS, lfw_photos
from watchkeeper.config import load_settings
from watchkeeper.evaluation.dataset import scan_dataset
from watchkeeper.evaluation.embeddings import EmbeddingCache, embed_dataset
from watchkeeper.models.registry import ModelRegistry

MULTI = [
    "Colin_Powell",
    "Tony_Blair",
    "Hu_Jintao",
    "Serena_Williams",
    "Ariel_Sharon",
    "Gloria_Macapagal_Arroyo",
    "Jean_Chretien",
    "John_Ashcroft",
]
SINGLE = ["Aaron_Eckhart", "Abba_Eban", "Adam_Rich", "Aaron_Guiel", "Abel_Aguilar", "Adam_Mair"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 photos of 8 people, 1 of 6 others, plus a file that is not an image and a blank one."""
    root = tmp_path_factory.mktemp("lfw-subset")
    for name in MULTI + SINGLE:
        (root / name).mkdir()
        for photo in lfw_photos(name)[: 3 if name in MULTI else 1]:
            (root / name / photo.name).symlink_to(photo)
    (root / "Colin_Powell" / "Colin_Powell_0099.jpg").write_text("not a photo")
    cv2.imwrite(
        str(root / "Tony_Blair" / "Tony_Blair_0099.jpg"), np.full((250, 250, 3), 127, np.uint8)
    )
    return root


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "watchkeeper", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    models = tmp_path / "models"
    models.mkdir()
    for name in ("face_detection_yunet_2023mar.onnx", "face_recognition_sface_2021dec.onnx"):
        (models / name).symlink_to(MODELS / name)
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("WATCHKEEPER_")},
        "WATCHKEEPER_MODELS_DIR": str(models),
        "WATCHKEEPER_CACHE_DIR": str(tmp_path / "cache"),
    }


def test_embedding_cache_gives_the_same_vectors_without_the_network(
    dataset: Path, tmp_path: Path
) -> None:
    settings = load_settings(models_dir=MODELS, cache_dir=tmp_path)
    data = scan_dataset(dataset)
    cache = EmbeddingCache(tmp_path / "cache.sqlite3")
    cold = embed_dataset(data, settings, cache, workers=2)
    warm = embed_dataset(data, settings, cache, workers=2)
    cache.close()
    assert cold.cached == 0
    assert warm.cached == len(data.images) == 32
    np.testing.assert_array_equal(cold.plain, warm.plain)
    np.testing.assert_array_equal(cold.mirrored, warm.mirrored)
    assert cold.failures == warm.failures
    failures = dict(zip((i.path.name for i in data.images), cold.failures, strict=True))
    assert failures["Colin_Powell_0099.jpg"].startswith("unreadable")
    assert failures["Tony_Blair_0099.jpg"] == "no face found"
    assert sum(f is not None for f in cold.failures) >= 2
    # 'auto' resolves to YuNet here: the same pipeline, the same cache entries.
    auto = settings.model_copy(
        update={"detection": settings.detection.model_copy(update={"backend": "yunet"})}
    )
    assert embed_dataset(data, auto, EmbeddingCache(tmp_path / "cache.sqlite3")).cached == 32
    # A model change invalidates the cache: another fingerprint, nothing reused.
    hog = settings.model_copy(
        update={"detection": settings.detection.model_copy(update={"backend": "hog"})}
    )
    assert (
        embed_dataset(data, hog, EmbeddingCache(tmp_path / "cache.sqlite3"), workers=1).cached == 0
    )


def test_eval_reports_every_figure_and_writes_a_report(
    dataset: Path, env: dict[str, str], tmp_path: Path
) -> None:
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(
        "4\nColin_Powell\t1\t2\nTony_Blair\t1\t3\nColin_Powell\t1\tTony_Blair\t1\n"
        "Hu_Jintao\t2\tAbba_Eban\t1\n"
    )
    out = tmp_path / "report"
    args = ["eval", str(dataset), "--pairs", str(pairs), "--out", str(out), "--json"]
    args += ["--never-enrolled", "all"]
    result = run(*args, env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["images"] == 32
    assert report["failure_to_acquire"]["failed"] >= 2
    assert set(report["verification"]["tar_at_far"]) == {"1e-2", "1e-3", "1e-4"}
    assert report["verification"]["pairs"] == 4
    assert 0.5 <= report["verification"]["accuracy"] <= 1.0
    identification = report["identification"]
    assert set(identification["fnir_at_fpir"]) == {"1e-2", "1e-3", "1e-4"}
    assert set(identification["threshold_at_fpir"]) == {"1e-2", "1e-3", "1e-4"}
    assert identification["enrolled_identities"] == 8
    assert identification["never_enrolled_identities"] == 6
    assert {row["gallery_photos"] for row in identification["by_watchlist"]} == {1, 3}
    assert report["timing"]["cached_images"] == 0
    for name in ("report.md", "results.json", "roc.png", "identification.png"):
        assert (out / name).stat().st_size > 0
    text = (out / "report.md").read_text()
    assert "Failure to acquire" in text
    assert "10-fold" in text
    # A second run takes every vector from the cache.
    again = run(*args, env=env)
    assert json.loads(again.stdout)["timing"]["cached_images"] == 32


def test_calibrate_saves_thresholds_by_watchlist_size_with_provenance(
    dataset: Path, env: dict[str, str]
) -> None:
    args = ["calibrate", str(dataset), "--fpir", "0.2", "--watchlist-size", "4"]
    args += ["--watchlist-size", "8", "--draws", "3", "--never-enrolled", "all", "--json"]
    printed = run(*args, env=env)
    assert printed.returncode == 0, printed.stderr
    result = json.loads(printed.stdout)
    assert [row["watchlist_size"] for row in result["sizes"]] == [4, 8]
    for row in result["sizes"]:
        assert row["threshold_min"] <= row["threshold"] <= row["threshold_max"]
    assert "saved_to" not in result
    models = Path(env["WATCHKEEPER_MODELS_DIR"])
    assert not (models / "calibration.toml").exists()
    saved = run(*args, "--save", env=env)
    assert saved.returncode == 0, saved.stderr
    calibration = ModelRegistry(models).spec("sface-2021dec").calibration
    assert calibration is not None
    assert calibration.fpir == 0.2
    assert calibration.thresholds == {
        row["watchlist_size"]: pytest.approx(row["threshold"]) for row in result["sizes"]
    }
    assert "FPIR 0.2, 1 enrolment photo(s) per person" in calibration.provenance
    listed = json.loads(run("models", "list", "--json", env=env).stdout)
    row = next(r for r in listed if r["name"] == "sface-2021dec")
    assert row["calibration"]["provenance"] == calibration.provenance


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "/nonexistent"], "dataset folder not found"),
        (["calibrate", "/nonexistent", "--fpir", "2", "--watchlist-size", "5"], "--fpir must lie"),
        (["eval", "DATASET", "--never-enrolled", "many"], "takes a number or 'all'"),
    ],
)
def test_bad_arguments_are_one_line_errors(
    dataset: Path, env: dict[str, str], args: list[str], message: str
) -> None:
    result = run(*[str(dataset) if a == "DATASET" else a for a in args], env=env)
    assert result.returncode == 2
    assert message in result.stderr.strip().splitlines()[-1]
