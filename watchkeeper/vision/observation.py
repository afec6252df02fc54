"""The one interchange type every face detector converts into."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np


class LandmarkScheme(StrEnum):
    """Which five points a detector gives, in which order.

    "Right" and "left" are the subject's own: the subject's right eye is on the
    left of the image for a frontal face.
    """

    #: YuNet: right eye centre, left eye centre, nose tip, right and left mouth corners.
    EYES_NOSE_MOUTH = "eyes-nose-mouth"
    #: dlib's 5-point model: left eye outer and inner corner, right eye outer and
    #: inner corner, base of the nose.
    DLIB5 = "dlib5"


@dataclass(frozen=True, slots=True)
class FaceObservation:
    """A face found in one frame.

    Coordinates are pixels of the full-resolution frame, whatever resolution
    the detector ran at.
    """

    box: np.ndarray
    """(4,) float32: left, top, right, bottom."""
    landmarks: np.ndarray
    """(5, 2) float32 in the order given by ``scheme``."""
    scheme: LandmarkScheme
    score: float
    """Detector confidence in [0, 1]."""

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    def eye_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Subject's right and left eye centres (image left, image right when frontal)."""
        if self.scheme is LandmarkScheme.EYES_NOSE_MOUTH:
            return self.landmarks[0], self.landmarks[1]
        left = (self.landmarks[0] + self.landmarks[1]) / 2
        right = (self.landmarks[2] + self.landmarks[3]) / 2
        return right, left

    def nose(self) -> np.ndarray:
        """Nose tip (YuNet) or nose base (dlib)."""
        return (
            self.landmarks[2]
            if self.scheme is LandmarkScheme.EYES_NOSE_MOUTH
            else self.landmarks[4]
        )

    def mouth_centre(self) -> np.ndarray | None:
        """Midpoint of the mouth corners, where the scheme has them."""
        if self.scheme is LandmarkScheme.EYES_NOSE_MOUTH:
            return (self.landmarks[3] + self.landmarks[4]) / 2
        return None

    @property
    def interocular_px(self) -> float:
        right, left = self.eye_centres()
        return float(np.linalg.norm(left - right))

    def scaled(self, factor: float) -> FaceObservation:
        """The same observation with coordinates multiplied by ``factor``."""
        return FaceObservation(
            box=(self.box * factor).astype(np.float32),
            landmarks=(self.landmarks * factor).astype(np.float32),
            scheme=self.scheme,
            score=self.score,
        )
