"""dlib's ResNet run by PyTorch (the GPU backend), checked against dlib itself.

These need PyTorch, which the default test run does not install, so they are
deselected by default (markers ``torch`` and ``gpu`` in pyproject.toml). Run
them where PyTorch is installed with ``pytest -m "torch and not gpu"`` (on the CPU) or, on an
NVIDIA machine, ``pytest -m "torch or gpu"`` (tests marked ``gpu`` fail
without CUDA rather than pass vacuously).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import onnxruntime
import pytest

from watchkeeper.config import InferenceConfig
from watchkeeper.errors import ModelError
from watchkeeper.models.registry import ModelRegistry
from watchkeeper.vision.embedding import FaceEmbedder, create_embedder

pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def torch() -> Any:
    import torch

    return torch


@pytest.fixture(scope="module")
def device(torch: Any) -> str:
    """The GPU where there is one, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_embedder(registry: ModelRegistry, device: str, precision: str) -> FaceEmbedder:
    inference = InferenceConfig(backend="torch", device=device, precision=precision)
    return create_embedder("dlib-resnet-v1", registry, inference)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("precision", ["float32", "tf32", "float16"])
def test_pytorch_embeddings_match_dlib_on_lfw_faces(
    registry: ModelRegistry,
    device: str,
    precision: str,
    lfw_chips: list[np.ndarray],
    lfw_reference_vectors: np.ndarray,
) -> None:
    embedder = torch_embedder(registry, device, precision)
    actual = np.concatenate(
        [embedder.embed_raw(lfw_chips[i : i + 64]) for i in range(0, len(lfw_chips), 64)]
    )
    assert actual.shape == lfw_reference_vectors.shape == (220, 128)
    assert actual.dtype == np.float32
    agreement = cosines(actual, lfw_reference_vectors)
    difference = np.abs(actual - lfw_reference_vectors).max()
    assert agreement.min() >= 0.9999, f"min cosine {agreement.min()}, max |diff| {difference}"
    if precision == "float32" or device == "cpu":
        assert difference < 1e-4, f"max |diff| {difference}"


def test_flip_averaging_on_the_device_gives_the_onnx_embedders_vectors(
    registry: ModelRegistry,
    device: str,
    dlib_embedder: FaceEmbedder,
    lfw_chips: list[np.ndarray],
) -> None:
    embedder = torch_embedder(registry, device, "float32")
    chips = lfw_chips[:24]
    on_device = embedder.embed(chips).vectors
    expected = dlib_embedder.embed(chips).vectors  # onnxruntime, mirrors made on the CPU
    assert np.min(np.sum(on_device * expected, axis=1)) >= 0.9999
    # Without the mirror images the vectors are measurably different, so the test
    # above does check that the mirrors were made, and made left-right.
    plain = embedder.embed_raw(chips)
    plain /= np.linalg.norm(plain, axis=1, keepdims=True)
    assert np.min(np.sum(plain * expected, axis=1)) < 0.9999
    upside_down = embedder.embed([np.ascontiguousarray(c[::-1]) for c in chips]).vectors
    assert np.max(np.sum(upside_down * expected, axis=1)) < 0.99
    swapped = embedder.embed([np.ascontiguousarray(c[..., ::-1]) for c in chips]).vectors
    assert np.min(np.sum(swapped * expected, axis=1)) < 0.999, "chips are read as BGR"


def test_batches_of_any_size_give_the_same_vectors(
    registry: ModelRegistry, device: str, lfw_chips: list[np.ndarray]
) -> None:
    embedder = torch_embedder(registry, device, "float32")
    single = np.concatenate([embedder.embed_raw([chip]) for chip in lfw_chips[:5]])
    # 3 chips, then more than one chunk of CHUNK_PASSES (the last one padded), then 5.
    embedder.embed_raw(lfw_chips[5:8])
    large = embedder.embed_raw(lfw_chips * 2)
    again = embedder.embed_raw(lfw_chips[:5])
    np.testing.assert_allclose(large[:5], single, atol=1e-4)
    np.testing.assert_allclose(large[220:225], single, atol=1e-4)
    np.testing.assert_allclose(again, single, atol=1e-4)
    assert embedder.embed([]).vectors.shape == (0, 128)


def test_pytorch_on_the_cpu_is_named_as_such(
    registry: ModelRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="watchkeeper.vision.embedding"):
        embedder = torch_embedder(registry, "cpu", "float16")
    assert "on the CPU" in embedder.runtime
    assert f"embedder dlib-resnet-v1@1 on {embedder.runtime}" in caplog.text


@pytest.mark.gpu
def test_on_a_gpu_machine_auto_runs_on_the_gpu_and_says_so(
    registry: ModelRegistry, torch: Any, caplog: pytest.LogCaptureFixture
) -> None:
    assert torch.cuda.is_available(), "tests marked gpu need PyTorch with CUDA and a GPU"
    with caplog.at_level(logging.INFO, logger="watchkeeper.vision.embedding"):
        embedder = create_embedder("dlib-resnet-v1", registry)
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        assert "CUDAExecutionProvider" in embedder.runtime  # onnxruntime-gpu comes first
    else:
        gpu = torch.cuda.get_device_name()
        assert embedder.runtime == f"PyTorch {torch.__version__} CUDA on {gpu}, float16"
    assert f"embedder dlib-resnet-v1@1 on {embedder.runtime}" in caplog.text
    assert "embeddings run on the CPU" not in caplog.text


def test_asking_for_a_gpu_pytorch_cannot_use_is_refused(
    registry: ModelRegistry, torch: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ModelError, match="PyTorch cannot use a GPU"):
        torch_embedder(registry, "cuda", "float16")
