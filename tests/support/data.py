"""Where the shared test data lives, and small helpers to use it.

The evaluation data (LFW development part, four video clips) and the YuNet
model live in the `shared` folder beside the checkout; set WATCHKEEPER_SHARED
to use another place. They are read in place, never copied into the project.
"""

from __future__ import annotations

import atexit
import os
import random
import shutil
import tempfile
from pathlib import Path

import av
import numpy as np
import pytest

from watchkeeper.config import QualityConfig
from watchkeeper.matching.watchlist import PhotoRefused, enrolment_face
from watchkeeper.vision.alignment import DLIB_CHIP, align
from watchkeeper.vision.detection import FaceDetector
from watchkeeper.vision.embedding import Embeddings, FaceEmbedder
from watchkeeper.vision.images import read_image

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("WATCHKEEPER_SHARED", REPO.parent / "shared")).resolve()
SHARED_MODELS = SHARED / "models"
LFW = SHARED / "eval" / "data" / "lfw-deepfunneled"
VIDEO = SHARED / "eval" / "video"

CROWD = VIDEO / "pedestrians_walking_toward_camera_1080p.mp4"
CORRIDOR = VIDEO / "intel_face_demographics_walking_and_pause.gif"
DEBATE = VIDEO / "debate_2020_biden_trump_cspan2.mp4"
STAGE = VIDEO / "white_house_2009_poetry_jam_clip.mp4"

if not (SHARED_MODELS.is_dir() and LFW.is_dir() and VIDEO.is_dir()):
    raise pytest.UsageError(
        f"test data not found at {SHARED}: the tests need the shared folder (models, "
        "eval/data/lfw-deepfunneled, eval/video) beside the checkout, or WATCHKEEPER_SHARED"
    )


def _working_models_folder() -> Path:
    """The models folder of this test run: links to the shared model files, beside which
    Watchkeeper caches what it builds from models (the ONNX conversion of dlib's
    embedder), so that nothing is ever written into the shared folder."""
    folder = Path(tempfile.mkdtemp(prefix="watchkeeper-test-models-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    for file in SHARED_MODELS.iterdir():
        (folder / file.name).symlink_to(file)
    return folder


MODELS = _working_models_folder()


def lfw_photos(name: str) -> list[Path]:
    return sorted((LFW / name).glob("*.jpg"))


def lfw_identities() -> list[str]:
    return sorted(p.name for p in LFW.iterdir() if p.is_dir())


def other_identities(count: int, exclude: set[str], seed: int = 7) -> list[str]:
    """``count`` LFW identities in a seeded random order, none of ``exclude``."""
    names = [n for n in lfw_identities() if n not in exclude]
    return random.Random(seed).sample(names, count)


def build_watchlist(folder: Path, identities: list[str], photos_per_subject: int = 2) -> Path:
    """A watchlist folder (one sub-folder per identity) linking to LFW photos."""
    for name in identities:
        subject = folder / name
        subject.mkdir(parents=True)
        for photo in lfw_photos(name)[:photos_per_subject]:
            (subject / photo.name).symlink_to(photo)
    return folder


def read_frames(path: Path, every: int = 1, limit: int | None = None) -> list[np.ndarray]:
    """Decoded BGR frames of a clip (every ``every``-th), for detector tests."""
    frames = []
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index % every == 0:
                frames.append(frame.to_ndarray(format="bgr24"))
            if limit is not None and len(frames) >= limit:
                break
    return frames


def enrol_identities(
    identities: list[str],
    count: int,
    detector: FaceDetector,
    embedder: FaceEmbedder,
    quality: QualityConfig,
    photos_per_subject: int = 2,
) -> dict[str, Embeddings]:
    """Templates for the first ``count`` identities with at least one usable photo.

    LFW photos sometimes show a second person, which enrolment rightly refuses;
    such identities are passed over, as a user would pick another photo.
    """
    templates: dict[str, Embeddings] = {}
    for name in identities:
        chips = []
        for photo in lfw_photos(name)[:photos_per_subject]:
            try:
                chips.append(enrolment_face(read_image(photo), detector, embedder, quality).chip)
            except PhotoRefused:
                continue
        if chips:
            templates[name] = embedder.embed(chips)
        if len(templates) == count:
            return templates
    raise ValueError(f"only {len(templates)} of {count} identities could be enrolled")


def centred_face_chip(detector: FaceDetector, path: Path) -> np.ndarray | None:
    """The dlib-aligned BGR chip of the face nearest the photo's centre (LFW's subject)."""
    image = read_image(path)
    faces = detector.detect(image)
    if not faces:
        return None
    centre = np.array(image.shape[1::-1]) / 2
    face = min(faces, key=lambda f: np.linalg.norm((f.box[:2] + f.box[2:]) / 2 - centre))
    return align(image, face, DLIB_CHIP)


LFW_CHIP_SEED = 11


def lfw_face_chips(detector: FaceDetector, count: int) -> list[np.ndarray]:
    """dlib-aligned chips of ``count`` distinct LFW people (their first photo each, in a
    seeded order), for comparing runtimes of one network. Draws from ``count + 40``
    people, since the detector misses a few."""
    chips = []
    for name in other_identities(count + 40, exclude=set(), seed=LFW_CHIP_SEED):
        chip = centred_face_chip(detector, lfw_photos(name)[0])
        if chip is not None:
            chips.append(chip)
        if len(chips) == count:
            return chips
    raise ValueError(f"only {len(chips)} of {count} LFW faces were found")
