"""dlib's face ResNet read by our own parser and run as ONNX, checked against dlib itself."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest

from tests.support.data import centred_face_chip, lfw_photos
from watchkeeper.errors import ModelError
from watchkeeper.models.dlib_onnx import (
    CONVERTER_VERSION,
    AddPrev,
    Affine,
    Conv,
    DlibResNet,
    FullyConnected,
    Pool,
    build_onnx,
    convert_dlib_resnet,
    read_dlib_resnet,
)
from watchkeeper.models.registry import ModelRegistry
from watchkeeper.vision.detection import FaceDetector

BATCH = 32


@pytest.fixture(scope="module")
def source(registry: ModelRegistry) -> Path:
    return registry.verified_path("dlib-resnet-v1")


@pytest.fixture(scope="module")
def network(source: Path) -> DlibResNet:
    return read_dlib_resnet(source)


@pytest.fixture(scope="module")
def converted(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The conversion, once for the module."""
    return convert_dlib_resnet(source, tmp_path_factory.mktemp("onnx") / "dlib-resnet-v1.onnx")


@pytest.fixture(scope="module")
def session(converted: Path) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(converted), options, providers=["CPUExecutionProvider"])


def onnx_embeddings(session: onnxruntime.InferenceSession, chips: list[np.ndarray]) -> np.ndarray:
    rgb = np.stack([chip[:, :, ::-1] for chip in chips])
    parts = [session.run(None, {"chips": rgb[i : i + BATCH]})[0] for i in range(0, len(rgb), BATCH)]
    return np.concatenate(parts)


def test_the_parsed_network_is_dlibs_anet_type(network: DlibResNet) -> None:
    convs = network.layers_of(Conv)
    assert len(convs) == 29
    assert convs[0].weights.shape == (32, 3, 7, 7)
    assert (convs[0].stride, convs[0].padding) == ((2, 2), (0, 0))
    filters = [conv.weights.shape[0] for conv in convs]
    assert [filters.count(n) for n in (32, 64, 128, 256)] == [7, 8, 6, 8]
    assert all(c.padding == ((0, 0) if c.stride == (2, 2) else (1, 1)) for c in convs[1:])
    assert len(network.layers_of(Affine)) == 29
    assert len(network.layers_of(AddPrev)) == 14
    assert [(p.kind, p.window) for p in network.layers_of(Pool)] == [
        ("max", (3, 3)),
        ("avg", (2, 2)),
        ("avg", (2, 2)),
        ("avg", (2, 2)),
        ("avg", (2, 2)),
        ("avg", (0, 0)),
    ]
    (fc,) = network.layers_of(FullyConnected)
    assert fc.weights.shape == (256, 128)
    assert fc.bias is None
    assert network.embedding_dim == 128
    assert (network.input.rows, network.input.columns) == (150, 150)
    np.testing.assert_allclose(network.input.mean_rgb, (122.782, 117.001, 104.298), atol=1e-4)
    assert network.loss_margin == pytest.approx(0.04)
    assert network.loss_distance_threshold == pytest.approx(0.6)


def test_down_sampling_residuals_add_tensors_of_different_shapes(network: DlibResNet) -> None:
    shapes = [
        (node.shape, [network.nodes[i].shape for i in node.inputs])
        for node in network.nodes
        if isinstance(node.layer, AddPrev)
        and len({network.nodes[i].shape for i in node.inputs}) > 1
    ]
    # (output, [pooled shortcut, strided block]): fewer channels in the shortcut, and
    # at the two 256-wide levels the pooled shortcut is larger than the block's output.
    assert shapes == [
        ((64, 17, 17), [(32, 17, 17), (64, 17, 17)]),
        ((128, 8, 8), [(64, 8, 8), (128, 8, 8)]),
        ((256, 4, 4), [(128, 4, 4), (256, 3, 3)]),
        ((256, 2, 2), [(256, 2, 2), (256, 1, 1)]),
    ]


def test_onnx_embeddings_match_dlib_on_lfw_faces(
    lfw_chips: list[np.ndarray],
    lfw_reference_vectors: np.ndarray,
    session: onnxruntime.InferenceSession,
) -> None:
    chips, expected = lfw_chips, lfw_reference_vectors
    actual = onnx_embeddings(session, chips)
    assert actual.shape == expected.shape == (len(chips), 128) == (220, 128)
    assert actual.dtype == np.float32
    cosine = (actual * expected).sum(1) / (
        np.linalg.norm(actual, axis=1) * np.linalg.norm(expected, axis=1)
    )
    difference = np.abs(actual - expected).max()
    assert cosine.min() >= 0.9999, f"min cosine {cosine.min()}, max |diff| {difference}"
    assert difference < 1e-4, f"max |diff| {difference}"


def test_a_batch_gives_what_single_chips_give(
    yunet: FaceDetector, session: onnxruntime.InferenceSession
) -> None:
    chips = [centred_face_chip(yunet, path) for path in lfw_photos("Colin_Powell")[:4]]
    assert all(chip is not None for chip in chips)
    batch = onnx_embeddings(session, chips)
    single = np.concatenate([onnx_embeddings(session, [chip]) for chip in chips])
    np.testing.assert_allclose(batch, single, atol=1e-5)


def test_conversion_is_deterministic_and_self_describing(
    source: Path, network: DlibResNet, converted: Path, tmp_path: Path, registry: ModelRegistry
) -> None:
    again = convert_dlib_resnet(source, tmp_path / "again.onnx")
    assert again.read_bytes() == converted.read_bytes()
    pinned = registry.spec("dlib-resnet-v1").sha256
    assert build_onnx(network, pinned) == converted.read_bytes()
    assert list(tmp_path.iterdir()) == [again]  # no temporary file left behind

    model = onnx.load(str(converted))
    onnx.checker.check_model(model)
    assert model.producer_name == "watchkeeper"
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    metadata = {p.key: p.value for p in model.metadata_props}
    assert metadata["source_file"] == "dlib_face_recognition_resnet_model_v1.dat"
    assert metadata["source_sha256"] == pinned
    assert "150x150 RGB uint8, NHWC" in metadata["input"]
    assert metadata["normalisation"].startswith("(pixel - mean_rgb) / 256")
    assert "122.78" in metadata["mean_rgb"]
    assert metadata["output_dim"] == "128"
    assert metadata["converter_version"] == CONVERTER_VERSION
    (chips,), (embeddings,) = model.graph.input, model.graph.output
    assert chips.name == "chips"
    assert chips.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = chips.type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["N", 150, 150, 3]
    assert embeddings.name == "embeddings"
    assert [d.dim_param or d.dim_value for d in embeddings.type.tensor_type.shape.dim] == [
        "N",
        128,
    ]


def _replace(old: bytes, new: bytes) -> Callable[[bytes], bytes]:
    def edit(data: bytes) -> bytes:
        assert old in data
        return data.replace(old, new, 1)

    return edit


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda data: b"", "file ends", id="empty"),
        pytest.param(lambda data: data[: len(data) // 2], "file ends", id="truncated"),
        pytest.param(lambda data: data[:-1], "file ends", id="last-byte-missing"),
        pytest.param(lambda data: data + b"\x00", "1 unexpected byte", id="extra-byte"),
        pytest.param(
            lambda data: np.random.default_rng(0).bytes(len(data) // 100),
            "not a dlib face recognition ResNet",
            id="random-bytes",
        ),
        pytest.param("landmarks", "malformed integer", id="landmark-model"),
        pytest.param(
            _replace(b"\x01\x05con_4", b"\x01\x05con_9"), "found 'con_9' where", id="con-version"
        ),
        pytest.param(
            _replace(b"\x01\x05relu_", b"\x01\x05tanh_"), "found 'tanh_' where", id="layer-type"
        ),
        pytest.param(
            lambda data: b"\x01\x02" + data[2:], "unknown version 2 of the loss layer", id="loss"
        ),
    ],
)
def test_files_that_are_not_the_network_are_refused_and_nothing_is_written(
    make: Callable[[bytes], bytes] | str,
    message: str,
    source: Path,
    registry: ModelRegistry,
    tmp_path: Path,
) -> None:
    if make == "landmarks":
        bad = registry.verified_path("dlib-shape-predictor-5")
    else:
        assert callable(make)
        bad = tmp_path / "bad.dat"
        bad.write_bytes(make(source.read_bytes()))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ModelError, match=message):
        convert_dlib_resnet(bad, out / "model.onnx")
    with pytest.raises(ModelError, match=message):
        read_dlib_resnet(bad)
    assert list(out.iterdir()) == []


def test_a_failed_write_leaves_no_partial_file(source: Path, tmp_path: Path) -> None:
    taken = tmp_path / "model.onnx"
    taken.mkdir()  # a folder where the file should go: the final rename fails
    with pytest.raises(ModelError, match="cannot write"):
        convert_dlib_resnet(source, taken)
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    assert taken.is_dir()
    assert list(taken.iterdir()) == []


def test_a_missing_file_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read"):
        read_dlib_resnet(tmp_path / "missing.dat")


def test_every_weight_is_in_the_model(network: DlibResNet) -> None:
    parameters = sum(
        layer.weights.size + layer.bias.size for layer in network.layers_of(Conv)
    ) + sum(layer.gamma.size + layer.beta.size for layer in network.layers_of(Affine))
    parameters += network.layers_of(FullyConnected)[0].weights.size
    data = build_onnx(network, hashlib.sha256(b"").hexdigest())
    assert len(data) > 4 * parameters  # every float32 weight is in the model
