"""dlib's ResNet embedder run by PyTorch, on an NVIDIA GPU (or the CPU).

The GPU path for machines that have PyTorch with CUDA but not onnxruntime-gpu.
Chips are copied once into pinned host memory and uploaded as uint8 (a quarter
of float32's bytes); the BGR-to-RGB swap, the mirror images for flip averaging
and the normalisation all happen on the GPU. Imports PyTorch: import this
module only once PyTorch is known to be installed.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from watchkeeper.config import InferenceConfig
from watchkeeper.errors import ModelError
from watchkeeper.models.dlib_onnx import read_dlib_resnet
from watchkeeper.models.dlib_torch import DlibResNetModule
from watchkeeper.models.registry import ModelSpec
from watchkeeper.vision.alignment import DLIB_CHIP
from watchkeeper.vision.embedding import FaceEmbedder

PRECISIONS = {"float32": torch.float32, "tf32": torch.float32, "float16": torch.float16}


def cuda_available() -> bool:
    """Whether this PyTorch can use an NVIDIA GPU."""
    return torch.cuda.is_available()


class TorchDlibEmbedder(FaceEmbedder):
    """dlib's ResNet as a PyTorch module (see :mod:`watchkeeper.models.dlib_torch`).

    ``inference.precision`` applies on the GPU: 'float32' (exact), 'tf32'
    (float32 storage, tensor-core products with a 10-bit mantissa) or
    'float16'. The CPU always computes in float32.
    """

    layout = DLIB_CHIP

    def __init__(self, spec: ModelSpec, path: str, device: str, inference: InferenceConfig) -> None:
        super().__init__(spec)
        if device == "cuda" and not cuda_available():
            raise ModelError(f"PyTorch {torch.__version__} cannot use a GPU on this machine")
        self._device = torch.device(device)
        self._precision = inference.precision if device == "cuda" else "float32"
        module = DlibResNetModule(read_dlib_resnet(Path(path)))
        module = module.to(self._device, memory_format=torch.channels_last)
        self._module = module.to(PRECISIONS[self._precision]).eval()
        self._lock = threading.Lock()
        self._staging: list[tuple[torch.Tensor, torch.cuda.Event | None]] = []
        if device == "cuda":
            name = torch.cuda.get_device_name(self._device)
            self.runtime = f"PyTorch {torch.__version__} CUDA on {name}, {self._precision}"
            side = self.layout.size
            self._staging = [
                (torch.empty((CHUNK_PASSES, side, side, 3), dtype=torch.uint8).pin_memory(), None)
                for _ in range(2)
            ]
            self._warm_up()
        else:
            threads = inference.threads or torch.get_num_threads()
            torch.set_num_threads(threads)
            self.runtime = f"PyTorch {torch.__version__} on the CPU, {threads} thread(s)"

    @property
    def dim(self) -> int:
        return 128

    def embed_raw(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        return self._infer(chips, mirrors=False)[0]

    def embed_raw_with_mirrors(self, chips: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Uploads each chip once and mirrors it on the device."""
        plain, mirrored = self._infer(chips, mirrors=True)
        assert mirrored is not None
        return plain, mirrored

    def _infer(
        self, chips: Sequence[np.ndarray], mirrors: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw vectors of ``chips`` (and of their mirror images), in chunks of at most
        :data:`CHUNK_PASSES` network passes. While the device runs one chunk, the
        host copies the next into the other pinned buffer."""
        per_chunk = CHUNK_PASSES // 2 if mirrors else CHUNK_PASSES
        plain: list[torch.Tensor] = []
        mirrored: list[torch.Tensor] = []
        with self._lock, torch.inference_mode(), self._arithmetic():
            for number, start in enumerate(range(0, len(chips), per_chunk)):
                part = chips[start : start + per_chunk]
                rgb = self._upload(part, number % 2)
                batch = torch.cat([rgb, rgb.flip(2)]) if mirrors else rgb
                out = self._module(_padded(batch))
                plain.append(out[: len(part)])
                if mirrors:
                    mirrored.append(out[len(part) : 2 * len(part)])
            plain_vectors = _to_host(plain)
            return plain_vectors, _to_host(mirrored) if mirrors else None

    def _arithmetic(self) -> contextlib.AbstractContextManager[None]:
        # Only the convolutions matter for TF32; the final 256x128 product stays float32.
        tf32 = self._precision == "tf32"
        return torch.backends.cudnn.flags(enabled=True, benchmark=False, allow_tf32=tf32)

    def _upload(self, chips: Sequence[np.ndarray], slot: int) -> torch.Tensor:
        """``chips`` (BGR) as one uint8 RGB batch on the device, copied through pinned
        buffer ``slot`` (0 or 1)."""
        if self._device.type == "cpu":
            return torch.from_numpy(np.stack(chips)).flip(3)
        buffer, copied = self._staging[slot]
        if copied is not None:
            copied.synchronize()  # the chunk before last has left this buffer
        host = buffer[: len(chips)]
        np.stack(chips, out=host.numpy())
        batch = host.to(self._device, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self._staging[slot] = (buffer, event)
        return batch.flip(3)  # BGR to RGB

    def _warm_up(self) -> None:
        """Run every batch size the device will see once: the first run of a shape
        chooses and loads its kernels, which takes up to a few hundred milliseconds."""
        side = self.layout.size
        size = 1
        while size <= CHUNK_PASSES:
            chips = [np.zeros((side, side, 3), np.uint8)] * size
            self._infer(chips, mirrors=False)
            size *= 2


CHUNK_PASSES = 256
"""Most chips the network runs at once on a GPU (plain and mirrored together).
On an H100 in float16, 256 reach 100,000 chips/s and 128 only 45,000."""


def _padded(batch: torch.Tensor) -> torch.Tensor:
    """``batch`` padded with zero chips to the next power of two, so that the device
    sees at most nine batch shapes, each prepared once (see ``_warm_up``)."""
    size = 1 << (len(batch) - 1).bit_length()
    if size == len(batch) or batch.device.type == "cpu":
        return batch
    padding = batch.new_zeros((size - len(batch), *batch.shape[1:]))
    return torch.cat([batch, padding])


def _to_host(parts: list[torch.Tensor]) -> np.ndarray:
    if not parts:
        return np.zeros((0, 128), np.float32)
    return torch.cat(parts).cpu().numpy()
