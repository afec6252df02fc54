"""A watchlist read from a folder: one sub-folder per subject, photos inside.

Each photo must show exactly one usable face (one that passes the quality
gate); a photo that does not is refused with its reasons, and a subject with
no usable photo makes the whole watchlist invalid, since silently watching
for fewer people than the user listed would be worse than stopping.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from watchkeeper.config import QualityConfig
from watchkeeper.errors import ImageError, WatchlistError
from watchkeeper.matching.gallery import Gallery
from watchkeeper.vision.detection import FaceDetector
from watchkeeper.vision.embedding import Embeddings, FaceEmbedder
from watchkeeper.vision.images import IMAGE_SUFFIXES, read_image
from watchkeeper.vision.quality import QualityReport, gate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhotoOutcome:
    """Whether one enrolment photo was used, and why not."""

    subject: str
    path: Path
    accepted: bool
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class EnrolmentFace:
    chip: np.ndarray
    quality: QualityReport


class PhotoRefused(Exception):
    """An enrolment photo cannot be used; ``reasons`` say why."""

    def __init__(self, reasons: tuple[str, ...]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


def enrolment_face(
    image: np.ndarray, detector: FaceDetector, embedder: FaceEmbedder, quality: QualityConfig
) -> EnrolmentFace:
    """The one usable face of an enrolment photo, aligned for ``embedder``."""
    observations = detector.detect(image)
    if not observations:
        raise PhotoRefused(("no face found",))
    usable: list[EnrolmentFace] = []
    refusals: list[QualityReport] = []
    for observation in observations:
        report, chip = gate(image, observation, embedder.layout, quality)
        if report.kept and chip is not None:
            usable.append(EnrolmentFace(chip, report))
        else:
            refusals.append(report)
    if len(usable) > 1:
        raise PhotoRefused(
            (f"{len(usable)} usable faces; an enrolment photo must show one person only",)
        )
    if not usable:
        largest = max(refusals, key=lambda report: report.interocular_px)
        raise PhotoRefused(largest.reasons)
    return usable[0]


@dataclass(frozen=True)
class FolderWatchlist:
    gallery: Gallery
    outcomes: tuple[PhotoOutcome, ...]


def subject_folders(folder: Path) -> list[Path]:
    """The subject sub-folders of a watchlist folder (hidden ones left out), by name."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def load_watchlist_folder(
    folder: Path, detector: FaceDetector, embedder: FaceEmbedder, quality: QualityConfig
) -> FolderWatchlist:
    """Enrol every subject folder under ``folder``."""
    if not folder.is_dir():
        raise WatchlistError(f"watchlist folder not found: {folder}")
    subject_dirs = subject_folders(folder)
    if not subject_dirs:
        raise WatchlistError(f"watchlist folder {folder} has no subject sub-folders")
    templates: dict[str, Embeddings] = {}
    outcomes: list[PhotoOutcome] = []
    for subject_dir in subject_dirs:
        subject = subject_dir.name
        chips = []
        subject_outcomes = []
        for path in sorted(subject_dir.iterdir()):
            if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                face = enrolment_face(read_image(path), detector, embedder, quality)
            except ImageError as exc:
                subject_outcomes.append(PhotoOutcome(subject, path, False, (str(exc),)))
            except PhotoRefused as refused:
                subject_outcomes.append(PhotoOutcome(subject, path, False, refused.reasons))
            else:
                chips.append(face.chip)
                subject_outcomes.append(PhotoOutcome(subject, path, True))
        outcomes += subject_outcomes
        if not chips:
            detail = "; ".join(f"{o.path.name}: {', '.join(o.reasons)}" for o in subject_outcomes)
            raise WatchlistError(
                f"watchlist subject {subject!r} has no usable face"
                + (f" ({detail})" if detail else " (no image files)")
            )
        for outcome in subject_outcomes:
            if not outcome.accepted:
                log.warning(
                    "watchlist photo %s refused: %s", outcome.path, "; ".join(outcome.reasons)
                )
        templates[subject] = embedder.embed(chips)
    return FolderWatchlist(Gallery.from_templates(templates), tuple(outcomes))
