"""Five-point similarity alignment into the chip an embedder was trained on.

A :class:`ChipLayout` says where each landmark of each scheme belongs in the
embedder's square chip. :func:`align` fits the least-squares similarity
(rotation, uniform scale, translation) from chip to image and samples the
chip, like dlib's ``get_face_chip``. When the face is much larger than the
chip, the region is first reduced with area averaging to avoid aliasing (dlib
uses an image pyramid for the same reason).

Two layouts come from the models' own conventions: dlib's 5-point template
(150x150, padding 0.25) and the ArcFace template (112x112). The two others
(YuNet's points in dlib's chip, dlib's points in the ArcFace chip) were
measured with :func:`derive_template` over LFW faces on which both detectors
agree; ``tests/vision/test_alignment.py`` derives them again and checks them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from watchkeeper.vision.observation import FaceObservation, LandmarkScheme

ALIGNMENT_VERSION = "1"
"""Changes whenever templates or warping change, so that cached vectors are redone."""

_DLIB_UNIT_TEMPLATE = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ]
)
"""dlib's 5-point template on the unit square (dlib/image_transforms/interpolation.h)."""

DLIB_CHIP_SIZE = 150
DLIB_CHIP_PADDING = 0.25


def _dlib_chip_points(size: int, padding: float) -> np.ndarray:
    """dlib's template in chip pixels. dlib measures from pixel corners, OpenCV from
    pixel centres, hence the half-pixel shift (it makes our chips equal dlib's)."""
    return ((padding + _DLIB_UNIT_TEMPLATE) / (2 * padding + 1) * size - 0.5).astype(np.float32)


@dataclass(frozen=True)
class ChipLayout:
    """Where the five landmarks of each scheme sit in a square chip, in chip pixels."""

    name: str
    size: int
    templates: dict[LandmarkScheme, np.ndarray]

    def template(self, scheme: LandmarkScheme) -> np.ndarray:
        return self.templates[scheme]


DLIB_CHIP = ChipLayout(
    name="dlib-150",
    size=DLIB_CHIP_SIZE,
    templates={
        LandmarkScheme.DLIB5: _dlib_chip_points(DLIB_CHIP_SIZE, DLIB_CHIP_PADDING),
        # Measured: see derive_template.
        LandmarkScheme.EYES_NOSE_MOUTH: np.array(
            [
                [47.10, 44.76],
                [103.05, 45.58],
                [74.90, 77.25],
                [51.15, 101.48],
                [98.82, 102.02],
            ],
            np.float32,
        ),
    },
)

ARCFACE_CHIP = ChipLayout(
    name="arcface-112",
    size=112,
    templates={
        LandmarkScheme.EYES_NOSE_MOUTH: np.array(
            [
                [38.2946, 51.6963],
                [73.5318, 51.5014],
                [56.0252, 71.7366],
                [41.5493, 92.3655],
                [70.7299, 92.2041],
            ],
            np.float32,
        ),
        # Measured: see derive_template.
        LandmarkScheme.DLIB5: np.array(
            [
                [79.18, 53.21],
                [65.38, 53.70],
                [30.39, 53.81],
                [44.26, 53.96],
                [55.14, 80.32],
            ],
            np.float32,
        ),
    },
)


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity mapping ``source`` points onto ``target`` (Umeyama 1991).

    Both are (N, 2). Returns the 2x3 matrix ``M`` with ``target ~ M @ [x, y, 1]``.
    Reflections are excluded.
    """
    source = np.asarray(source, np.float64)
    target = np.asarray(target, np.float64)
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_centred, target_centred = source - source_mean, target - target_mean
    covariance = target_centred.T @ source_centred / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ sign @ vt
    variance = (source_centred**2).sum() / len(source)
    scale = float(np.trace(np.diag(singular) @ sign) / variance)
    translation = target_mean - scale * rotation @ source_mean
    return np.hstack([scale * rotation, translation[:, None]])


def chip_to_image_transform(observation: FaceObservation, layout: ChipLayout) -> np.ndarray:
    """2x3 matrix taking chip pixel coordinates to image coordinates."""
    return similarity_transform(layout.template(observation.scheme), observation.landmarks)


def align(image: np.ndarray, observation: FaceObservation, layout: ChipLayout) -> np.ndarray:
    """The aligned square chip (layout.size, BGR uint8) for one face; outside is black."""
    return warp_chip(image, chip_to_image_transform(observation, layout), layout.size)


def warp_chip(image: np.ndarray, chip_to_image: np.ndarray, size: int) -> np.ndarray:
    """Sample a ``size`` x ``size`` chip through a chip-to-image similarity."""
    scale = float(np.sqrt(abs(np.linalg.det(chip_to_image[:, :2]))))
    transform = chip_to_image
    source = image
    if scale > 1.5:
        corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64)
        mapped = corners @ chip_to_image.T
        x0, y0 = np.maximum(np.floor(mapped.min(axis=0)).astype(int) - 2, 0)
        x1 = min(int(np.ceil(mapped[:, 0].max())) + 2, image.shape[1])
        y1 = min(int(np.ceil(mapped[:, 1].max())) + 2, image.shape[0])
        if x1 > x0 and y1 > y0:
            region = image[y0:y1, x0:x1]
            width = max(1, round(region.shape[1] / scale))
            height = max(1, round(region.shape[0] / scale))
            source = cv2.resize(region, (width, height), interpolation=cv2.INTER_AREA)
            fx, fy = width / region.shape[1], height / region.shape[0]
            # cv2.resize maps pixel centres: x_small = (x - x0 + 0.5) * f - 0.5.
            transform = np.array(
                [
                    [
                        fx * chip_to_image[0, 0],
                        fx * chip_to_image[0, 1],
                        fx * (chip_to_image[0, 2] - x0 + 0.5) - 0.5,
                    ],
                    [
                        fy * chip_to_image[1, 0],
                        fy * chip_to_image[1, 1],
                        fy * (chip_to_image[1, 2] - y0 + 0.5) - 0.5,
                    ],
                ]
            )
    return cv2.warpAffine(
        source,
        transform,
        (size, size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def derive_template(
    landmarks: Sequence[np.ndarray],
    reference_landmarks: Sequence[np.ndarray],
    reference_template: np.ndarray,
) -> np.ndarray:
    """Where one scheme's points fall in a chip defined for another scheme.

    For each face, the similarity taking ``reference_landmarks`` onto
    ``reference_template`` is applied to ``landmarks`` (the other detector's
    points on the same face); the mean over faces is the template. Returns
    (5, 2) float32 chip pixels.
    """
    mapped = []
    for points, reference in zip(landmarks, reference_landmarks, strict=True):
        transform = similarity_transform(reference, reference_template)
        mapped.append(np.hstack([points, np.ones((5, 1))]) @ transform.T)
    return np.mean(mapped, axis=0).astype(np.float32)
