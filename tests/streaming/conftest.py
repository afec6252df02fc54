"""Fixtures shared by the streaming tests."""

from __future__ import annotations

import pytest

from tests.support.data import enrol_identities, other_identities
from watchkeeper.config import Settings
from watchkeeper.matching.gallery import Gallery
from watchkeeper.vision.detection import FaceDetector
from watchkeeper.vision.embedding import FaceEmbedder

BIDEN_THRESHOLD = 0.45
"""A cosine threshold (SFace) at which Biden's debate track matches and nobody else does:
his tracks score 0.50-0.55, the closest stranger about 0.38."""


@pytest.fixture(scope="package")
def biden_gallery(yunet: FaceDetector, face_embedder: FaceEmbedder, settings: Settings) -> Gallery:
    """Joe Biden (5 photos) and 20 other LFW people."""
    biden = enrol_identities(["Joseph_Biden"], 1, yunet, face_embedder, settings.quality, 5)
    others = enrol_identities(
        other_identities(40, {"Joseph_Biden", "Donald_Trump"}),
        20,
        yunet,
        face_embedder,
        settings.quality,
    )
    return Gallery.from_templates({**biden, **others})
