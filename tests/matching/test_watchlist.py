"""Enrolling a watchlist folder: photos refused with reasons, subjects never silently dropped."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.support.data import build_watchlist, lfw_photos
from watchkeeper.config import QualityConfig
from watchkeeper.errors import WatchlistError
from watchkeeper.matching.watchlist import PhotoRefused, enrolment_face, load_watchlist_folder
from watchkeeper.vision.detection import FaceDetector
from watchkeeper.vision.embedding import FaceEmbedder
from watchkeeper.vision.images import read_image


def test_each_subject_gets_one_template_per_usable_photo(
    tmp_path: Path, yunet: FaceDetector, dlib_embedder: FaceEmbedder, quality: QualityConfig
) -> None:
    folder = build_watchlist(tmp_path, ["Joseph_Biden", "Donald_Trump"], photos_per_subject=5)
    watchlist = load_watchlist_folder(folder, yunet, dlib_embedder, quality)
    assert watchlist.gallery.subjects == ("Donald_Trump", "Joseph_Biden")
    accepted = [o for o in watchlist.outcomes if o.accepted]
    assert len(watchlist.gallery) == len(accepted)
    assert {o.subject for o in accepted} == {"Donald_Trump", "Joseph_Biden"}
    assert len(watchlist.outcomes) == 6
    assert watchlist.gallery.model_id == dlib_embedder.model_id


def two_people() -> np.ndarray:
    return np.hstack(
        [read_image(lfw_photos("Joseph_Biden")[0]), read_image(lfw_photos("Donald_Trump")[0])]
    )


def tiny_face() -> np.ndarray:
    return cv2.resize(read_image(lfw_photos("Joseph_Biden")[0]), (60, 60))


def blurred() -> np.ndarray:
    return cv2.GaussianBlur(read_image(lfw_photos("Joseph_Biden")[0]), (0, 0), 5)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: np.full((300, 300, 3), 90, np.uint8), "no face found"),
        (two_people, "2 usable faces; an enrolment photo must show one person only"),
        (tiny_face, "too small"),
        (blurred, "blurred"),
    ],
    ids=["no-face", "two-faces", "too-small", "blurred"],
)
def test_unusable_photos_are_refused_with_their_reason(
    yunet: FaceDetector, dlib_embedder: FaceEmbedder, quality: QualityConfig, make, reason: str
) -> None:
    with pytest.raises(PhotoRefused) as refused:
        enrolment_face(make(), yunet, dlib_embedder, quality)
    assert any(r.startswith(reason) for r in refused.value.reasons), refused.value.reasons


def test_bad_photos_are_listed_and_good_ones_used(
    tmp_path: Path, yunet: FaceDetector, dlib_embedder: FaceEmbedder, quality: QualityConfig
) -> None:
    folder = build_watchlist(tmp_path, ["Joseph_Biden"], photos_per_subject=1)
    (folder / "Joseph_Biden" / "scan.jpg").write_bytes(b"not an image at all")
    cv2.imwrite(str(folder / "Joseph_Biden" / "group.png"), two_people())
    watchlist = load_watchlist_folder(folder, yunet, dlib_embedder, quality)
    refused = {o.path.name: o.reasons for o in watchlist.outcomes if not o.accepted}
    assert set(refused) == {"scan.jpg", "group.png"}
    assert "not a readable image" in refused["scan.jpg"][0]
    assert len(watchlist.gallery) == 1


def test_a_subject_without_a_usable_photo_stops_everything(
    tmp_path: Path, yunet: FaceDetector, dlib_embedder: FaceEmbedder, quality: QualityConfig
) -> None:
    folder = build_watchlist(tmp_path, ["Joseph_Biden"], photos_per_subject=1)
    (folder / "Nobody").mkdir()
    cv2.imwrite(str(folder / "Nobody" / "wall.jpg"), np.full((200, 200, 3), 90, np.uint8))
    with pytest.raises(
        WatchlistError, match=r"subject 'Nobody' has no usable face \(wall.jpg: no face found\)"
    ):
        load_watchlist_folder(folder, yunet, dlib_embedder, quality)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: d / "absent", "watchlist folder not found"),
        (lambda d: d, "has no subject sub-folders"),
        (lambda d: (d / "Empty").mkdir() or d, r"'Empty' has no usable face \(no image files\)"),
    ],
)
def test_unusable_watchlist_folders(
    tmp_path: Path,
    yunet: FaceDetector,
    dlib_embedder: FaceEmbedder,
    quality: QualityConfig,
    setup,
    message: str,
) -> None:
    with pytest.raises(WatchlistError, match=message):
        load_watchlist_folder(setup(tmp_path), yunet, dlib_embedder, quality)
