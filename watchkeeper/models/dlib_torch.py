"""dlib's face-recognition ResNet as a PyTorch module, built from our parse of its file.

The network read by :func:`watchkeeper.models.dlib_onnx.read_dlib_resnet` is
rebuilt node by node, with the same semantics as the ONNX graph (see that
module), so that it runs on an NVIDIA GPU through PyTorch where
onnxruntime-gpu is not installed. Two rewrites make it faster without changing
what it computes beyond rounding:

- every ``affine_`` that follows a convolution (all 29 of them) is folded into
  that convolution's weights and bias: ``(w * x + b) * g + c`` is
  ``(w g) * x + (b g + c)``;
- activations are kept channels-last (NHWC), which cuDNN's tensor-core kernels
  prefer; the uint8 chips already arrive in that order.

PyTorch is optional: this module imports it, so import this module only once
PyTorch is known to be installed.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from watchkeeper.errors import ModelError
from watchkeeper.models.dlib_onnx import (
    AddPrev,
    Affine,
    Conv,
    DlibResNet,
    FullyConnected,
    Node,
    Pool,
    Relu,
    Shape,
)


class DlibResNetModule(nn.Module):
    """dlib's ResNet: uint8 RGB chips [N, 150, 150, 3] in, raw float32 [N, 128] out.

    The output is dlib's descriptor (not unit length), like the ONNX model's.
    Convert the module with ``.half()`` for float16 weights; inputs are cast to
    the weights' type after normalisation, and the output is always float32.
    """

    def __init__(self, network: DlibResNet) -> None:
        super().__init__()
        mean = torch.tensor(network.input.mean_rgb, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("mean_rgb", mean)
        self.size = (network.input.rows, network.input.columns)
        self.steps: list[tuple[str, tuple[int, ...], object]] = []
        """(kind, input node indices, layer or module index) in evaluation order."""
        self.convs = nn.ModuleList()
        self.fc: nn.Linear | None = None
        self._build(network)

    def _build(self, network: DlibResNet) -> None:
        consumers = _consumers(network.nodes)
        nodes = network.nodes
        folded: set[int] = set()
        for index, node in enumerate(nodes):
            layer = node.layer
            if index in folded:
                continue
            if isinstance(layer, Conv):
                follower = nodes[index + 1] if index + 1 < len(nodes) else None
                affine = None
                if (
                    follower is not None
                    and isinstance(follower.layer, Affine)
                    and follower.inputs == (index,)
                    and consumers[index] == 1
                    and follower.layer.gamma.ndim == 1
                ):
                    affine = follower.layer
                    folded.add(index + 1)
                self.convs.append(_conv(layer, affine))
                # A folded pair writes its result where the affine's output is read.
                self.steps.append(("conv", node.inputs, len(self.convs) - 1))
                if affine is not None:
                    self.steps.append(("alias", (index,), None))
            elif isinstance(layer, Affine):
                raise ModelError("an affine layer that follows no convolution is not supported")
            elif isinstance(layer, Relu):
                self.steps.append(("relu", node.inputs, None))
            elif isinstance(layer, Pool):
                self.steps.append(("pool", node.inputs, layer))
            elif isinstance(layer, AddPrev):
                shapes = tuple(nodes[i].shape for i in node.inputs)
                self.steps.append(("add", node.inputs, (shapes, node.shape)))
            elif isinstance(layer, FullyConnected):
                if index != len(nodes) - 1:
                    raise ModelError("a fully connected layer must be the network's last")
                self.fc = _linear(layer)
                self.steps.append(("fc", node.inputs, None))
            else:  # pragma: no cover - the parser knows no other layer
                raise ModelError(f"unsupported layer {type(layer).__name__}")
        if self.fc is None:
            raise ModelError("the network does not end in a fully connected layer")

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        """Raw descriptors of ``chips`` (uint8 [N, rows, columns, 3], RGB)."""
        if chips.dtype != torch.uint8 or chips.dim() != 4 or tuple(chips.shape[1:3]) != self.size:
            raise ValueError(f"chips must be uint8 [N, {self.size[0]}, {self.size[1]}, 3]")
        # NHWC memory seen as NCHW: a channels-last tensor, no copy.
        pixels = chips.permute(0, 3, 1, 2).float()
        x = ((pixels - self.mean_rgb.float()) * (1.0 / 256.0)).to(self.convs[0].weight.dtype)
        outputs: list[torch.Tensor] = []
        for kind, inputs, detail in self.steps:
            source = outputs[inputs[0]] if inputs[0] >= 0 else x
            if kind == "conv":
                result = self.convs[detail](source)  # type: ignore[index]
            elif kind == "alias":
                result = source
            elif kind == "relu":
                result = F.relu(source)
            elif kind == "pool":
                result = _pool(detail, source)  # type: ignore[arg-type]
            elif kind == "add":
                shapes, target = detail  # type: ignore[misc]
                first, second = (
                    _pad_to(outputs[i] if i >= 0 else x, shape, target)
                    for i, shape in zip(inputs, shapes, strict=True)
                )
                result = first + second
            else:  # fc
                result = self.fc(source.flatten(1))  # type: ignore[misc]
            outputs.append(result)
        return outputs[-1].float()


def _consumers(nodes: tuple[Node, ...]) -> list[int]:
    """How many nodes read each node's output."""
    counts = [0] * len(nodes)
    for node in nodes:
        for i in node.inputs:
            if i >= 0:
                counts[i] += 1
    return counts


def _conv(layer: Conv, affine: Affine | None) -> nn.Conv2d:
    weights, bias = layer.weights.astype(np.float64), layer.bias.astype(np.float64)
    if affine is not None:
        gamma, beta = affine.gamma.astype(np.float64), affine.beta.astype(np.float64)
        weights = weights * gamma[:, None, None, None]
        bias = bias * gamma + beta
    filters, channels, rows, columns = weights.shape
    conv = nn.Conv2d(
        channels, filters, (rows, columns), stride=layer.stride, padding=layer.padding, bias=True
    )
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(weights.astype(np.float32)))
        conv.bias.copy_(torch.from_numpy(bias.astype(np.float32)))  # type: ignore[union-attr]
    return conv


def _linear(layer: FullyConnected) -> nn.Linear:
    inputs, outputs = layer.weights.shape
    linear = nn.Linear(inputs, outputs, bias=layer.bias is not None)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(layer.weights.T)))
        if layer.bias is not None:
            linear.bias.copy_(torch.from_numpy(layer.bias))
    return linear


def _pool(layer: Pool, x: torch.Tensor) -> torch.Tensor:
    if layer.window == (0, 0):  # dlib's *_pool_everything
        return x.amax((2, 3), keepdim=True) if layer.kind == "max" else x.mean((2, 3), keepdim=True)
    if layer.kind == "max":
        return F.max_pool2d(x, layer.window, layer.stride, layer.padding)
    if layer.padding != (0, 0):
        raise ModelError("average pooling with padding is not supported")
    return F.avg_pool2d(x, layer.window, layer.stride)


def _pad_to(x: torch.Tensor, shape: Shape, target: Shape) -> torch.Tensor:
    """``x`` zero-padded after its end to ``target`` (dlib's ``tt::add``)."""
    channels, rows, columns = (t - s for s, t in zip(shape, target, strict=True))
    if not (channels or rows or columns):
        return x
    return F.pad(x, (0, columns, 0, rows, 0, channels))
