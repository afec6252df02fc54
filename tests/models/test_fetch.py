"""`models fetch` against a local HTTP server: pinned checksums decide what is kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.data import MODELS
from tests.support.http_server import serve_folder
from tests.support.net import unused_port
from watchkeeper.errors import ModelError
from watchkeeper.models.fetch import fetch_model
from watchkeeper.models.registry import ModelRegistry

YUNET = "face_detection_yunet_2023mar.onnx"


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    folder = tmp_path / "mirror"
    folder.mkdir()
    return folder


def test_a_file_with_the_pinned_checksum_is_saved(mirror: Path, tmp_path: Path) -> None:
    (mirror / YUNET).write_bytes((MODELS / YUNET).read_bytes())
    target = tmp_path / "models"
    spec = ModelRegistry(target).spec("yunet-2023mar")
    seen: list[int] = []
    with serve_folder(mirror) as url:
        path = fetch_model(spec, target, mirror=url, progress=lambda done, _: seen.append(done))
    assert path == target / YUNET
    assert ModelRegistry(target).verified_path("yunet-2023mar") == path
    assert seen[-1] == spec.size_bytes
    assert sorted(p.name for p in target.iterdir()) == [YUNET]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"<html>not the model</html>", "does not match the pinned"),
        (b"x" * 300_000, "larger than the pinned"),
    ],
)
def test_a_file_with_another_checksum_is_refused_and_nothing_is_kept(
    mirror: Path, tmp_path: Path, content: bytes, message: str
) -> None:
    (mirror / YUNET).write_bytes(content)
    target = tmp_path / "models"
    spec = ModelRegistry(target).spec("yunet-2023mar")
    with serve_folder(mirror) as url, pytest.raises(ModelError, match=message):
        fetch_model(spec, target, mirror=url)
    assert list(target.iterdir()) == []


def test_a_refused_download_leaves_an_existing_good_file_alone(
    mirror: Path, tmp_path: Path
) -> None:
    target = tmp_path / "models"
    target.mkdir()
    good = (MODELS / YUNET).read_bytes()
    (target / YUNET).write_bytes(good)
    (mirror / YUNET).write_bytes(b"tampered")
    spec = ModelRegistry(target).spec("yunet-2023mar")
    with serve_folder(mirror) as url, pytest.raises(ModelError):
        fetch_model(spec, target, mirror=url)
    assert (target / YUNET).read_bytes() == good


def test_missing_file_on_server(mirror: Path, tmp_path: Path) -> None:
    spec = ModelRegistry(tmp_path).spec("yunet-2023mar")
    with serve_folder(mirror) as url, pytest.raises(ModelError, match="HTTP 404"):
        fetch_model(spec, tmp_path / "models", mirror=url)


def test_unreachable_server(tmp_path: Path) -> None:
    port = unused_port()
    spec = ModelRegistry(tmp_path).spec("yunet-2023mar")
    with pytest.raises(ModelError, match="cannot download yunet-2023mar"):
        fetch_model(spec, tmp_path / "models", mirror=f"http://127.0.0.1:{port}", timeout_s=5)


def test_only_web_and_file_urls_are_used(tmp_path: Path) -> None:
    spec = ModelRegistry(tmp_path).spec("yunet-2023mar")
    with pytest.raises(ModelError, match="only http"):
        fetch_model(spec, tmp_path, mirror="ftp://example.invalid/models")
