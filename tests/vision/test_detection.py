"""Both detectors on the real clips (every 5th frame)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.support.data import CORRIDOR, CROWD, DEBATE, STAGE, lfw_photos, read_frames
from watchkeeper.config import DetectionConfig
from watchkeeper.models.registry import ModelRegistry
from watchkeeper.vision.detection import FaceDetector, create_detector
from watchkeeper.vision.images import read_image
from watchkeeper.vision.observation import LandmarkScheme


@cache
def sampled(clip: Path) -> tuple[np.ndarray, ...]:
    return tuple(read_frames(clip, every=5))


def counts(detector: FaceDetector, clip: Path) -> np.ndarray:
    return np.array([len(detector.detect(frame)) for frame in sampled(clip)])


# Minimum mean faces per sampled frame and minimum largest count, per clip. The
# clip README (YuNet, score 0.8, every 3rd frame) gives up to 8 faces in the
# crowd, 3 in the corridor, 1-2 in the debate and up to 6 on stage. HOG misses
# small, turned and dimly lit faces, which is why it is only the fallback.
@pytest.mark.parametrize(
    ("backend", "clip", "min_mean", "min_max"),
    [
        ("yunet", CROWD, 6.0, 8),
        ("yunet", CORRIDOR, 2.9, 3),
        ("yunet", DEBATE, 1.8, 2),
        ("yunet", STAGE, 2.0, 6),
        ("hog", CROWD, 2.5, 5),
        ("hog", CORRIDOR, 2.0, 3),
        ("hog", DEBATE, 1.8, 2),
        ("hog", STAGE, 0.5, 1),
    ],
)
def test_detectors_find_the_faces_in_the_clips(
    registry: ModelRegistry, backend: str, clip: Path, min_mean: float, min_max: int
) -> None:
    detector = create_detector(DetectionConfig(backend=backend), registry)
    found = counts(detector, clip)
    assert found.mean() >= min_mean
    assert found.max() >= min_max
    if clip is DEBATE:
        assert set(found) <= {1, 2}, "the debate shows one or two people, never more"


def test_observations_share_one_shape(yunet: FaceDetector, hog: FaceDetector) -> None:
    frame = sampled(DEBATE)[-1]
    for detector, scheme in ((yunet, LandmarkScheme.EYES_NOSE_MOUTH), (hog, LandmarkScheme.DLIB5)):
        for face in detector.detect(frame):
            assert face.box.shape == (4,)
            assert face.landmarks.shape == (5, 2)
            assert face.scheme is scheme
            assert 0.0 < face.score <= 1.0
            right_eye, left_eye = face.eye_centres()
            assert face.box[0] <= right_eye[0] < left_eye[0] <= face.box[2]
            assert face.box[1] <= face.nose()[1] <= face.box[3]


def test_small_faces_in_the_crowd_are_found(registry: ModelRegistry) -> None:
    """Faces from about 24 px wide, at full 1080p detection resolution."""
    detector = create_detector(DetectionConfig(backend="yunet", max_width=1920), registry)
    widths = [face.width for frame in sampled(CROWD) for face in detector.detect(frame)]
    assert min(widths) < 30


@pytest.mark.parametrize("backend", ["yunet", "hog"])
def test_downscaled_detection_reports_full_resolution_coordinates(
    registry: ModelRegistry, backend: str
) -> None:
    """A photo enlarged 4x and detected at the original size: coordinates scale by 4."""
    photo = read_image(lfw_photos("Colin_Powell")[0])
    enlarged = cv2.resize(photo, None, fx=4, fy=4, interpolation=cv2.INTER_NEAREST)
    original = create_detector(DetectionConfig(backend=backend), registry).detect(photo)
    reduced = create_detector(DetectionConfig(backend=backend, max_width=250), registry)
    found = reduced.detect(enlarged)
    assert len(found) == len(original) >= 1
    for small, large in zip(original, found, strict=True):
        np.testing.assert_allclose(large.box, small.box * 4, atol=4)
        # Landmarks come from the full-resolution image for HOG (dlib's shape
        # model runs there), so they may move by a pixel or two.
        np.testing.assert_allclose(large.landmarks, small.landmarks * 4, atol=6)


@pytest.mark.parametrize("backend", ["yunet", "hog"])
@pytest.mark.parametrize(
    "shape",
    [
        (240, 320, 3),
        (1080, 1920, 3),
        (37, 53, 3),
        # Thin and odd shapes: downscaling must keep at least one row or column.
        (1, 6000, 3),
        (6000, 1, 3),
        (2, 20000, 3),
        (1, 1, 3),
    ],
)
def test_a_frame_without_faces_gives_none(
    registry: ModelRegistry, backend: str, shape: tuple[int, int, int]
) -> None:
    detector = create_detector(DetectionConfig(backend=backend), registry)
    assert detector.detect(np.full(shape, 128, np.uint8)) == []


@pytest.mark.parametrize(
    ("backend", "configured", "width"),
    [("yunet", None, 960), ("hog", None, 1280), ("yunet", 1920, 1920), ("hog", 640, 640)],
)
def test_detection_width_defaults_to_what_each_detector_needs(
    registry: ModelRegistry, backend: str, configured: int | None, width: int
) -> None:
    detector = create_detector(DetectionConfig(backend=backend, max_width=configured), registry)
    assert detector.width == width
