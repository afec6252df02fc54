"""Session fixtures over the real models and the shared data (see tests/support/data.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.data import MODELS
from watchkeeper.config import DetectionConfig, QualityConfig, Settings, load_settings
from watchkeeper.models.registry import ModelRegistry
from watchkeeper.vision.detection import DlibHogDetector, FaceDetector, create_detector
from watchkeeper.vision.embedding import FaceEmbedder, create_embedder


@pytest.fixture(scope="session")
def registry() -> ModelRegistry:
    return ModelRegistry(MODELS)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings(models_dir=MODELS)


@pytest.fixture(scope="session")
def yunet(registry: ModelRegistry) -> FaceDetector:
    return create_detector(DetectionConfig(backend="yunet"), registry)


@pytest.fixture(scope="session")
def hog(registry: ModelRegistry) -> FaceDetector:
    detector = create_detector(DetectionConfig(backend="hog"), registry)
    assert isinstance(detector, DlibHogDetector)
    return detector


@pytest.fixture(scope="session")
def dlib_embedder(registry: ModelRegistry) -> FaceEmbedder:
    return create_embedder("dlib-resnet-v1", registry)


@pytest.fixture(scope="session")
def quality() -> QualityConfig:
    return QualityConfig()


@pytest.fixture
def isolated_models(tmp_path: Path) -> Path:
    """A writable copy of the shared models folder."""
    folder = tmp_path / "models"
    shutil.copytree(MODELS, folder)
    return folder
