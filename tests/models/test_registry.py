"""The model registry: lookup order, checksum refusal, closed set of roles."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.data import MODELS
from watchkeeper.config import DetectionConfig
from watchkeeper.errors import ModelError
from watchkeeper.models.registry import (
    BUILTIN_MODELS,
    Calibration,
    ModelRegistry,
    ModelRole,
    ModelSpec,
    save_calibration,
    sha256_of,
)
from watchkeeper.vision.detection import DlibHogDetector, YuNetDetector, create_detector
from watchkeeper.vision.embedding import create_embedder

YUNET = "face_detection_yunet_2023mar.onnx"


def corrupt_copy(source: Path, target: Path) -> None:
    data = bytearray(source.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))


def test_every_builtin_model_has_an_allowed_role_and_a_pinned_checksum() -> None:
    assert {spec.role for spec in BUILTIN_MODELS} <= set(ModelRole)
    assert set(ModelRole) == {
        ModelRole.DETECTOR,
        ModelRole.LANDMARKS,
        ModelRole.IDENTITY_EMBEDDER,
    }
    for spec in BUILTIN_MODELS:
        assert len(spec.sha256) == 64
        assert spec.licence


def test_the_68_point_landmark_model_is_unknown() -> None:
    """Its training data restricts commercial use: it must not be loadable."""
    registry = ModelRegistry(MODELS)
    assert all("68" not in spec.filename for spec in registry.specs())


def test_shared_and_packaged_models_are_found_and_verify() -> None:
    registry = ModelRegistry(MODELS)
    assert registry.verified_path("yunet-2023mar") == MODELS / YUNET
    # dlib's files come from the installed face_recognition_models package.
    for name in ("dlib-resnet-v1", "dlib-shape-predictor-5"):
        path = registry.verified_path(name)
        assert "face_recognition_models" in path.parts
        assert sha256_of(path) == registry.spec(name).sha256


def test_models_dir_is_searched_before_packages(tmp_path: Path) -> None:
    packaged = ModelRegistry(tmp_path).verified_path("dlib-shape-predictor-5")
    (tmp_path / packaged.name).write_bytes(packaged.read_bytes())
    assert ModelRegistry(tmp_path).locate("dlib-shape-predictor-5") == tmp_path / packaged.name


def test_a_file_with_the_wrong_checksum_is_refused(tmp_path: Path) -> None:
    corrupt_copy(MODELS / YUNET, tmp_path / YUNET)
    registry = ModelRegistry(tmp_path)
    with pytest.raises(
        ModelError, match=r"refusing model file .*sha256 [0-9a-f]{64} does not match"
    ):
        registry.verified_bytes("yunet-2023mar")
    status = registry.status("yunet-2023mar")
    assert status.present
    assert not status.verified


def test_a_wrong_file_in_models_dir_is_refused_not_skipped(tmp_path: Path) -> None:
    """A corrupt copy must not silently fall back to the packaged file."""
    packaged = ModelRegistry(tmp_path).verified_path("dlib-resnet-v1")
    corrupt_copy(packaged, tmp_path / packaged.name)
    with pytest.raises(ModelError, match="refusing"):
        create_embedder("dlib-resnet-v1", ModelRegistry(tmp_path))


def test_auto_detection_refuses_a_corrupt_yunet_rather_than_falling_back(tmp_path: Path) -> None:
    corrupt_copy(MODELS / YUNET, tmp_path / YUNET)
    with pytest.raises(ModelError, match="refusing"):
        create_detector(DetectionConfig(backend="auto"), ModelRegistry(tmp_path))


@pytest.mark.parametrize(("present", "expected"), [(True, YuNetDetector), (False, DlibHogDetector)])
def test_auto_detection_uses_yunet_when_present(
    tmp_path: Path, present: bool, expected: type
) -> None:
    if present:
        (tmp_path / YUNET).write_bytes((MODELS / YUNET).read_bytes())
    detector = create_detector(DetectionConfig(backend="auto"), ModelRegistry(tmp_path))
    assert isinstance(detector, expected)


def test_missing_model_names_where_it_looked_and_how_to_fetch(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"not found in .*watchkeeper models fetch sface-2021dec"):
        ModelRegistry(tmp_path).verified_path("sface-2021dec")


def test_a_model_used_in_the_wrong_role_is_refused() -> None:
    registry = ModelRegistry(MODELS)
    with pytest.raises(ModelError, match="is a detector, not an identity embedder"):
        create_embedder("yunet-2023mar", registry)


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(ModelError, match=r"known models: .*dlib-resnet-v1"):
        ModelRegistry(MODELS).spec("arcface-r100")


USER_MODEL = """
[[model]]
name = "my-arcface"
role = "{role}"
version = "1"
licence = "bought licence"
filename = "my-arcface.onnx"
sha256 = "{sha}"
embedding_dim = 512
input_convention = {{ channel_order = "RGB", mean = 127.5, std = 127.5 }}
"""


def test_users_can_declare_an_identity_embedder(tmp_path: Path) -> None:
    (tmp_path / "models.toml").write_text(USER_MODEL.format(role="identity-embedder", sha="a" * 64))
    spec = ModelRegistry(tmp_path).spec("my-arcface")
    assert spec.role is ModelRole.IDENTITY_EMBEDDER
    assert spec.model_id == "my-arcface@1"


DETECTOR_MODEL = """
[[model]]
name = "my-detector"
role = "detector"
version = "1"
licence = "MIT"
filename = "my-detector.onnx"
sha256 = "{sha}"
""".format(sha="b" * 64)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (DETECTOR_MODEL, "only identity embedders can be added"),
        (USER_MODEL.format(role="age-estimator", sha="a" * 64), "not a valid model declaration"),
        (USER_MODEL.format(role="identity-embedder", sha="xyz"), "not a valid model declaration"),
        ("[[model]]\nname = 'broken", "not a valid model declaration"),
    ],
)
def test_user_declarations_outside_the_rules_are_refused(
    tmp_path: Path, text: str, message: str
) -> None:
    (tmp_path / "models.toml").write_text(text)
    with pytest.raises(ModelError, match=message):
        ModelRegistry(tmp_path)


def test_embedder_fields_are_refused_on_other_roles() -> None:
    with pytest.raises(ValueError, match="identity embedders only"):
        ModelSpec(
            name="x",
            role=ModelRole.DETECTOR,
            version="1",
            licence="MIT",
            filename="x.onnx",
            sha256="0" * 64,
            embedding_dim=128,
        )


CALIBRATION = Calibration(fpir=1e-3, thresholds={10: 0.94, 1000: 0.96}, provenance="test")


@pytest.mark.parametrize(
    ("size", "threshold"),
    [(1, 0.94), (10, 0.94), (100, 0.95), (1000, 0.96), (5000, 0.96)],
)
def test_thresholds_are_interpolated_in_log_watchlist_size(size: int, threshold: float) -> None:
    assert CALIBRATION.threshold_for(size) == pytest.approx(threshold)


def test_a_saved_calibration_replaces_the_builtin_one(tmp_path: Path) -> None:
    builtin = ModelRegistry(tmp_path).spec("dlib-resnet-v1").calibration
    assert builtin is not None
    save_calibration(tmp_path, "dlib-resnet-v1", CALIBRATION)
    assert ModelRegistry(tmp_path).spec("dlib-resnet-v1").calibration == CALIBRATION
    assert ModelRegistry(MODELS).spec("dlib-resnet-v1").calibration == builtin


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('["dlib-resnet-v1"]\nfpir = 0.001\nthresholds = {}\nprovenance = "x"\n', "not a valid"),
        (
            '["yunet-2023mar"]\nfpir = 0.001\nthresholds = { "10" = 0.9 }\nprovenance = "x"\n',
            "is not an identity embedder",
        ),
        (
            '["no-such-model"]\nfpir = 0.001\nthresholds = { "10" = 0.9 }\nprovenance = "x"\n',
            "unknown model",
        ),
    ],
)
def test_broken_calibration_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "calibration.toml").write_text(text)
    with pytest.raises(ModelError, match=message):
        ModelRegistry(tmp_path)
