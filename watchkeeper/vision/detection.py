"""Face detectors: each turns a BGR frame into :class:`FaceObservation` objects.

Two implementations share one small interface:

- :class:`YuNetDetector`, OpenCV's ``FaceDetectorYN`` with the YuNet ONNX file:
  fast, finds faces from about 12 px wide at detection resolution, gives eye
  centres, nose tip and mouth corners.
- :class:`DlibHogDetector`, dlib's HOG detector plus its 5-point landmark
  model: always installed from PyPI, slower, misses faces under about 40 px
  (with one upsampling step) and strong profiles.

Both detect on a copy of the frame downscaled to ``max_width`` and report
coordinates in full-resolution pixels.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod

import cv2
import dlib
import numpy as np

from watchkeeper.config import DetectionConfig
from watchkeeper.errors import ModelError
from watchkeeper.models.registry import ModelRegistry, ModelRole
from watchkeeper.vision.observation import FaceObservation, LandmarkScheme

log = logging.getLogger(__name__)

YUNET_MODEL = "yunet-2023mar"
DLIB_LANDMARKS_MODEL = "dlib-shape-predictor-5"

# OpenCV's DNN module warns on stderr about targets it ignores; errors still show.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


class FaceDetector(ABC):
    """Finds faces in a BGR uint8 image."""

    name: str
    scheme: LandmarkScheme
    default_width: int
    """Detection width when ``max_width`` is not configured (pixels)."""

    def __init__(self, config: DetectionConfig) -> None:
        self.config = config

    @property
    def width(self) -> int:
        """Frames wider than this are downscaled for detection (pixels)."""
        return self.config.max_width or self.default_width

    def detect(self, image: np.ndarray) -> list[FaceObservation]:
        """Faces in ``image`` (H, W, 3 BGR uint8), coordinates in its own pixels. Any
        shape is accepted: a wide, thin image keeps at least one row when downscaled."""
        scale = min(1.0, self.width / image.shape[1])
        if scale < 1.0:
            size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
            small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        else:
            small = image
        return self._detect(image, small, scale)

    @abstractmethod
    def _detect(self, image: np.ndarray, small: np.ndarray, scale: float) -> list[FaceObservation]:
        """Detect on ``small`` (``image`` resized by ``scale``); return full-size coordinates."""


class YuNetDetector(FaceDetector):
    name = "yunet"
    scheme = LandmarkScheme.EYES_NOSE_MOUTH
    default_width = 960

    def __init__(self, model: bytes, config: DetectionConfig) -> None:
        super().__init__(config)
        try:
            self._net = cv2.FaceDetectorYN.create(
                "onnx",
                np.frombuffer(model, np.uint8),
                np.zeros(0, np.uint8),
                (320, 320),
                config.score_threshold,
                config.nms_threshold,
                5000,
            )
        except cv2.error as exc:
            raise ModelError(f"YuNet model could not be loaded: {exc}") from exc
        self._input_size: tuple[int, int] = (320, 320)

    def _detect(self, image: np.ndarray, small: np.ndarray, scale: float) -> list[FaceObservation]:
        size = (small.shape[1], small.shape[0])
        if size != self._input_size:
            self._net.setInputSize(size)
            self._input_size = size
        _, rows = self._net.detect(small)
        if rows is None:
            return []
        observations = []
        for row in rows:
            x, y, w, h = row[:4] / scale
            landmarks = (row[4:14].reshape(5, 2) / scale).astype(np.float32)
            observations.append(
                FaceObservation(
                    box=np.array([x, y, x + w, y + h], np.float32),
                    landmarks=landmarks,
                    scheme=self.scheme,
                    score=float(row[14]),
                )
            )
        return observations


class DlibHogDetector(FaceDetector):
    """dlib's frontal HOG detector with the 5-point landmark model.

    HOG reports an SVM margin, not a probability; it is mapped to (0, 1) with a
    logistic function so that the quality gate can treat both detectors alike
    (margin 0, the detector's own threshold, becomes 0.5; margin 1, 0.73).
    """

    name = "hog"
    scheme = LandmarkScheme.DLIB5
    default_width = 1280

    def __init__(self, landmarks_path: str, config: DetectionConfig) -> None:
        super().__init__(config)
        self._detector = dlib.get_frontal_face_detector()
        try:
            self._landmarks = dlib.shape_predictor(landmarks_path)
        except RuntimeError as exc:
            raise ModelError(f"dlib landmark model could not be loaded: {exc}") from exc

    def _detect(self, image: np.ndarray, small: np.ndarray, scale: float) -> list[FaceObservation]:
        small_rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
        rects, margins, _ = self._detector.run(small_rgb, self.config.hog_upsample, 0.0)
        if not rects:
            return []
        rgb = small_rgb if scale == 1.0 else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        observations = []
        for rect, margin in zip(rects, margins, strict=True):
            box = np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], np.float32)
            box /= scale
            full_rect = dlib.rectangle(*(round(float(v)) for v in box))
            shape = self._landmarks(rgb, full_rect)
            landmarks = np.array([(p.x, p.y) for p in shape.parts()], np.float32)
            observations.append(
                FaceObservation(
                    box=box,
                    landmarks=landmarks,
                    scheme=self.scheme,
                    score=1.0 / (1.0 + math.exp(-margin)),
                )
            )
        return observations


def detector_backend(config: DetectionConfig, registry: ModelRegistry) -> str:
    """The detector ``config`` names, with 'auto' resolved: YuNet where its file is
    found, else dlib's HOG. (Its name, without loading it.)"""
    if config.backend != "auto":
        return config.backend
    return "yunet" if registry.locate(YUNET_MODEL) is not None else "hog"


def create_detector(config: DetectionConfig, registry: ModelRegistry) -> FaceDetector:
    """The configured detector; 'auto' prefers YuNet and falls back to HOG.

    A YuNet file that is present but fails its checksum is refused rather than
    silently replaced: the installation is wrong and the user must know.
    """
    backend = detector_backend(config, registry)
    if config.backend == "auto" and backend == "hog":
        log.info(
            "YuNet model not found in %s; using dlib's HOG detector, which misses faces "
            "under about 40 px (run `watchkeeper models fetch %s`)",
            registry.models_dir,
            YUNET_MODEL,
        )
    if backend == "yunet":
        return YuNetDetector(registry.verified_bytes(YUNET_MODEL, ModelRole.DETECTOR), config)
    path = registry.verified_path(DLIB_LANDMARKS_MODEL, ModelRole.LANDMARKS)
    return DlibHogDetector(str(path), config)
