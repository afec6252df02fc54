"""The quality gate on synthetic landmarks with known pose and on real chips."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from tests.support.data import lfw_photos
from watchkeeper.config import QualityConfig
from watchkeeper.vision.alignment import DLIB_CHIP
from watchkeeper.vision.detection import FaceDetector
from watchkeeper.vision.images import read_image
from watchkeeper.vision.observation import FaceObservation, LandmarkScheme
from watchkeeper.vision.quality import assess_geometry, estimate_pose, gate, sharpness


def yunet_face(
    interocular: float = 40.0,
    yaw_deg: float = 0.0,
    pitch_deg: float = 0.0,
    roll_deg: float = 0.0,
    score: float = 0.95,
) -> FaceObservation:
    """Landmarks of a rigid model head (the one the pose estimate assumes), posed."""
    depth, drop = 0.55, 0.57
    # x right, y down, z toward the camera; units of inter-ocular distance.
    points = np.array(
        [[-0.5, 0, 0], [0.5, 0, 0], [0, drop, depth], [-0.4, 1.0, 0.2], [0.4, 1.0, 0.2]]
    )
    yaw, pitch, roll = (math.radians(a) for a in (yaw_deg, pitch_deg, roll_deg))
    turn = np.array(
        [[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]]
    )
    nod = np.array(
        [[1, 0, 0], [0, math.cos(pitch), math.sin(pitch)], [0, -math.sin(pitch), math.cos(pitch)]]
    )
    tilt = np.array(
        [[math.cos(roll), -math.sin(roll), 0], [math.sin(roll), math.cos(roll), 0], [0, 0, 1]]
    )
    posed = points @ (tilt @ turn @ nod).T
    # Scale so that the frontal inter-ocular distance is `interocular` pixels.
    landmarks = (posed[:, :2] * interocular + [200, 200]).astype(np.float32)
    box = np.array([150, 150, 250, 270], np.float32)
    return FaceObservation(box, landmarks, LandmarkScheme.EYES_NOSE_MOUTH, score)


@pytest.mark.parametrize(
    ("yaw", "pitch", "roll"),
    [(0, 0, 0), (30, 0, 0), (-40, 0, 0), (0, 20, 0), (0, -25, 0), (0, 0, 25), (20, 15, -10)],
)
def test_pose_estimate_recovers_the_model_pose(yaw: float, pitch: float, roll: float) -> None:
    pose = estimate_pose(yunet_face(yaw_deg=yaw, pitch_deg=pitch, roll_deg=roll))
    assert pose.yaw == pytest.approx(yaw, abs=6)
    assert pose.pitch == pytest.approx(pitch, abs=6)
    assert pose.roll == pytest.approx(roll, abs=6)


@pytest.mark.parametrize(
    ("face", "reason"),
    [
        (yunet_face(interocular=8), "too small"),
        (yunet_face(yaw_deg=60), "turned away"),
        (yunet_face(pitch_deg=55), "tilted"),
        (yunet_face(score=0.5), "uncertain detection"),
    ],
)
def test_geometry_failures_give_their_reason(face: FaceObservation, reason: str) -> None:
    report = assess_geometry(face, QualityConfig())
    assert not report.kept
    assert len(report.reasons) == 1
    assert report.reasons[0].startswith(reason)


def test_a_good_frontal_face_is_kept_with_full_geometry_score() -> None:
    report = assess_geometry(yunet_face(interocular=50, score=1.0), QualityConfig())
    assert report.kept
    assert report.reasons == ()
    assert report.score == pytest.approx(1.0, abs=0.01)


def test_score_falls_with_size_and_turn() -> None:
    config = QualityConfig()
    big = assess_geometry(yunet_face(interocular=40), config).score
    small = assess_geometry(yunet_face(interocular=20), config).score
    turned = assess_geometry(yunet_face(interocular=40, yaw_deg=35), config).score
    assert big > small
    assert big > turned
    assert small == pytest.approx(big / 2, rel=0.05)


def test_blur_is_caught_on_the_aligned_chip(yunet: FaceDetector) -> None:
    image = read_image(lfw_photos("Joseph_Biden")[0])
    (face,) = yunet.detect(image)
    config = QualityConfig()
    sharp, _ = gate(image, face, DLIB_CHIP, config)
    blurred_image = cv2.GaussianBlur(image, (0, 0), 4)
    blurred, chip = gate(blurred_image, face, DLIB_CHIP, config)
    assert sharp.kept, sharp.reasons
    assert not blurred.kept
    assert blurred.reasons[0].startswith("blurred")
    assert blurred.score < sharp.score
    assert chip is not None
    assert sharpness(chip) < config.min_sharpness


def test_lfw_faces_mostly_pass(yunet: FaceDetector) -> None:
    """Press photos of frontal faces: the gate must not refuse the ordinary case."""
    config = QualityConfig()
    kept = total = 0
    for name in ("Joseph_Biden", "Donald_Trump", "Tony_Blair", "Serena_Williams", "Colin_Powell"):
        for path in lfw_photos(name)[:8]:
            image = read_image(path)
            for face in yunet.detect(image):
                if face.width > 60:
                    total += 1
                    kept += gate(image, face, DLIB_CHIP, config)[0].kept
    assert total >= 25
    assert kept / total >= 0.9
