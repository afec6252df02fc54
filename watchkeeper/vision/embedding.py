"""Identity embedders: aligned chips in, unit-length vectors tagged with a model id out.

- :class:`OnnxDlibEmbedder`: dlib's ResNet (128-d, 150x150 chip, shipped with
  ``face_recognition_models``) converted to ONNX on first use and run by ONNX
  Runtime: batched, on every core, or on an NVIDIA GPU with onnxruntime-gpu.
- :class:`DlibResNetEmbedder`: the same network in dlib itself. About 65-90 ms
  per face on one core; single-threaded, no GPU in the PyPI build. Kept as
  the fallback and as the reference the conversion is tested against.
- :class:`OnnxArcFaceEmbedder`: any ONNX model following the ArcFace
  convention (112x112 aligned input, NCHW, one embedding per image, any
  length), such as OpenCV's SFace, run with onnxruntime.

Vectors from different model ids live in different spaces; :class:`Embeddings`
carries the id so that nothing compares them by mistake.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import dlib
import numpy as np
import onnxruntime

from watchkeeper.config import InferenceConfig
from watchkeeper.errors import ModelError
from watchkeeper.models.registry import ModelRegistry, ModelRole, ModelSpec, sha256_of
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


log = logging.getLogger(__name__)

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"


def select_providers(device: str, available: Sequence[str]) -> list[str]:
    """ONNX Runtime execution providers for ``device`` ('auto', 'cpu' or 'cuda'),
    best first, given the providers this onnxruntime build offers."""
    if device == "cpu":
        return [CPU_PROVIDER]
    if CUDA_PROVIDER in available:
        return [CUDA_PROVIDER, CPU_PROVIDER]
    if device == "cuda":
        raise ModelError(
            "inference.device is 'cuda' but this onnxruntime has no CUDA provider "
            f"(it offers {', '.join(available)}); install onnxruntime-gpu instead of "
            "onnxruntime, with a matching CUDA runtime"
        )
    return [CPU_PROVIDER]


def cpu_threads(configured: int) -> int:
    """Threads for CPU inference: the configured number, else one per core."""
    return configured or os.cpu_count() or 1


def onnx_session(
    model: bytes | Path, providers: list[str], threads: int, name: str
) -> onnxruntime.InferenceSession:
    """An ONNX Runtime session with quiet logging and ``threads`` intra-op threads."""
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Idle pool threads would otherwise spin for a while after every batch, taking
    # cores from decoding and detection running beside them.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        source = str(model) if isinstance(model, Path) else model
        return onnxruntime.InferenceSession(source, options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"model {name!r} is not a loadable ONNX model: {exc}") from exc


class FaceEmbedder(ABC):
    """Turns aligned BGR chips into identity embeddings."""

    layout: ChipLayout
    runtime: str = ""
    """Where the network runs, for the start-up log line (provider, device, threads)."""

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
        return Embeddings(self.model_id, flip_average(*self.embed_raw_with_mirrors(chips)))

    @property
    @abstractmethod
    def dim(self) -> int:
        """Length of each vector."""

    @abstractmethod
    def embed_raw(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """The network's own (n, dim) float32 vectors for ``chips``: not normalised,
        no augmentation (evaluation composes these itself)."""

    def embed_raw_with_mirrors(self, chips: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Raw vectors of ``chips`` and of their mirror images, in one batch.

        Backends that can mirror on their device override this."""
        raw = self.embed_raw([*chips, *(mirror(chip) for chip in chips)])
        return raw[: len(chips)], raw[len(chips) :]


class DlibResNetEmbedder(FaceEmbedder):
    layout = DLIB_CHIP

    def __init__(self, spec: ModelSpec, path: str) -> None:
        super().__init__(spec)
        try:
            self._net = dlib.face_recognition_model_v1(path)
        except RuntimeError as exc:
            raise ModelError(f"dlib face model could not be loaded from {path}: {exc}") from exc
        self.runtime = f"dlib {dlib.__version__} on the CPU, one thread"

    @property
    def dim(self) -> int:
        return 128

    def embed_raw(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        rgb = [np.ascontiguousarray(chip[:, :, ::-1]) for chip in chips]
        return np.array(self._net.compute_face_descriptor(rgb), np.float32)


class OnnxDlibEmbedder(FaceEmbedder):
    """dlib's ResNet converted to ONNX (see :mod:`watchkeeper.models.dlib_onnx`): the
    graph takes 150x150 RGB uint8 chips and normalises them itself."""

    layout = DLIB_CHIP

    def __init__(self, spec: ModelSpec, model: bytes | Path, inference: InferenceConfig) -> None:
        super().__init__(spec)
        providers = select_providers(inference.device, onnxruntime.get_available_providers())
        threads = cpu_threads(inference.threads)
        self._session = onnx_session(model, providers, threads, spec.name)
        used = self._session.get_providers()[0]
        if used != providers[0]:
            raise ModelError(f"onnxruntime could not start {providers[0]} (it fell back to {used})")
        where = f"{threads} CPU thread(s)" if used == CPU_PROVIDER else "GPU"
        self.runtime = f"onnxruntime {onnxruntime.__version__} {used}, {where}"
        self._input = self._session.get_inputs()[0].name

    @property
    def dim(self) -> int:
        return 128

    def embed_raw(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        rgb = np.ascontiguousarray(np.stack(chips)[..., ::-1])
        return self._session.run(None, {self._input: rgb})[0]


def prepare_arcface_graph(model: bytes, name: str) -> bytes:
    """The ONNX graph of an ArcFace-convention embedder, made fit to run in batches.

    Files exported by older converters (SFace among them) list every weight as a
    graph input too, and some list inputs that no node reads. ONNX Runtime must then
    treat each weight as something a caller could replace, so it cannot fold the
    BatchNorms into the convolutions. Such inputs are dropped, and the batch
    dimension of the image input and of the output is made variable so that many
    faces run in one call. The arithmetic is untouched (same vectors: cosine
    0.9999999 on random input); on 2 cores SFace then takes about 12 ms a face in
    batches of 8 instead of 17 ms one at a time. Run only on bytes whose checksum
    was already verified.
    """
    import onnx  # Imported here: only ArcFace-convention embedders need it.

    try:
        graph_model = onnx.load_from_string(model)
    except Exception as exc:  # onnx raises protobuf's own errors
        raise ModelError(f"model {name!r} is not a loadable ONNX model: {exc}") from exc
    graph = graph_model.graph
    weights = {tensor.name for tensor in graph.initializer}
    read = {name for node in graph.node for name in node.input}
    images = [value for value in graph.input if value.name not in weights and value.name in read]
    if len(images) != 1:
        raise ModelError(
            f"model {name!r} must take one image input, not {[v.name for v in images]}"
        )
    del graph.input[:]
    graph.input.extend(images)
    for value in (graph.input[0], graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "faces"
    return graph_model.SerializeToString()


class OnnxArcFaceEmbedder(FaceEmbedder):
    """An ONNX identity model taking 112x112 ArcFace-aligned chips (such as SFace), run
    by ONNX Runtime in batches, on the CPU or an NVIDIA GPU through onnxruntime-gpu."""

    layout = ARCFACE_CHIP
    chunk = 16
    """Most chips per network call: ONNX Runtime keeps the memory of its largest call.
    SFace on 2 cores: 83 faces/s and 457 MB peak in calls of 16, against 78 faces/s and
    1,098 MB in calls of 64 (8 already gets most of the speed)."""

    def __init__(
        self, spec: ModelSpec, model: bytes, inference: InferenceConfig | None = None
    ) -> None:
        super().__init__(spec)
        if spec.input_convention is None:
            raise ModelError(f"model {spec.name!r} declares no input convention")
        inference = inference or InferenceConfig()
        self._convention = spec.input_convention
        providers = select_providers(inference.device, onnxruntime.get_available_providers())
        threads = cpu_threads(inference.threads)
        self._session = onnx_session(
            prepare_arcface_graph(model, spec.name), providers, threads, spec.name
        )
        used = self._session.get_providers()[0]
        if used != providers[0]:
            raise ModelError(f"onnxruntime could not start {providers[0]} (it fell back to {used})")
        where = f"{threads} CPU thread(s)" if used == CPU_PROVIDER else "GPU"
        self.runtime = f"onnxruntime {onnxruntime.__version__} {used}, {where}"
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        size = self.layout.size
        if len(inputs[0].shape) != 4 or list(inputs[0].shape[1:]) != [3, size, size]:
            raise ModelError(
                f"model {spec.name!r} must take one N x 3 x {size} x {size} input, "
                f"not {tuple(inputs[0].shape)}"
            )
        if len(outputs) < 1 or len(outputs[0].shape) != 2:
            raise ModelError(f"model {spec.name!r} must output one vector per image")
        self._input_name = inputs[0].name
        self._dim = outputs[0].shape[1]
        if not isinstance(self._dim, int):
            if spec.embedding_dim is None:
                raise ModelError(f"model {spec.name!r}: output length unknown")
            self._dim = spec.embedding_dim

    @property
    def dim(self) -> int:
        return int(self._dim)

    def embed_raw(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        batch = np.stack(chips).astype(np.float32)
        if self._convention.channel_order == "RGB":
            batch = batch[..., ::-1]
        batch = (batch - self._convention.mean) / self._convention.std
        batch = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
        parts = [
            self._session.run(None, {self._input_name: batch[start : start + self.chunk]})[0]
            for start in range(0, len(batch), self.chunk)
        ]
        return np.concatenate(parts)


@dataclass(frozen=True)
class Runtime:
    """Which code runs dlib's ResNet, and on what."""

    backend: Literal["onnxruntime", "torch", "dlib"]
    device: Literal["cpu", "cuda"]


def choose_runtime(
    inference: InferenceConfig, ort_providers: Sequence[str], torch_cuda: Callable[[], bool | None]
) -> Runtime:
    """The runtime for dlib's ResNet that ``inference`` asks for, given the providers of
    the installed onnxruntime and ``torch_cuda()``: None where PyTorch is not installed,
    else whether it can use a GPU (only called where the answer matters).

    'auto' prefers a GPU (onnxruntime-gpu, then PyTorch), then onnxruntime on the CPU.
    """
    backend, device = inference.backend, inference.device
    if backend == "dlib":
        if device == "cuda":
            raise ModelError("dlib's own code runs on the CPU only; use backend 'auto'")
        return Runtime("dlib", "cpu")
    if backend == "torch":
        return _torch_runtime(device, torch_cuda())
    if backend == "onnxruntime" or device == "cpu":
        providers = select_providers(device, ort_providers)
        return Runtime("onnxruntime", "cuda" if providers[0] == CUDA_PROVIDER else "cpu")
    if CUDA_PROVIDER in ort_providers:
        return Runtime("onnxruntime", "cuda")
    if torch_cuda():
        return Runtime("torch", "cuda")
    if device == "cuda":
        raise ModelError(
            "inference.device is 'cuda' but neither onnxruntime (it offers "
            f"{', '.join(ort_providers)}) nor PyTorch can use a GPU here; install "
            "onnxruntime-gpu, or PyTorch with CUDA, to match this machine's CUDA driver"
        )
    return Runtime("onnxruntime", "cpu")


def _torch_runtime(device: str, cuda: bool | None) -> Runtime:
    if cuda is None:
        raise ModelError("inference.backend is 'torch' but PyTorch is not installed")
    if device == "cuda" and not cuda:
        raise ModelError("inference.device is 'cuda' but PyTorch cannot use a GPU here")
    return Runtime("torch", "cuda" if cuda and device != "cpu" else "cpu")


def gpu_present() -> bool:
    """Whether this machine has an NVIDIA GPU (its driver's control device exists)."""
    return Path("/dev/nvidiactl").exists()


def torch_cuda() -> bool | None:
    """None where PyTorch is not installed, else whether it can use a GPU. Importing
    PyTorch takes seconds, so it is only tried where an NVIDIA GPU is present."""
    if importlib.util.find_spec("torch") is None:
        return None
    if not gpu_present():
        return False
    from watchkeeper.vision.torch_embedding import cuda_available

    return cuda_available()


def create_embedder(
    name: str, registry: ModelRegistry, inference: InferenceConfig | None = None
) -> FaceEmbedder:
    """The identity embedder called ``name`` in the registry, checksum verified, on the
    runtime ``inference`` asks for (one log line says which)."""
    inference = inference or InferenceConfig()
    spec = registry.spec(name)
    if spec.role is not ModelRole.IDENTITY_EMBEDDER:
        raise ModelError(f"model {name!r} is a {spec.role.value}, not an identity embedder")
    embedder: FaceEmbedder
    if spec.filename.endswith(".onnx"):
        embedder = OnnxArcFaceEmbedder(spec, registry.verified_bytes(name, spec.role), inference)
    elif spec.onnx_sha256 is None:
        embedder = DlibResNetEmbedder(spec, str(registry.verified_path(name, spec.role)))
    else:
        runtime = choose_runtime(inference, onnxruntime.get_available_providers(), torch_cuda)
        embedder = _dlib_network_embedder(spec, registry, inference, runtime)
    log.info("embedder %s on %s", embedder.model_id, embedder.runtime)
    if "CPU" in embedder.runtime and gpu_present() and inference.device != "cpu":
        log.warning(
            "an NVIDIA GPU is present but embeddings run on the CPU: install "
            "onnxruntime-gpu, or PyTorch with CUDA, to use it"
        )
    return embedder


def _dlib_network_embedder(
    spec: ModelSpec, registry: ModelRegistry, inference: InferenceConfig, runtime: Runtime
) -> FaceEmbedder:
    source = str(registry.verified_path(spec.name, spec.role))
    if runtime.backend == "dlib":
        return DlibResNetEmbedder(spec, source)
    if runtime.backend == "torch":
        from watchkeeper.vision.torch_embedding import TorchDlibEmbedder

        return TorchDlibEmbedder(spec, source, runtime.device, inference)
    try:
        model = converted_model(spec, registry)
    except ModelError as exc:
        if inference.backend == "onnxruntime":
            raise
        log.warning("%s; falling back to dlib's own (slower) code", exc)
        return DlibResNetEmbedder(spec, source)
    return OnnxDlibEmbedder(spec, model, inference)


def converted_path(spec: ModelSpec, registry: ModelRegistry) -> Path:
    """Where the ONNX conversion of a dlib model is cached: the models folder."""
    return registry.models_dir / (Path(spec.filename).stem + ".onnx")


def converted_model(spec: ModelSpec, registry: ModelRegistry) -> Path | bytes:
    """The ONNX conversion of a dlib embedder, built on first use and verified.

    The conversion is deterministic, so its checksum is pinned like any
    downloaded model's (``spec.onnx_sha256``). It is cached in the models
    folder; where that folder cannot be written the model is converted in
    memory (a few seconds at every start).
    """
    # Imported here: the converter needs the `onnx` package, which loading does not.
    from watchkeeper.models.dlib_onnx import build_onnx, convert_dlib_resnet, read_dlib_resnet

    destination = converted_path(spec, registry)
    if destination.is_file() and sha256_of(destination) == spec.onnx_sha256:
        return destination
    source = registry.verified_path(spec.name, spec.role)
    built: Path | bytes
    if _writable(destination.parent):
        built = convert_dlib_resnet(source, destination)
        digest = sha256_of(destination)
    else:
        log.warning(
            "cannot write to %s; converting %s to ONNX in memory at every start",
            destination.parent,
            spec.name,
        )
        built = build_onnx(read_dlib_resnet(source), spec.sha256)
        digest = hashlib.sha256(built).hexdigest()
    if digest != spec.onnx_sha256:
        if isinstance(built, Path):
            built.unlink(missing_ok=True)
        raise ModelError(
            f"the ONNX conversion of {spec.name} has sha256 {digest}, not the pinned "
            f"{spec.onnx_sha256}: the converter or the onnx package differs from the tested one"
        )
    return built


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)
