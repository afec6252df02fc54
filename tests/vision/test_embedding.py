"""Identity embedders: dlib's ResNet on real faces, the generic ONNX embedder on built models."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.support.data import lfw_photos
from watchkeeper.config import InferenceConfig
from watchkeeper.errors import ModelError
from watchkeeper.models.registry import InputConvention, ModelRegistry, ModelRole, ModelSpec
from watchkeeper.vision import embedding
from watchkeeper.vision.alignment import ARCFACE_CHIP, DLIB_CHIP, align
from watchkeeper.vision.detection import FaceDetector
from watchkeeper.vision.embedding import (
    DlibResNetEmbedder,
    FaceEmbedder,
    OnnxArcFaceEmbedder,
    OnnxDlibEmbedder,
    Runtime,
    choose_runtime,
    converted_model,
    converted_path,
    create_embedder,
    select_providers,
)
from watchkeeper.vision.images import read_image


def chips_of(detector: FaceDetector, name: str, count: int, layout=DLIB_CHIP) -> list[np.ndarray]:
    chips = []
    for path in lfw_photos(name)[:count]:
        image = read_image(path)
        centre = np.array(image.shape[1::-1]) / 2
        face = min(
            detector.detect(image),
            key=lambda f: np.linalg.norm((f.box[:2] + f.box[2:]) / 2 - centre),
        )
        chips.append(align(image, face, layout))
    return chips


def test_dlib_vectors_are_unit_float32_and_tagged(
    yunet: FaceDetector, dlib_embedder: FaceEmbedder
) -> None:
    embeddings = dlib_embedder.embed(chips_of(yunet, "Colin_Powell", 3))
    assert embeddings.model_id == "dlib-resnet-v1@1"
    assert embeddings.vectors.shape == (3, 128)
    assert embeddings.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings.vectors, axis=1), 1.0, atol=1e-5)


def test_dlib_batch_equals_one_by_one(yunet: FaceDetector, dlib_embedder: FaceEmbedder) -> None:
    chips = chips_of(yunet, "Tony_Blair", 3)
    batch = dlib_embedder.embed(chips).vectors
    single = np.concatenate([dlib_embedder.embed([c]).vectors for c in chips])
    np.testing.assert_allclose(batch, single, atol=1e-5)


def test_same_person_is_closer_than_other_people(
    yunet: FaceDetector, dlib_embedder: FaceEmbedder
) -> None:
    powell = dlib_embedder.embed(chips_of(yunet, "Colin_Powell", 4)).vectors
    others = dlib_embedder.embed(
        [chips_of(yunet, name, 1)[0] for name in ("Tony_Blair", "Serena_Williams", "Hu_Jintao")]
    ).vectors
    same = (powell @ powell.T)[np.triu_indices(4, 1)]
    different = powell @ others.T
    assert same.min() > different.max()


def test_no_chips_give_an_empty_batch(dlib_embedder: FaceEmbedder) -> None:
    assert dlib_embedder.embed([]).vectors.shape == (0, 128)


def linear_embedder_model(
    dim: int, batch: int | str = "N", side: int = 112
) -> tuple[bytes, np.ndarray]:
    """An ONNX model: global average pool per channel, then a fixed 3 x dim matrix.

    Its output can be computed by hand, which checks the input convention
    (channel order, mean, std, NCHW layout).
    """
    weights = np.random.default_rng(0).normal(size=(3, dim)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("MatMul", ["flat", "weights"], ["embedding"]),
        ],
        "linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, side, side])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, dim])],
        [numpy_helper.from_array(weights, "weights")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString(), weights


def onnx_spec(data: bytes, dim: int, convention: InputConvention) -> ModelSpec:
    return ModelSpec(
        name="linear-test",
        role=ModelRole.IDENTITY_EMBEDDER,
        version="1",
        licence="test",
        filename="linear-test.onnx",
        sha256=hashlib.sha256(data).hexdigest(),
        embedding_dim=dim,
        input_convention=convention,
    )


@pytest.mark.parametrize("batch", ["N", 1, 4])
@pytest.mark.parametrize(
    "convention",
    [
        InputConvention(channel_order="RGB", mean=127.5, std=127.5),
        InputConvention(channel_order="BGR", mean=0.0, std=1.0),
    ],
)
def test_onnx_embedder_follows_the_declared_input_convention(
    batch: int | str, convention: InputConvention
) -> None:
    data, weights = linear_embedder_model(dim=512, batch=batch)
    embedder = OnnxArcFaceEmbedder(onnx_spec(data, 512, convention), data)
    rng = np.random.default_rng(1)
    chips = [(rng.random((112, 112, 3)) * 255).astype(np.uint8) for _ in range(3)]
    result = embedder.embed(chips)
    assert result.vectors.shape == (3, 512)
    assert result.model_id == "linear-test@1"
    assert embedder.layout is ARCFACE_CHIP
    for chip, vector in zip(chips, result.vectors, strict=True):
        pixels = chip.astype(np.float64)
        if convention.channel_order == "RGB":
            pixels = pixels[:, :, ::-1]
        means = ((pixels - convention.mean) / convention.std).mean(axis=(0, 1))
        expected = means @ weights
        np.testing.assert_allclose(vector, expected / np.linalg.norm(expected), atol=1e-4)


SFACE = "sface-2021dec"


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_sface_in_batches_gives_the_official_files_vectors(
    yunet: FaceDetector, registry: ModelRegistry
) -> None:
    """The graph is prepared for batches (weights dropped from its inputs, a variable
    batch dimension): the vectors must be those of the official file, run as it is,
    one face at a time."""
    chips = [chip for name in ("Colin_Powell", "Tony_Blair", "Hu_Jintao") for chip in
             chips_of(yunet, name, 3, ARCFACE_CHIP)]  # fmt: skip
    embedder = create_embedder(SFACE, registry, InferenceConfig(device="cpu"))
    assert isinstance(embedder, OnnxArcFaceEmbedder)
    assert not embedder.spec.flip_average
    assert embedder.layout is ARCFACE_CHIP
    official = onnxruntime.InferenceSession(
        str(registry.verified_path(SFACE)), providers=["CPUExecutionProvider"]
    )
    inputs = [np.ascontiguousarray(c[..., ::-1].astype(np.float32).transpose(2, 0, 1)[None])
              for c in chips]  # fmt: skip
    reference = np.concatenate([official.run(None, {"data": x})[0] for x in inputs])
    batched = embedder.embed_raw(chips * 2)  # 18 chips: more than one network call
    assert batched.shape == (18, 128)
    assert _cosines(batched, np.concatenate([reference, reference])).min() >= 0.99999
    vectors = embedder.embed(chips).vectors
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    same = vectors[:3] @ vectors[:3].T
    others = vectors[:3] @ vectors[3:].T
    assert same[np.triu_indices(3, 1)].min() > others.max()


@pytest.mark.gpu
def test_sface_on_the_gpu_gives_the_cpus_vectors(
    yunet: FaceDetector, registry: ModelRegistry
) -> None:
    """With onnxruntime-gpu, SFace runs through the CUDA provider; its vectors must stay
    those of the CPU (cosine 0.9999 or more)."""
    chips = chips_of(yunet, "Colin_Powell", 4, ARCFACE_CHIP)
    gpu = create_embedder(SFACE, registry, InferenceConfig(device="cuda"))
    assert "CUDAExecutionProvider" in gpu.runtime
    cpu = create_embedder(SFACE, registry, InferenceConfig(device="cpu"))
    assert _cosines(gpu.embed_raw(chips), cpu.embed_raw(chips)).min() >= 0.9999


def test_onnx_model_with_another_input_size_is_refused() -> None:
    data, _ = linear_embedder_model(dim=128, side=128)
    with pytest.raises(ModelError, match="3 x 112 x 112"):
        OnnxArcFaceEmbedder(onnx_spec(data, 128, InputConvention()), data)


def test_a_file_that_is_not_onnx_is_refused() -> None:
    data = b"this is not a model"
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        OnnxArcFaceEmbedder(onnx_spec(data, 128, InputConvention()), data)


def test_a_declared_onnx_embedder_loads_through_the_registry(tmp_path: Path) -> None:
    data, _ = linear_embedder_model(dim=64)
    (tmp_path / "mine.onnx").write_bytes(data)
    (tmp_path / "models.toml").write_text(
        f"""
[[model]]
name = "mine"
role = "identity-embedder"
version = "3"
licence = "test"
filename = "mine.onnx"
sha256 = "{hashlib.sha256(data).hexdigest()}"
embedding_dim = 64
input_convention = {{ channel_order = "RGB", mean = 127.5, std = 128.0 }}
"""
    )
    embedder = create_embedder("mine", ModelRegistry(tmp_path))
    assert embedder.model_id == "mine@3"
    assert embedder.embed([np.zeros((112, 112, 3), np.uint8)]).vectors.shape == (1, 64)


@pytest.mark.parametrize(
    ("device", "available", "chosen"),
    [
        ("cpu", ["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"]),
        ("auto", ["CPUExecutionProvider"], ["CPUExecutionProvider"]),
        (
            "auto",
            ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
            ["CUDAExecutionProvider", "CPUExecutionProvider"],
        ),
        (
            "cuda",
            ["CUDAExecutionProvider", "CPUExecutionProvider"],
            ["CUDAExecutionProvider", "CPUExecutionProvider"],
        ),
    ],
)
def test_execution_providers_follow_the_device_setting(
    device: str, available: list[str], chosen: list[str]
) -> None:
    assert select_providers(device, available) == chosen


CPU_ONLY = ["CPUExecutionProvider"]
WITH_CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]
NO_TORCH, TORCH_CPU, TORCH_CUDA = None, False, True


@pytest.mark.parametrize(
    ("backend", "device", "providers", "torch", "chosen"),
    [
        ("auto", "auto", CPU_ONLY, NO_TORCH, Runtime("onnxruntime", "cpu")),
        ("auto", "auto", CPU_ONLY, TORCH_CPU, Runtime("onnxruntime", "cpu")),
        ("auto", "auto", CPU_ONLY, TORCH_CUDA, Runtime("torch", "cuda")),
        ("auto", "auto", WITH_CUDA, TORCH_CUDA, Runtime("onnxruntime", "cuda")),
        ("auto", "cuda", CPU_ONLY, TORCH_CUDA, Runtime("torch", "cuda")),
        ("auto", "cpu", WITH_CUDA, TORCH_CUDA, Runtime("onnxruntime", "cpu")),
        ("onnxruntime", "auto", CPU_ONLY, TORCH_CUDA, Runtime("onnxruntime", "cpu")),
        ("onnxruntime", "cuda", WITH_CUDA, NO_TORCH, Runtime("onnxruntime", "cuda")),
        ("torch", "auto", WITH_CUDA, TORCH_CUDA, Runtime("torch", "cuda")),
        ("torch", "auto", CPU_ONLY, TORCH_CPU, Runtime("torch", "cpu")),
        ("torch", "cpu", CPU_ONLY, TORCH_CUDA, Runtime("torch", "cpu")),
        ("dlib", "auto", WITH_CUDA, TORCH_CUDA, Runtime("dlib", "cpu")),
    ],
)
def test_the_runtime_follows_the_settings_and_what_is_installed(
    backend: str, device: str, providers: list[str], torch: bool | None, chosen: Runtime
) -> None:
    inference = InferenceConfig(backend=backend, device=device)
    assert choose_runtime(inference, providers, lambda: torch) == chosen


@pytest.mark.parametrize(
    ("backend", "device", "providers", "torch", "message"),
    [
        ("auto", "cuda", CPU_ONLY, NO_TORCH, "install onnxruntime-gpu, or PyTorch with CUDA"),
        ("auto", "cuda", CPU_ONLY, TORCH_CPU, "install onnxruntime-gpu, or PyTorch with CUDA"),
        ("onnxruntime", "cuda", CPU_ONLY, TORCH_CUDA, "install onnxruntime-gpu"),
        ("torch", "auto", WITH_CUDA, NO_TORCH, "PyTorch is not installed"),
        ("torch", "cuda", CPU_ONLY, TORCH_CPU, "PyTorch cannot use a GPU"),
        ("dlib", "cuda", CPU_ONLY, TORCH_CUDA, "dlib's own code runs on the CPU only"),
    ],
)
def test_a_runtime_that_cannot_be_had_is_a_clear_error(
    backend: str, device: str, providers: list[str], torch: bool | None, message: str
) -> None:
    inference = InferenceConfig(backend=backend, device=device)
    with pytest.raises(ModelError, match=message):
        choose_runtime(inference, providers, lambda: torch)


def test_pytorch_is_only_imported_where_the_answer_matters() -> None:
    def probe() -> bool | None:
        raise AssertionError("PyTorch was probed")

    for inference in (InferenceConfig(device="cpu"), InferenceConfig(backend="onnxruntime")):
        assert choose_runtime(inference, CPU_ONLY, probe).backend == "onnxruntime"
    assert choose_runtime(InferenceConfig(), WITH_CUDA, probe) == Runtime("onnxruntime", "cuda")


def test_asking_for_cuda_without_a_gpu_runtime_is_a_clear_error(
    registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: CPU_ONLY)
    monkeypatch.setattr(embedding, "torch_cuda", lambda: None)
    with pytest.raises(ModelError, match="install onnxruntime-gpu"):
        create_embedder("dlib-resnet-v1", registry, InferenceConfig(device="cuda"))


def test_the_onnx_backend_gives_dlibs_vectors_and_says_where_it_runs(
    yunet: FaceDetector, registry: ModelRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="watchkeeper.vision.embedding"):
        onnx_embedder = create_embedder("dlib-resnet-v1", registry, InferenceConfig(threads=2))
    dlib_embedder = create_embedder("dlib-resnet-v1", registry, InferenceConfig(backend="dlib"))
    assert isinstance(onnx_embedder, OnnxDlibEmbedder)
    assert isinstance(dlib_embedder, DlibResNetEmbedder)
    assert onnx_embedder.model_id == dlib_embedder.model_id, "same vector space, same templates"
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("embedder")]
    assert "CPUExecutionProvider, 2 CPU thread(s)" in line
    # Chips are BGR like every image in Watchkeeper; both backends must read them alike.
    chips = chips_of(yunet, "Gray_Davis", 3) + chips_of(yunet, "Laura_Bush", 3)
    fast, reference = onnx_embedder.embed(chips).vectors, dlib_embedder.embed(chips).vectors
    assert np.min(np.sum(fast * reference, axis=1)) >= 0.9999
    swapped = onnx_embedder.embed([np.ascontiguousarray(c[..., ::-1]) for c in chips]).vectors
    assert np.min(np.sum(swapped * reference, axis=1)) < 0.999, "channel order matters"


def test_the_conversion_is_cached_verified_and_rebuilt_when_damaged(tmp_path: Path) -> None:
    models = ModelRegistry(tmp_path / "models")
    spec = models.spec("dlib-resnet-v1")
    built = converted_model(spec, models)
    assert built == converted_path(spec, models)
    assert hashlib.sha256(built.read_bytes()).hexdigest() == spec.onnx_sha256
    stamp = built.stat().st_mtime_ns
    assert converted_model(spec, models) == built
    assert built.stat().st_mtime_ns == stamp, "a verified conversion is reused"
    with built.open("r+b") as handle:  # one flipped byte in the weights
        handle.seek(built.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))
    assert converted_model(spec, models) == built
    assert hashlib.sha256(built.read_bytes()).hexdigest() == spec.onnx_sha256


def test_an_unwritable_models_folder_converts_in_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the models folder should be")
    models = ModelRegistry(blocker / "models")
    with caplog.at_level(logging.WARNING):
        built = converted_model(models.spec("dlib-resnet-v1"), models)
    assert isinstance(built, bytes)
    assert hashlib.sha256(built).hexdigest() == models.spec("dlib-resnet-v1").onnx_sha256
    assert "converting dlib-resnet-v1 to ONNX in memory" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
