"""Alignment: the similarity fit, agreement with dlib's own chips, and the measured templates."""

from __future__ import annotations

import cv2
import dlib
import numpy as np
import pytest

from tests.support.data import LFW, lfw_identities
from watchkeeper.vision.alignment import (
    ARCFACE_CHIP,
    DLIB_CHIP,
    align,
    derive_template,
    similarity_transform,
)
from watchkeeper.vision.detection import FaceDetector
from watchkeeper.vision.images import read_image
from watchkeeper.vision.observation import FaceObservation, LandmarkScheme


def similarity(scale: float, angle_deg: float, tx: float, ty: float) -> np.ndarray:
    a = np.radians(angle_deg)
    return np.array(
        [
            [scale * np.cos(a), -scale * np.sin(a), tx],
            [scale * np.sin(a), scale * np.cos(a), ty],
        ]
    )


@pytest.mark.parametrize(
    ("scale", "angle", "tx", "ty"),
    [(1.0, 0.0, 0.0, 0.0), (2.5, 30.0, 10.0, -4.0), (0.3, -170.0, 100.0, 50.0)],
)
def test_similarity_transform_recovers_an_exact_similarity(
    scale: float, angle: float, tx: float, ty: float
) -> None:
    source = np.array([[10, 20], [50, 22], [30, 40], [15, 60], [45, 61]], float)
    expected = similarity(scale, angle, tx, ty)
    target = np.hstack([source, np.ones((5, 1))]) @ expected.T
    np.testing.assert_allclose(similarity_transform(source, target), expected, atol=1e-9)


def test_similarity_transform_never_reflects() -> None:
    source = np.array([[0, 0], [3, 0], [0, 1], [1, 2], [0.5, 0.2]], float)
    mirrored = source * [-1, 1]
    matrix = similarity_transform(source, mirrored)
    assert np.linalg.det(matrix[:, :2]) >= 0


def sample_lfw(count: int, seed: int = 3) -> list:
    names = lfw_identities()
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(names), size=count, replace=False)
    return [sorted((LFW / names[i]).glob("*.jpg"))[0] for i in picks]


def central_face(detector: FaceDetector, image: np.ndarray) -> FaceObservation | None:
    """The face at the centre of an LFW picture (LFW crops are centred on the subject)."""
    centre = np.array([image.shape[1], image.shape[0]]) / 2
    faces = [
        face
        for face in detector.detect(image)
        if np.linalg.norm((face.box[:2] + face.box[2:]) / 2 - centre) < 35
    ]
    return faces[0] if len(faces) == 1 else None


def test_chips_equal_dlibs_own_face_chips(hog: FaceDetector) -> None:
    differences = []
    for path in sample_lfw(30):
        image = read_image(path)
        face = central_face(hog, image)
        if face is None:
            continue
        rect = dlib.rectangle(*(int(v) for v in face.box))
        shape = dlib.full_object_detection(
            rect, [dlib.point(int(x), int(y)) for x, y in face.landmarks]
        )
        reference = dlib.get_face_chip(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), shape, 150, 0.25)
        ours = cv2.cvtColor(align(image, face, DLIB_CHIP), cv2.COLOR_BGR2RGB)
        differences.append(np.abs(reference.astype(int) - ours.astype(int)).mean())
    assert len(differences) >= 20
    # Mean absolute difference in grey levels (0-255): interpolation details only.
    assert np.mean(differences) < 1.5


def test_large_faces_are_reduced_without_aliasing() -> None:
    """A face much larger than the chip: the chip must equal area-averaged downscaling."""
    rng = np.random.default_rng(0)
    pattern = (rng.random((600, 600, 3)) * 255).astype(np.uint8)
    # Landmarks such that the chip is exactly the whole image scaled by 1/4.
    template = DLIB_CHIP.template(LandmarkScheme.DLIB5)
    landmarks = ((template + 0.5) * 4 - 0.5).astype(np.float32)
    face = FaceObservation(
        np.array([0, 0, 600, 600], np.float32), landmarks, LandmarkScheme.DLIB5, 1.0
    )
    chip = align(pattern, face, DLIB_CHIP)
    expected = cv2.resize(pattern, (150, 150), interpolation=cv2.INTER_AREA)
    assert np.abs(chip.astype(int) - expected.astype(int)).mean() < 2.0
    naive = cv2.resize(pattern, (150, 150), interpolation=cv2.INTER_NEAREST)
    assert np.abs(naive.astype(int) - expected.astype(int)).mean() > 20


@pytest.mark.parametrize(
    ("layout", "target_scheme", "reference_scheme"),
    [
        (DLIB_CHIP, LandmarkScheme.EYES_NOSE_MOUTH, LandmarkScheme.DLIB5),
        (ARCFACE_CHIP, LandmarkScheme.DLIB5, LandmarkScheme.EYES_NOSE_MOUTH),
    ],
)
def test_measured_templates_still_hold(
    yunet: FaceDetector,
    hog: FaceDetector,
    layout,
    target_scheme: LandmarkScheme,
    reference_scheme: LandmarkScheme,
) -> None:
    """Re-derive the cross-detector templates on fresh LFW faces: within 1.5 px."""
    by_scheme: dict[LandmarkScheme, list[np.ndarray]] = {s: [] for s in LandmarkScheme}
    for path in sample_lfw(80, seed=11):
        image = read_image(path)
        faces = {d.scheme: central_face(d, image) for d in (yunet, hog)}
        if all(f is not None for f in faces.values()):
            for scheme, found in faces.items():
                by_scheme[scheme].append(found.landmarks)
    assert len(by_scheme[target_scheme]) >= 50
    derived = derive_template(
        by_scheme[target_scheme], by_scheme[reference_scheme], layout.template(reference_scheme)
    )
    error = np.linalg.norm(derived - layout.template(target_scheme), axis=1)
    assert error.max() < 1.5, error
