"""Identity embedders: aligned chips in, unit-length vectors tagged with a model id out.

- :class:`DlibResNetEmbedder`: dlib's ResNet (128-d, 150x150 chip), shipped
  with ``face_recognition_models``. About 90 ms per face on one core of a
  2-core cloud machine; it runs single-threaded inside dlib.
- :class:`OnnxArcFaceEmbedder`: any ONNX model following the ArcFace
  convention (112x112 aligned input, NCHW, one embedding per image, any
  length), such as OpenCV's SFace, run with onnxruntime.

Vectors from different model ids live in different spaces; :class:`Embeddings`
carries the id so that nothing compares them by mistake.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import dlib
import numpy as np
import onnxruntime

from watchkeeper.errors import ModelError
from watchkeeper.models.registry import ModelRegistry, ModelRole, ModelSpec
from watchkeeper.vision.alignment import ARCFACE_CHIP, DLIB_CHIP, ChipLayout


@dataclass(frozen=True)
class Embeddings:
    """Unit-length float32 vectors (one row per face) from one model."""

    model_id: str
    vectors: np.ndarray

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or self.vectors.dtype != np.float32:
            raise ValueError("embeddings must be a 2-D float32 array")

    def __len__(self) -> int:
        return len(self.vectors)


def normalise_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as float32 (zero rows stay zero)."""
    vectors = np.asarray(vectors, np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.float32(1e-12))


def mirror(chip: np.ndarray) -> np.ndarray:
    """The chip flipped left to right (a contiguous copy)."""
    return np.ascontiguousarray(chip[:, ::-1])


def flip_average(plain: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
    """Unit vectors of the mean of each face's own and mirrored unit vectors."""
    return normalise_rows(normalise_rows(plain) + normalise_rows(mirrored))


class FaceEmbedder(ABC):
    """Turns aligned BGR chips into identity embeddings."""

    layout: ChipLayout

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    @property
    def model_id(self) -> str:
        return self.spec.model_id

    def embed(self, chips: Sequence[np.ndarray]) -> Embeddings:
        """Embed ``chips`` (each ``layout.size`` square, BGR uint8) in one batch.

        For models whose spec asks for it, each chip's vector is averaged with
        its mirror image's (test-time flip augmentation), at twice the cost.
        """
        if not chips:
            return Embeddings(self.model_id, np.zeros((0, self.dim), np.float32))
        if not self.spec.flip_average:
            return Embeddings(self.model_id, normalise_rows(self.embed_raw(chips)))
        raw = self.embed_raw([*chips, *(mirror(chip) for chip in chips)])
        plain, mirrored = raw[: len(chips)], raw[len(chips) :]
        return Embeddings(self.model_id, flip_average(plain, mirrored))

    @property
    @abstractmethod
    def dim(self) -> int:
        """Length of each vector."""

    @abstractmethod
    def embed_raw(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """The network's own (n, dim) float32 vectors for ``chips``: not normalised,
        no augmentation (evaluation composes these itself)."""


class DlibResNetEmbedder(FaceEmbedder):
    layout = DLIB_CHIP

    def __init__(self, spec: ModelSpec, path: str) -> None:
        super().__init__(spec)
        try:
            self._net = dlib.face_recognition_model_v1(path)
        except RuntimeError as exc:
            raise ModelError(f"dlib face model could not be loaded from {path}: {exc}") from exc

    @property
    def dim(self) -> int:
        return 128

    def embed_raw(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        rgb = [np.ascontiguousarray(chip[:, :, ::-1]) for chip in chips]
        return np.array(self._net.compute_face_descriptor(rgb), np.float32)


class OnnxArcFaceEmbedder(FaceEmbedder):
    """An ONNX identity model taking 112x112 ArcFace-aligned chips."""

    layout = ARCFACE_CHIP

    def __init__(self, spec: ModelSpec, model: bytes) -> None:
        super().__init__(spec)
        if spec.input_convention is None:
            raise ModelError(f"model {spec.name!r} declares no input convention")
        self._convention = spec.input_convention
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        try:
            self._session = onnxruntime.InferenceSession(
                model, options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"model {spec.name!r} is not a loadable ONNX model: {exc}") from exc
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if (
            len(inputs) != 1
            or len(inputs[0].shape) != 4
            or list(inputs[0].shape[1:])
            != [
                3,
                self.layout.size,
                self.layout.size,
            ]
        ):
            raise ModelError(
                f"model {spec.name!r} must take one N x 3 x 112 x 112 input, "
                f"not {[tuple(i.shape) for i in inputs]}"
            )
        if len(outputs) < 1 or len(outputs[0].shape) != 2:
            raise ModelError(f"model {spec.name!r} must output one vector per image")
        self._input_name = inputs[0].name
        self._dim = outputs[0].shape[1]
        if not isinstance(self._dim, int):
            if spec.embedding_dim is None:
                raise ModelError(f"model {spec.name!r}: output length unknown")
            self._dim = spec.embedding_dim
        self._fixed_batch = inputs[0].shape[0] if isinstance(inputs[0].shape[0], int) else None

    @property
    def dim(self) -> int:
        return int(self._dim)

    def embed_raw(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        batch = np.stack(chips).astype(np.float32)
        if self._convention.channel_order == "RGB":
            batch = batch[..., ::-1]
        batch = (batch - self._convention.mean) / self._convention.std
        batch = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
        if self._fixed_batch is None:
            return self._session.run(None, {self._input_name: batch})[0]
        # A model exported with a fixed batch size runs in chunks, the last one padded.
        size = self._fixed_batch
        padded = np.zeros((-(-len(batch) // size) * size, *batch.shape[1:]), np.float32)
        padded[: len(batch)] = batch
        parts = [
            self._session.run(None, {self._input_name: padded[i : i + size]})[0]
            for i in range(0, len(padded), size)
        ]
        return np.concatenate(parts)[: len(batch)]


def create_embedder(name: str, registry: ModelRegistry) -> FaceEmbedder:
    """The identity embedder called ``name`` in the registry, checksum verified."""
    spec = registry.spec(name)
    if spec.role is not ModelRole.IDENTITY_EMBEDDER:
        raise ModelError(f"model {name!r} is a {spec.role.value}, not an identity embedder")
    if spec.filename.endswith(".onnx"):
        return OnnxArcFaceEmbedder(spec, registry.verified_bytes(name, spec.role))
    return DlibResNetEmbedder(spec, str(registry.verified_path(name, spec.role)))
