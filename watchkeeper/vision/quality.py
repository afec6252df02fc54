"""The quality gate: is a detected face good enough to say anything about identity?

Every observation gets a :class:`QualityReport` with a score in [0, 1] (used
to rank a track's best shots and to weight them when deciding) and the
reasons it was kept or dropped. The limits live in
:class:`watchkeeper.config.QualityConfig`.

Pose comes from landmark geometry alone, not from a model that looks at the
face: a rigid three-point head (eyes, nose point, mouth centre, with depths
from anthropometry and rest positions measured on LFW) is turned and nodded
over a grid of angles, and the pose whose projection best fits the observed
landmarks, in the frame of the eye line, is taken. The estimate is coarse
(about 5-10 degrees) but enough to drop profiles and strong tilts. dlib's
five points have no mouth, so for them looking down by more than about 25
degrees cannot be told from looking down by 25.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

from watchkeeper.config import QualityConfig
from watchkeeper.vision.alignment import ChipLayout, align
from watchkeeper.vision.observation import FaceObservation, LandmarkScheme


@dataclass(frozen=True)
class _HeadPoint:
    """A landmark of the rigid head model, in frontal inter-ocular distances."""

    drop: float
    """Below the eye line on a frontal face (median over LFW faces)."""
    depth: float
    """In front of the eyes' plane (anthropometric estimate)."""


_HEAD_MODELS: dict[LandmarkScheme, tuple[_HeadPoint, ...]] = {
    # Nose tip, then mouth centre.
    LandmarkScheme.EYES_NOSE_MOUTH: (_HeadPoint(drop=0.57, depth=0.55), _HeadPoint(1.02, 0.2)),
    # Base of the nose.
    LandmarkScheme.DLIB5: (_HeadPoint(drop=0.77, depth=0.35),),
}

_COARSE_STEP_DEG = 4.0
_FINE_STEP_DEG = 1.0
_GRID_LIMIT_DEG = 80.0


@dataclass(frozen=True)
class Pose:
    """Head pose estimated from landmarks, in degrees.

    yaw > 0: the nose points to the image right; pitch > 0: looking down;
    roll > 0: the eye line turns clockwise in the image.
    """

    yaw: float
    pitch: float
    roll: float


def _project(scheme: LandmarkScheme, yaw: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """Landmark offsets the head model shows at each (yaw, pitch), radians.

    Offsets are (sideways, drop) per head point in units of the observed
    inter-ocular distance, which shrinks as cos(yaw).
    """
    columns = []
    for point in _HEAD_MODELS[scheme]:
        drop = point.drop * np.cos(pitch) + point.depth * np.sin(pitch)
        depth = point.depth * np.cos(pitch) - point.drop * np.sin(pitch)
        columns += [depth * np.tan(yaw), drop / np.cos(yaw)]
    return np.stack(columns, axis=-1)


def _pitch_limit(scheme: LandmarkScheme) -> float:
    """Largest pitch searched, radians. One point cannot tell looking down from
    looking further down: keep the branch where its visible drop still grows."""
    points = _HEAD_MODELS[scheme]
    if len(points) == 1:
        return math.pi / 2 - math.atan2(points[0].drop, points[0].depth)
    return math.radians(_GRID_LIMIT_DEG)


@cache
def _coarse_grid(scheme: LandmarkScheme) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    angles = np.radians(np.arange(-_GRID_LIMIT_DEG, _GRID_LIMIT_DEG + 1e-9, _COARSE_STEP_DEG))
    yaw, pitch = (a.ravel() for a in np.meshgrid(angles, angles, indexing="ij"))
    keep = pitch <= _pitch_limit(scheme)
    yaw, pitch = yaw[keep], pitch[keep]
    return yaw, pitch, _project(scheme, yaw, pitch)


def _fit_pose(scheme: LandmarkScheme, observed: np.ndarray) -> tuple[float, float]:
    """Least-squares (yaw, pitch) in degrees: a coarse grid, then a fine one around
    its best point."""
    yaw, pitch, predicted = _coarse_grid(scheme)
    best = int(np.argmin(((predicted - observed) ** 2).sum(axis=1)))
    offsets = np.radians(np.arange(-_COARSE_STEP_DEG, _COARSE_STEP_DEG + 1e-9, _FINE_STEP_DEG))
    limit = math.radians(_GRID_LIMIT_DEG)
    fine_yaw, fine_pitch = (
        a.ravel()
        for a in np.meshgrid(
            np.clip(yaw[best] + offsets, -limit, limit),
            np.clip(pitch[best] + offsets, -limit, _pitch_limit(scheme)),
            indexing="ij",
        )
    )
    errors = ((_project(scheme, fine_yaw, fine_pitch) - observed) ** 2).sum(axis=1)
    best = int(np.argmin(errors))
    return math.degrees(fine_yaw[best]), math.degrees(fine_pitch[best])


def estimate_pose(observation: FaceObservation) -> Pose:
    """Coarse yaw (turn), pitch (nod) and roll (tilt) from the five landmarks."""
    right_eye, left_eye = observation.eye_centres()
    eye_line = left_eye - right_eye
    interocular = float(np.linalg.norm(eye_line))
    if interocular < 1e-6:
        return Pose(yaw=90.0, pitch=90.0, roll=0.0)
    along = eye_line / interocular
    down = np.array([-along[1], along[0]])
    middle = (right_eye + left_eye) / 2
    points = [observation.nose()]
    mouth = observation.mouth_centre()
    if mouth is not None:
        points.append(mouth)
    observed = (
        np.array([v for p in points for v in ((p - middle) @ along, (p - middle) @ down)])
        / interocular
    )
    yaw, pitch = _fit_pose(observation.scheme, observed)
    return Pose(yaw=yaw, pitch=pitch, roll=math.degrees(math.atan2(along[1], along[0])))


def sharpness(chip: np.ndarray) -> float:
    """Variance of the Laplacian of a chip's grey image (higher is sharper)."""
    grey = cv2.cvtColor(chip, cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


@dataclass(frozen=True)
class QualityReport:
    """How usable one observation is for identity, and why."""

    score: float
    """Product of the detector score and the size, sharpness and pose factors, in [0, 1]."""
    kept: bool
    reasons: tuple[str, ...]
    """Why it was dropped (empty when kept)."""
    interocular_px: float
    pose: Pose
    detector_score: float
    sharpness: float | None
    """None when the geometry already failed and no chip was made."""


def assess_geometry(observation: FaceObservation, config: QualityConfig) -> QualityReport:
    """The checks that need only the landmarks (size, pose, detector score).

    Cheap; run before alignment so that faces failing here are never aligned.
    """
    interocular = observation.interocular_px
    pose = estimate_pose(observation)
    reasons = []
    if interocular < config.min_interocular_px:
        reasons.append(
            f"too small: eyes {interocular:.1f} px apart, need {config.min_interocular_px:g}"
        )
    if abs(pose.yaw) > config.max_yaw_deg:
        reasons.append(f"turned away: yaw {pose.yaw:+.0f} deg, limit {config.max_yaw_deg:g}")
    if abs(pose.pitch) > config.max_pitch_deg:
        reasons.append(f"tilted: pitch {pose.pitch:+.0f} deg, limit {config.max_pitch_deg:g}")
    if observation.score < config.min_detector_score:
        reasons.append(
            f"uncertain detection: score {observation.score:.2f}, "
            f"need {config.min_detector_score:g}"
        )
    size_factor = min(1.0, interocular / config.good_interocular_px)
    pose_factor = math.cos(math.radians(min(abs(pose.yaw), 90.0))) * math.cos(
        math.radians(min(abs(pose.pitch), 90.0))
    )
    return QualityReport(
        score=observation.score * size_factor * pose_factor,
        kept=not reasons,
        reasons=tuple(reasons),
        interocular_px=interocular,
        pose=pose,
        detector_score=observation.score,
        sharpness=None,
    )


def assess(geometry: QualityReport, chip: np.ndarray, config: QualityConfig) -> QualityReport:
    """The full gate: a geometry report completed with the sharpness of the aligned chip."""
    chip_sharpness = sharpness(chip)
    reasons = list(geometry.reasons)
    if chip_sharpness < config.min_sharpness:
        reasons.append(f"blurred: sharpness {chip_sharpness:.0f}, need {config.min_sharpness:g}")
    sharp_factor = min(1.0, chip_sharpness / config.good_sharpness)
    return QualityReport(
        score=geometry.score * sharp_factor,
        kept=not reasons,
        reasons=tuple(reasons),
        interocular_px=geometry.interocular_px,
        pose=geometry.pose,
        detector_score=geometry.detector_score,
        sharpness=chip_sharpness,
    )


def gate(
    image: np.ndarray, observation: FaceObservation, layout: ChipLayout, config: QualityConfig
) -> tuple[QualityReport, np.ndarray | None]:
    """The whole gate for one face: the cheap geometry checks, then alignment and
    sharpness for faces that pass them. Returns the report and the aligned chip
    (``None`` when the geometry already failed)."""
    geometry = assess_geometry(observation, config)
    if not geometry.kept:
        return geometry, None
    chip = align(image, observation, layout)
    return assess(geometry, chip, config), chip
