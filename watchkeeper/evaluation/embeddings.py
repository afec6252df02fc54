"""Embedding a labelled dataset with the real pipeline, with a cache for re-runs.

Each image goes through detection, the quality gate, alignment and the
embedder, exactly as a watchlist photo or a camera frame would. The face
nearest the image centre is the labelled person (the LFW convention); an
image whose central face is missing or refused by the quality gate is a
failure to acquire, kept with its reason and reported, never dropped.

The network's raw vectors for the chip and its mirror image are cached in a
SQLite file, keyed by the image's content (SHA-256) and a fingerprint of
everything that shapes the vectors (models, their checksums, detection,
quality and alignment settings), so that a second run, or a run with other
post-processing, skips the network. The cache holds biometric templates of
the evaluation images: it lives in the user's cache folder, is used only by
`watchkeeper eval` and `calibrate`, and can be deleted at any time.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from watchkeeper.config import Settings
from watchkeeper.errors import ImageError
from watchkeeper.evaluation.dataset import Dataset
from watchkeeper.models.registry import ModelRegistry
from watchkeeper.pipeline import FaceModels
from watchkeeper.vision.alignment import ALIGNMENT_VERSION, align
from watchkeeper.vision.detection import FaceDetector, detector_backend
from watchkeeper.vision.embedding import FaceEmbedder, flip_average, mirror
from watchkeeper.vision.images import decode_image
from watchkeeper.vision.quality import gate

CACHE_SCHEMA = 2

Progress = Callable[[int, int], None]
"""Called with (images done, images in all)."""


@dataclass(frozen=True)
class ImageResult:
    """One image through the pipeline: raw vectors and, when it failed, why.

    A face refused by the quality gate has vectors and a failure; an image
    without a face (or unreadable) has no vectors.
    """

    plain: np.ndarray | None
    mirrored: np.ndarray | None
    quality: float
    failure: str | None


def fingerprint(settings: Settings, registry: ModelRegistry, detector: str) -> str:
    """Identity of everything that shapes an image's vectors."""
    embedder = registry.spec(settings.embedder)
    facts = {
        "schema": CACHE_SCHEMA,
        "alignment": ALIGNMENT_VERSION,
        "embedder": [embedder.model_id, embedder.sha256],
        "detector": detector,
        "detection": settings.detection.model_dump(mode="json"),
        "quality": settings.quality.model_dump(mode="json"),
    }
    if detector == "yunet":
        facts["detector_model"] = registry.spec("yunet-2023mar").sha256
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:32]


def central_face_result(
    image: np.ndarray, detector: FaceDetector, embedder: FaceEmbedder, settings: Settings
) -> ImageResult:
    """Run the pipeline on the face nearest the image centre."""
    faces = detector.detect(image)
    if not faces:
        return ImageResult(None, None, 0.0, "no face found")
    centre = np.array([image.shape[1], image.shape[0]]) / 2
    face = min(faces, key=lambda f: float(np.linalg.norm((f.box[:2] + f.box[2:]) / 2 - centre)))
    report, chip = gate(image, face, embedder.layout, settings.quality)
    if chip is None:
        chip = align(image, face, embedder.layout)
    # Refused faces are embedded too, so that a run that bypasses the quality
    # gate (to compare with published LFW figures) needs no second pass.
    plain, mirrored = embedder.embed_raw([chip, mirror(chip)])
    failure = None if report.kept else "; ".join(report.reasons)
    return ImageResult(plain, mirrored, report.score, failure)


class EmbeddingCache:
    """Raw vectors by (image SHA-256, pipeline fingerprint), in one SQLite file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS embedding (image TEXT, pipeline TEXT, plain BLOB, "
            "mirrored BLOB, quality REAL, failure TEXT, PRIMARY KEY (image, pipeline))"
        )

    def get(self, image: str, pipeline: str) -> ImageResult | None:
        row = self._db.execute(
            "SELECT plain, mirrored, quality, failure FROM embedding WHERE image=? AND pipeline=?",
            (image, pipeline),
        ).fetchone()
        if row is None:
            return None
        plain, mirrored, quality, failure = row
        return ImageResult(_array(plain), _array(mirrored), quality, failure)

    def put(self, image: str, pipeline: str, result: ImageResult) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO embedding VALUES (?, ?, ?, ?, ?, ?)",
            (
                image,
                pipeline,
                _blob(result.plain),
                _blob(result.mirrored),
                result.quality,
                result.failure,
            ),
        )

    def commit(self) -> None:
        self._db.commit()

    def close(self) -> None:
        self._db.commit()
        self._db.close()


def _blob(vector: np.ndarray | None) -> bytes | None:
    return None if vector is None else np.asarray(vector, np.float32).tobytes()


def _array(blob: bytes | None) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(blob, np.float32).copy()


@dataclass(frozen=True)
class DatasetEmbeddings:
    """Every image of a dataset through the pipeline, in the dataset's order."""

    dataset: Dataset
    model_id: str
    owner: np.ndarray
    """(N,) index into ``identities`` of each image's person."""
    identities: tuple[str, ...]
    plain: np.ndarray
    """(N, D) raw vectors; rows of failed images are zero."""
    mirrored: np.ndarray
    quality: np.ndarray
    failures: tuple[str | None, ...]
    cached: int
    """Images whose vectors came from the cache."""
    quality_gate: bool = True
    """False counts faces the quality gate refused as acquired (LFW-style figures)."""

    @property
    def acquired(self) -> np.ndarray:
        if self.quality_gate:
            return np.array([failure is None for failure in self.failures])
        return np.linalg.norm(self.plain, axis=1) > 0

    def without_quality_gate(self) -> DatasetEmbeddings:
        """The same images, with every face that was found counted as usable."""
        return replace(self, quality_gate=False)

    @property
    def failure_to_acquire(self) -> float:
        return float(1.0 - self.acquired.mean())

    def vectors(self, flip: bool) -> np.ndarray:
        """Unit vectors (zero rows for failures), with or without flip averaging."""
        if flip:
            vectors = flip_average(self.plain, self.mirrored)
        else:
            norms = np.linalg.norm(self.plain, axis=1, keepdims=True)
            vectors = self.plain / np.maximum(norms, 1e-12)
        vectors[~self.acquired] = 0.0
        return vectors.astype(np.float32)


# Worker processes build their own models once (dlib objects cannot be pickled).
_worker: tuple[FaceModels, Settings] | None = None


def _start_worker(settings_json: str) -> None:
    global _worker
    settings = Settings.model_validate_json(settings_json)
    _worker = (FaceModels.load(settings), settings)


def _embed_file(path: str) -> ImageResult:
    assert _worker is not None
    models, settings = _worker
    detector, embedder = models.detector, models.embedder
    try:
        image = decode_image(Path(path).read_bytes(), path)
    except (ImageError, OSError) as exc:
        return ImageResult(None, None, 0.0, f"unreadable: {exc}")
    return central_face_result(image, detector, embedder, settings)


def embed_dataset(
    dataset: Dataset,
    settings: Settings,
    cache: EmbeddingCache | None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> DatasetEmbeddings:
    """Vectors for every image, from the cache where possible, else in ``workers``
    processes (default: one per core)."""
    registry = ModelRegistry(settings.models_dir)
    detector_name = detector_backend(settings.detection, registry)
    # 'auto' resolved, so that the fingerprint names the detector actually used.
    settings = settings.model_copy(
        update={"detection": settings.detection.model_copy(update={"backend": detector_name})}
    )
    pipeline = fingerprint(settings, registry, detector_name)
    embedder_spec = registry.spec(settings.embedder)
    keys = [hashlib.sha256(image.path.read_bytes()).hexdigest() for image in dataset.images]
    results: list[ImageResult | None] = [
        cache.get(key, pipeline) if cache is not None else None for key in keys
    ]
    cached = sum(result is not None for result in results)
    missing = [i for i, result in enumerate(results) if result is None]
    done = cached
    if progress is not None:
        progress(done, len(results))
    for index, result in zip(missing, _compute(dataset, missing, settings, workers), strict=True):
        results[index] = result
        if cache is not None:
            cache.put(keys[index], pipeline, result)
        done += 1
        if progress is not None:
            progress(done, len(results))
        if cache is not None and done % 200 == 0:
            cache.commit()
    if cache is not None:
        cache.commit()
    final = [result for result in results if result is not None]
    dim = embedder_spec.embedding_dim or next(
        (len(r.plain) for r in final if r.plain is not None), 0
    )
    identities = dataset.identities
    position = {name: i for i, name in enumerate(identities)}
    return DatasetEmbeddings(
        dataset=dataset,
        model_id=embedder_spec.model_id,
        owner=np.array([position[image.identity] for image in dataset.images]),
        identities=identities,
        plain=np.stack([_or_zero(r.plain, dim) for r in final]),
        mirrored=np.stack([_or_zero(r.mirrored, dim) for r in final]),
        quality=np.array([r.quality for r in final]),
        failures=tuple(r.failure for r in final),
        cached=cached,
    )


def _or_zero(vector: np.ndarray | None, dim: int) -> np.ndarray:
    return np.zeros(dim, np.float32) if vector is None else vector


def _compute(
    dataset: Dataset, indices: list[int], settings: Settings, workers: int | None
) -> Iterator[ImageResult]:
    """Results for ``indices``, in order."""
    if not indices:
        return
    paths = [str(dataset.images[i].path) for i in indices]
    count = max(1, min(workers or os.cpu_count() or 1, len(paths)))
    if count == 1:
        _start_worker(settings.model_dump_json())
        yield from map(_embed_file, paths)
        return
    with ProcessPoolExecutor(
        count,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(settings.model_dump_json(),),
    ) as pool:
        yield from pool.map(_embed_file, paths, chunksize=8)
