"""Throughput of dlib's ResNet in PyTorch on a GPU, by precision and batch size.

Two figures per row:

- ``network_chips_per_s``: the module alone on chips already on the GPU (CUDA
  events, median of repeats): what the GPU can do, comparable with a plain
  PyTorch ResNet of the same shape;
- ``faces_per_s``: Watchkeeper's embedder as the engine calls it, from BGR
  NumPy chips in host memory to unit vectors, each face with its mirror image
  (flip averaging: two network passes per face).

Also times cuDNN's autotuner (``benchmark=True``) against its heuristics, which
the embedder uses because the engine's batch sizes vary. Prints one JSON line
per row, then a table.

    python benchmarks/torch_embedding.py [--batches 1,8,32,64,128,256] [--seconds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from watchkeeper.config import InferenceConfig, load_settings
from watchkeeper.models.dlib_onnx import read_dlib_resnet
from watchkeeper.models.dlib_torch import DlibResNetModule
from watchkeeper.models.registry import ModelRegistry
from watchkeeper.vision.embedding import FaceEmbedder, create_embedder
from watchkeeper.vision.torch_embedding import PRECISIONS


def network_rate(
    module: torch.nn.Module, batch: int, tf32: bool, autotune: bool, seconds: float
) -> float:
    """Chips per second through ``module`` alone, inputs resident on the GPU."""
    inputs = [
        torch.randint(0, 256, (batch, 150, 150, 3), dtype=torch.uint8, device="cuda")
        for _ in range(4)  # rotate, so that no input stays in the cache
    ]
    with (
        torch.inference_mode(),
        torch.backends.cudnn.flags(enabled=True, benchmark=autotune, allow_tf32=tf32),
    ):
        for chips in inputs:  # warm-up: kernel choice, autotuning
            module(chips)
        torch.cuda.synchronize()
        times, spent, i = [], 0.0, 0
        while spent < seconds or len(times) < 5:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            module(inputs[i % len(inputs)])
            end.record()
            end.synchronize()
            elapsed = start.elapsed_time(end) / 1e3
            times.append(elapsed)
            spent += elapsed
            i += 1
    return batch / statistics.median(times)


def embedder_rate(embedder: FaceEmbedder, batch: int, seconds: float) -> float:
    """Faces per second through the embedder (host chips in, flip-averaged vectors out)."""
    rng = np.random.default_rng(0)
    chips = list(rng.integers(0, 256, (batch, 150, 150, 3), dtype=np.uint8))
    embedder.embed(chips)
    faces, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        embedder.embed(chips)
        faces += batch
    return faces / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", default=None, help="Models folder (default: settings').")
    parser.add_argument("--batches", default="1,8,32,64,128,256")
    parser.add_argument("--seconds", type=float, default=2.0, help="Time per measurement.")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("this benchmark needs PyTorch with CUDA and a GPU")
    overrides = {"models_dir": args.models_dir} if args.models_dir else {}
    registry = ModelRegistry(load_settings(**overrides).models_dir)
    network = read_dlib_resnet(registry.verified_path("dlib-resnet-v1"))
    batches = [int(b) for b in args.batches.split(",")]
    rows = []
    for precision, dtype in PRECISIONS.items():
        module = DlibResNetModule(network).to("cuda", memory_format=torch.channels_last)
        module = module.to(dtype).eval()
        embedder = create_embedder(
            "dlib-resnet-v1", registry, InferenceConfig(backend="torch", precision=precision)
        )
        for batch in batches:
            row = {
                "gpu": torch.cuda.get_device_name(),
                "torch": torch.__version__,
                "precision": precision,
                "batch": batch,
                "network_chips_per_s": round(
                    network_rate(module, batch, precision == "tf32", False, args.seconds)
                ),
                "network_chips_per_s_autotuned": round(
                    network_rate(module, batch, precision == "tf32", True, args.seconds)
                ),
                "faces_per_s": round(embedder_rate(embedder, batch, args.seconds)),
            }
            print(json.dumps(row), flush=True)  # noqa: T201 - a command-line report
            rows.append(row)
    table = Table(title=f"dlib ResNet in PyTorch on {rows[0]['gpu']}, torch {rows[0]['torch']}")
    for column in ("precision", "batch", "network chips/s", "autotuned", "faces/s (flip)"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*(str(value) for value in list(row.values())[2:]))
    Console().print(table)


if __name__ == "__main__":
    main()
