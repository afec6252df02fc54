"""dlib's face-recognition ResNet as an ONNX model, read with our own parser.

dlib ships its identity embedder (``dlib_face_recognition_resnet_model_v1.dat``)
in its own binary serialization. This module reads that file without dlib
(pure Python and NumPy) and writes the same network as ONNX, so that it can
run in onnxruntime.

dlib's format, as its sources write it (``dlib/serialize.h``,
``dlib/dnn/{core,layers,input,loss,tensor}.h``):

- integers: one control byte (bit 7: negative; low 4 bits: byte count), then
  the absolute value, little-endian, in as few bytes as it needs (but at least
  one: ``0`` is ``01 00``);
- floating point numbers: a ``float_details`` pair, the *mantissa* (int64)
  first, then the exponent (int16): value = mantissa * 2**exponent (the
  comment in ``serialize.h`` says the opposite order; the code writes this one);
- strings: length (unsigned long), then the bytes; booleans: ASCII ``'1'``/``'0'``;
- tensors (version 2): n, k, nr, nc (longs), then n*k*nr*nc little-endian
  float32 values in (n, k, nr, nc) order; ``alias_tensor`` (version 1): its
  four dimensions only;
- a network: the loss layer writes its version, its own details, then the
  network below it. Every wrapper (``add_layer``, tag, skip) writes its
  version then the network below it *before* its own details, so the file
  holds every wrapper's version from the output down to the input, then the
  input layer, then each layer's details from the input up, each followed by
  ``add_layer``'s training state (three flags, then two or three tensors,
  empty in this file). Wrappers carry no
  type tag, so the file can only be read against the network type it was
  written from (``anet_type`` of dlib's ``examples/dnn_face_recognition_ex.cpp``),
  as dlib itself does.

Network semantics the graph reproduces:

- input: ``(pixel - mean) / 256`` per RGB channel, with the three means stored
  in the file, in NCHW order;
- convolution and pooling padding defaults to ``stride != 1 ? 0 : size / 2``
  (so strided layers have none); output size ``1 + (in + 2 pad - size) / stride``;
- ``add_prev`` adds two tensors of different shapes: its output has the
  elementwise maximum of both shapes and each input counts as zero outside its
  own extent (``tt::add``). The down-sampling residuals use this: at 150x150 a
  3x3 block output (256 channels) meets a 4x4 pooled shortcut (128 channels);
- ``fc`` multiplies the (k, nr, nc)-flattened input by a (inputs x outputs)
  matrix; ``loss_metric`` returns that output unchanged (not normalised).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from watchkeeper.errors import ModelError

logger = logging.getLogger(__name__)

CONVERTER_VERSION = "1"
"""Changes whenever the converter's output for the same input file changes."""

ONNX_OPSET = 17
ONNX_IR_VERSION = 8
INPUT_NAME = "chips"
OUTPUT_NAME = "embeddings"
PRODUCER_NAME = "watchkeeper"

Shape = tuple[int, int, int]
"""A tensor's shape for one sample: (channels, rows, columns)."""

# --------------------------------------------------------------------------------------
# The parsed network


@dataclass(frozen=True, eq=False)
class InputLayer:
    """dlib's ``input_rgb_image_sized``: an RGB image of a fixed size.

    Each 0-255 pixel value becomes ``(value - mean) / 256`` (channel order R, G, B).
    """

    mean_rgb: tuple[float, float, float]
    rows: int
    columns: int


@dataclass(frozen=True, eq=False)
class Conv:
    """``con_``: cross-correlation plus a per-filter bias."""

    weights: np.ndarray  # float32 [filters, input channels, rows, columns]
    bias: np.ndarray  # float32 [filters]
    stride: tuple[int, int]  # (rows, columns)
    padding: tuple[int, int]  # zero padding on each side, (rows, columns)


@dataclass(frozen=True, eq=False)
class Affine:
    """``affine_`` (a frozen batch normalisation): ``x * gamma + beta``.

    In dlib's CONV_MODE gamma and beta hold one value per channel ([k]); in
    FC_MODE one per element ([k, rows, columns]).
    """

    gamma: np.ndarray  # float32
    beta: np.ndarray  # float32


@dataclass(frozen=True)
class Relu:
    """``relu_``: max(x, 0)."""


@dataclass(frozen=True)
class Pool:
    """``max_pool_`` or ``avg_pool_``; a window of 0 x 0 covers the whole input."""

    kind: Literal["max", "avg"]
    window: tuple[int, int]  # (rows, columns)
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True)
class AddPrev:
    """``add_prev_``: the sum of two earlier outputs, zero-padded to a common shape."""

    tag: int


@dataclass(frozen=True, eq=False)
class FullyConnected:
    """``fc_``: ``flatten(x) @ weights (+ bias)``."""

    weights: np.ndarray  # float32 [inputs, outputs]
    bias: np.ndarray | None  # float32 [outputs], None for fc_no_bias


Layer = Conv | Affine | Relu | Pool | AddPrev | FullyConnected
_L = TypeVar("_L", Conv, Affine, Relu, Pool, AddPrev, FullyConnected)


@dataclass(frozen=True)
class Node:
    """One computation: ``layer`` applied to earlier outputs.

    ``inputs`` index :attr:`DlibResNet.nodes`; ``-1`` is the input layer's output.
    ``shape`` is this node's output shape (channels, rows, columns) for one sample.
    """

    layer: Layer
    inputs: tuple[int, ...]
    shape: Shape


@dataclass(frozen=True)
class DlibResNet:
    """dlib's face-recognition ResNet as read from its ``.dat`` file.

    ``nodes`` are in evaluation order; the last node's output (one row per
    image) is what dlib's ``compute_face_descriptor`` returns.
    """

    source_name: str
    input: InputLayer
    nodes: tuple[Node, ...]
    loss_margin: float
    loss_distance_threshold: float

    @property
    def embedding_dim(self) -> int:
        """Length of each output vector."""
        return self.nodes[-1].shape[0]

    def layers_of(self, kind: type[_L]) -> list[_L]:
        """The layers of one type, in evaluation order."""
        return [node.layer for node in self.nodes if isinstance(node.layer, kind)]


# --------------------------------------------------------------------------------------
# The network type the file was written from (dlib's anet_type)


@dataclass(frozen=True)
class _Step:
    """One wrapper of dlib's network type, written from the output down."""

    kind: Literal["con", "affine", "relu", "max_pool", "avg_pool", "add_prev", "fc", "tag", "skip"]
    args: tuple[int, ...] = ()

    @property
    def is_layer(self) -> bool:
        """An ``add_layer`` (has details in the file), not a tag or a skip."""
        return self.kind not in ("tag", "skip")


def _block(filters: int, stride: int) -> list[_Step]:
    # block<N,BN,stride,SUBNET> = BN<con<N,3,3,1,1,relu<BN<con<N,3,3,stride,stride,SUBNET>>>>>
    return [
        _Step("affine"),
        _Step("con", (filters, 3, 1)),
        _Step("relu"),
        _Step("affine"),
        _Step("con", (filters, 3, stride)),
    ]


def _ares(filters: int) -> list[_Step]:
    # ares<N,SUBNET> = relu<add_prev1<block<N,affine,1,tag1<SUBNET>>>>
    return [_Step("relu"), _Step("add_prev", (1,)), *_block(filters, 1), _Step("tag", (1,))]


def _ares_down(filters: int) -> list[_Step]:
    # ares_down<N,SUBNET> =
    #     relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,affine,2,tag1<SUBNET>>>>>>>
    return [
        _Step("relu"),
        _Step("add_prev", (2,)),
        _Step("avg_pool", (2, 2)),
        _Step("skip", (1,)),
        _Step("tag", (2,)),
        *_block(filters, 2),
        _Step("tag", (1,)),
    ]


def _anet_type() -> list[_Step]:
    """dlib's ``anet_type`` below its loss layer, from the output down to the input."""
    levels = [
        *_ares_down(256),  # alevel0
        *_ares(256),  # alevel1
        *_ares(256),
        *_ares_down(256),
        *_ares(128),  # alevel2
        *_ares(128),
        *_ares_down(128),
        *_ares(64),  # alevel3
        *_ares(64),
        *_ares(64),
        *_ares_down(64),
        *_ares(32),  # alevel4
        *_ares(32),
        *_ares(32),
    ]
    return [
        _Step("fc", (128, 1)),  # fc_no_bias<128> (bias mode 1: FC_NO_BIAS)
        _Step("avg_pool", (0, 1)),  # avg_pool_everything
        *levels,
        _Step("max_pool", (3, 2)),
        _Step("relu"),
        _Step("affine"),
        _Step("con", (32, 7, 2)),
    ]


INPUT_SIZE = 150
EMBEDDING_DIM = 128

# --------------------------------------------------------------------------------------
# dlib's serialization primitives


class _Reader:
    """Reads dlib's serialization format from bytes, failing with a ModelError."""

    def __init__(self, data: bytes, name: str) -> None:
        self.data = data
        self.name = name
        self.pos = 0

    def error(self, message: str, at: int | None = None) -> ModelError:
        where = self.pos if at is None else at
        return ModelError(
            f"{self.name} is not a dlib face recognition ResNet this converter can read "
            f"(dlib_face_recognition_resnet_model_v1): {message} (at byte {where} of "
            f"{len(self.data)})"
        )

    def take(self, count: int, what: str) -> bytes:
        if count > len(self.data) - self.pos:
            raise self.error(f"the file ends while reading {what} (truncated?)")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def integer(self, what: str, size: int = 4, signed: bool = True) -> int:
        """An integer of a C++ type ``size`` bytes wide (int: 4, long: 8, int16: 2)."""
        start = self.pos
        control = self.take(1, what)[0]
        # dlib's unpack_int: signed types keep the sign bit and the byte count;
        # unsigned types keep the sign bit in the count, so a negative value is refused.
        count = control & 0x0F if signed else control & 0x8F
        if count > size:
            raise self.error(f"malformed integer for {what} (control byte {control:#04x})", start)
        value = int.from_bytes(self.take(count, what), "little")
        return -value if signed and control & 0x80 else value

    def unsigned(self, what: str, size: int = 8) -> int:
        """An unsigned long or size_t (8 bytes here)."""
        return self.integer(what, size, signed=False)

    def floating(self, what: str) -> float:
        """A float or double: ``float_details`` mantissa (int64), then exponent (int16)."""
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            raise self.error(f"{what} uses dlib's old text format for numbers, not supported")
        mantissa = self.integer(what, 8)
        exponent = self.integer(what, 2)
        if exponent < 32000:
            return math.ldexp(mantissa, exponent)
        return {32000: math.inf, 32001: -math.inf}.get(exponent, math.nan)

    def boolean(self, what: str) -> bool:
        value = self.take(1, what)
        if value not in (b"0", b"1"):
            raise self.error(f"{what} is not a boolean ('0' or '1'): {value!r}", self.pos - 1)
        return value == b"1"

    def string(self, what: str, limit: int = 64) -> str:
        start = self.pos
        length = self.unsigned(f"the length of {what}")
        if length > limit:
            raise self.error(f"{what} has an implausible length of {length} bytes", start)
        return self.take(length, what).decode("latin-1")

    def version(self, what: str, known: tuple[int, ...]) -> int:
        start = self.pos
        value = self.integer(f"the version of {what}")
        if value not in known:
            expected = " or ".join(map(str, known))
            raise self.error(f"unknown version {value} of {what} (expected {expected})", start)
        return value

    def tag(self, what: str, known: tuple[str, ...]) -> str:
        """A layer's version string (``"con_4"``), one of ``known``."""
        start = self.pos
        value = self.string(f"the name of {what}")
        if value not in known:
            expected = " or ".join(repr(k) for k in known)
            raise self.error(f"found {value!r} where {what} ({expected}) belongs", start)
        return value

    def tensor(self, what: str) -> np.ndarray:
        """A ``resizable_tensor``: float32 array of shape (n, k, nr, nc)."""
        self.version(f"the tensor of {what}", (2,))
        start = self.pos
        dims = tuple(self.integer(f"the shape of {what}", 8) for _ in range(4))
        if min(dims) < 0:
            raise self.error(f"{what} has a negative dimension {dims}", start)
        count = math.prod(dims)
        raw = self.take(4 * count, f"the {count} values of {what}")
        return np.frombuffer(raw, "<f4").astype(np.float32).reshape(dims)

    def parameters(self, what: str) -> np.ndarray:
        """A layer's parameter tensor, which must hold finite numbers only."""
        start = self.pos
        values = self.tensor(f"the parameters of {what}")
        if not np.isfinite(values).all():
            raise self.error(f"the parameters of {what} are not all finite numbers", start)
        return values

    def alias(self, what: str) -> tuple[int, int, int, int]:
        """An ``alias_tensor``: only its shape (n, k, nr, nc)."""
        self.version(f"the alias tensor of {what}", (1,))
        start = self.pos
        n, k, nr, nc = (self.integer(f"the shape of {what}", 8) for _ in range(4))
        if min(n, k, nr, nc) < 0:
            raise self.error(f"{what} has a negative dimension {(n, k, nr, nc)}", start)
        return n, k, nr, nc

    def expect(self, condition: bool, message: str, at: int) -> None:
        if not condition:
            raise self.error(message, at)


# --------------------------------------------------------------------------------------
# Layers


def _padding_for(size: int, stride: int) -> int:
    """dlib's default padding: none for strided layers, size/2 otherwise."""
    return 0 if stride != 1 else size // 2


def _output_side(side: int, window: int, stride: int, padding: int) -> int:
    return 1 + (side + 2 * padding - window) // stride


def _read_conv(reader: _Reader, step: _Step, below: Shape, what: str) -> tuple[Conv, Shape]:
    filters, size, stride = step.args
    reader.tag(what, ("con_4",))
    start = reader.pos
    params = reader.parameters(what)
    header = (
        reader.integer(f"{what} num_filters", 8),
        reader.integer(f"{what} nr", 8),
        reader.integer(f"{what} nc", 8),
        reader.integer(f"{what} stride_y"),
        reader.integer(f"{what} stride_x"),
        reader.integer(f"{what} padding_y"),
        reader.integer(f"{what} padding_x"),
    )
    pad = _padding_for(size, stride)
    expected = (filters, size, size, stride, stride, pad, pad)
    reader.expect(
        header == expected,
        f"{what}: (filters, nr, nc, stride_y, stride_x, padding_y, padding_x) = {header}, "
        f"expected {expected}",
        start,
    )
    filter_shape = reader.alias(f"{what} filters")
    bias_shape = reader.alias(f"{what} biases")
    for name in ("learning_rate", "weight_decay", "bias_learning_rate", "bias_weight_decay"):
        reader.floating(f"{what} {name}_multiplier")
    channels = below[0]
    reader.expect(
        filter_shape == (filters, channels, size, size) and bias_shape == (1, filters, 1, 1),
        f"{what}: filters {filter_shape} and biases {bias_shape} do not fit "
        f"{filters} filters of {channels} x {size} x {size}",
        start,
    )
    count = filters * channels * size * size
    reader.expect(
        params.size == count + filters,
        f"{what}: {params.size} parameters, expected {count + filters}",
        start,
    )
    flat = params.reshape(-1)
    layer = Conv(
        weights=flat[:count].reshape(filters, channels, size, size),
        bias=flat[count:].copy(),
        stride=(stride, stride),
        padding=(pad, pad),
    )
    side = (_output_side(below[1], size, stride, pad), _output_side(below[2], size, stride, pad))
    reader.expect(min(side) > 0, f"{what}: input {below} is too small", start)
    return layer, (filters, *side)


def _read_affine(reader: _Reader, below: Shape, what: str) -> tuple[Affine, Shape]:
    reader.tag(what, ("affine_",))
    start = reader.pos
    params = reader.parameters(what)
    gamma_shape = reader.alias(f"{what} gamma")
    beta_shape = reader.alias(f"{what} beta")
    mode = reader.integer(f"{what} mode")
    # dlib's layer_mode: CONV_MODE = 0 (one value per channel), FC_MODE = 1 (per element).
    expected = {0: (1, below[0], 1, 1), 1: (1, *below)}.get(mode)
    reader.expect(
        expected is not None and gamma_shape == expected and beta_shape == expected,
        f"{what}: mode {mode} with gamma {gamma_shape} and beta {beta_shape} does not fit "
        f"an input of {below}",
        start,
    )
    assert expected is not None
    size = math.prod(expected)
    reader.expect(
        params.size == 2 * size, f"{what}: {params.size} parameters, expected {2 * size}", start
    )
    flat = params.reshape(-1)
    values = expected[1:] if mode == 1 else (below[0],)
    return Affine(gamma=flat[:size].reshape(values), beta=flat[size:].reshape(values)), below


def _read_pool(reader: _Reader, step: _Step, below: Shape, what: str) -> tuple[Pool, Shape]:
    kind: Literal["max", "avg"] = "max" if step.kind == "max_pool" else "avg"
    size, stride = step.args
    reader.tag(what, (f"{kind}_pool_2",))
    start = reader.pos
    header = (
        reader.integer(f"{what} nr", 8),
        reader.integer(f"{what} nc", 8),
        reader.integer(f"{what} stride_y"),
        reader.integer(f"{what} stride_x"),
        reader.integer(f"{what} padding_y"),
        reader.integer(f"{what} padding_x"),
    )
    pad = _padding_for(size, stride)
    expected = (size, size, stride, stride, pad, pad)
    reader.expect(
        header == expected,
        f"{what}: (nr, nc, stride_y, stride_x, padding_y, padding_x) = {header}, "
        f"expected {expected}",
        start,
    )
    rows = size or below[1]
    columns = size or below[2]
    side = (
        _output_side(below[1], rows, stride, pad),
        _output_side(below[2], columns, stride, pad),
    )
    reader.expect(min(side) > 0, f"{what}: input {below} is too small", start)
    layer = Pool(kind, (size, size), (stride, stride), (pad, pad))
    return layer, (below[0], *side)


def _read_fc(reader: _Reader, step: _Step, below: Shape, what: str) -> FullyConnected:
    outputs, bias_mode = step.args
    reader.tag(what, ("fc_2",))
    start = reader.pos
    header = (reader.unsigned(f"{what} num_outputs"), reader.unsigned(f"{what} num_inputs"))
    params = reader.parameters(what)
    weight_shape = reader.alias(f"{what} weights")
    bias_shape = reader.alias(f"{what} biases")
    mode = reader.integer(f"{what} bias mode")
    for name in ("learning_rate", "weight_decay", "bias_learning_rate", "bias_weight_decay"):
        reader.floating(f"{what} {name}_multiplier")
    inputs = math.prod(below)
    reader.expect(
        header == (outputs, inputs) and mode == bias_mode,
        f"{what}: (outputs, inputs, bias mode) = {(*header, mode)}, "
        f"expected {(outputs, inputs, bias_mode)}",
        start,
    )
    # dlib's fc_bias_mode: FC_HAS_BIAS = 0, FC_NO_BIAS = 1.
    has_bias = mode == 0
    reader.expect(
        weight_shape == (inputs, outputs, 1, 1)
        and bias_shape == ((1, outputs, 1, 1) if has_bias else (0, 0, 0, 0))
        and params.size == inputs * outputs + (outputs if has_bias else 0),
        f"{what}: weights {weight_shape}, biases {bias_shape} and {params.size} parameters "
        f"do not fit {inputs} inputs and {outputs} outputs",
        start,
    )
    flat = params.reshape(-1)
    weights = flat[: inputs * outputs].reshape(inputs, outputs)
    return FullyConnected(weights, flat[inputs * outputs :].copy() if has_bias else None)


def _read_details(
    reader: _Reader, step: _Step, below: Shape, what: str
) -> tuple[Layer, Shape | None]:
    """A layer's details; the shape is None for add_prev (the caller knows both inputs)."""
    if step.kind == "con":
        return _read_conv(reader, step, below, what)
    if step.kind == "affine":
        return _read_affine(reader, below, what)
    if step.kind == "relu":
        reader.tag(what, ("relu_",))
        return Relu(), below
    if step.kind in ("max_pool", "avg_pool"):
        return _read_pool(reader, step, below, what)
    if step.kind == "add_prev":
        reader.tag(what, ("add_prev_",))
        return AddPrev(step.args[0]), None
    layer = _read_fc(reader, step, below, what)
    return layer, (step.args[0], 1, 1)


def _read_layer_state(reader: _Reader, what: str, version: int, on_input: bool) -> None:
    """The training state ``add_layer`` writes after a layer's details (left unused)."""
    for name in ("this_layer_setup_called", "gradient_input_is_stale", "output_disabled"):
        reader.boolean(f"{what} {name}")
    reader.tensor(f"{what} x_grad")
    reader.tensor(f"{what} cached_output")
    if on_input:
        reader.tensor(f"{what} grad_final")
        if version >= 3:
            reader.unsigned(f"{what} sample_expansion_factor", 4)
    elif version >= 2:
        reader.tensor(f"{what} params_grad")


def _parse(data: bytes, name: str) -> DlibResNet:
    reader = _Reader(data, name)
    reader.version("the loss layer", (1,))
    loss = reader.tag("the loss layer", ("loss_metric_", "loss_metric_2"))
    margin, threshold = 0.1, 0.75  # dlib's values for "loss_metric_", which stores none
    if loss == "loss_metric_2":
        margin = reader.floating("the loss margin")
        threshold = reader.floating("the loss distance threshold")

    steps = _anet_type()  # steps[i] is what dlib prints as layer<i + 1> (the loss is 0)
    versions: list[int] = []
    for index, step in enumerate(steps):
        on_input = index == len(steps) - 1
        what = f"layer<{index + 1}> ({step.kind})"
        if step.is_layer:
            versions.append(reader.version(what, (2, 3) if on_input else (1, 2)))
        else:  # tags and skips on top of layers (never on the input in this network)
            versions.append(reader.version(what, (1,)))

    reader.tag("the input layer", ("input_rgb_image_sized",))
    # dlib stores the means as float: round to float32 as dlib does when it reads them.
    start = reader.pos
    red, green, blue = (float(np.float32(reader.floating(f"the mean {c}"))) for c in "RGB")
    reader.expect(
        all(0 <= m <= 255 for m in (red, green, blue)),
        f"input means {(red, green, blue)} are not pixel values",
        start,
    )
    start = reader.pos
    size = (reader.unsigned("the input rows"), reader.unsigned("the input columns"))
    reader.expect(size == (INPUT_SIZE, INPUT_SIZE), f"input size {size}, expected 150 x 150", start)
    source = InputLayer((red, green, blue), INPUT_SIZE, INPUT_SIZE)

    nodes: list[Node] = []
    current = -1  # the output the next layer reads: -1 is the input layer
    tags: dict[int, int] = {}  # tag id -> output it marks, nearest below
    shape_of = {-1: (3, INPUT_SIZE, INPUT_SIZE)}
    for index in reversed(range(len(steps))):
        step, version = steps[index], versions[index]
        what = f"layer<{index + 1}> ({step.kind})"
        if step.kind == "tag":
            tags[step.args[0]] = current
            continue
        if step.kind == "skip":
            current = tags[step.args[0]]
            continue
        start = reader.pos
        layer, shape = _read_details(reader, step, shape_of[current], what)
        inputs: tuple[int, ...] = (current,)
        if isinstance(layer, AddPrev):
            inputs = (current, tags[layer.tag])
            (k1, r1, c1), (k2, r2, c2) = (shape_of[i] for i in inputs)
            shape = (max(k1, k2), max(r1, r2), max(c1, c2))
        assert shape is not None
        reader.expect(min(shape) > 0, f"{what}: empty output", start)
        _read_layer_state(reader, what, version, on_input=index == len(steps) - 1)
        nodes.append(Node(layer, inputs, shape))
        current = len(nodes) - 1
        shape_of[current] = shape

    if reader.pos != len(data):
        raise reader.error(f"{len(data) - reader.pos} unexpected byte(s) after the network")
    return DlibResNet(name, source, tuple(nodes), margin, threshold)


def read_dlib_resnet(path: Path) -> DlibResNet:
    """Parse dlib's ``dlib_face_recognition_resnet_model_v1.dat`` (the whole file).

    Raises :class:`ModelError` for a file that cannot be read, is truncated,
    has bytes left over, or holds another network, layer type or version.
    """
    return _parse(_read_bytes(path), path.name)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read dlib model file {path}: {exc}") from exc


# --------------------------------------------------------------------------------------
# ONNX


class _Graph:
    """Collects ONNX nodes and initializers under stable, sequential names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def constant(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: list[str], output: str, **attributes: object) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attributes))
        return output


def _metadata(network: DlibResNet, source_sha256: str) -> dict[str, str]:
    means = ", ".join(repr(m) for m in network.input.mean_rgb)
    return {
        "source_file": network.source_name,
        "source_sha256": source_sha256,
        "input": f"{INPUT_NAME}: 150x150 RGB uint8, NHWC, shape [N, 150, 150, 3]",
        "normalisation": f"(pixel - mean_rgb) / 256 per channel, mean_rgb = ({means})",
        "mean_rgb": means,
        "output": f"{OUTPUT_NAME}: float32 [N, {network.embedding_dim}], dlib's raw "
        "descriptor (not normalised)",
        "output_dim": str(network.embedding_dim),
        "converter": "watchkeeper.models.dlib_onnx",
        "converter_version": CONVERTER_VERSION,
    }


def build_onnx(network: DlibResNet, source_sha256: str) -> bytes:
    """The serialized ONNX model of ``network`` (deterministic: same input, same bytes).

    Input ``chips``: uint8 [N, 150, 150, 3], RGB, 0-255 (NHWC; the graph casts,
    normalises and transposes). Output ``embeddings``: float32 [N, 128], the
    raw descriptors dlib computes (not unit length). ``source_sha256`` (hex)
    of the ``.dat`` file is recorded in the model's metadata.
    """
    if not re.fullmatch(r"[0-9a-f]{64}", source_sha256):
        raise ValueError("source_sha256 must be 64 lowercase hex digits")
    g = _Graph()
    mean = np.array(network.input.mean_rgb, np.float32)
    x = g.op("Cast", [INPUT_NAME], "pixels", to=TensorProto.FLOAT)
    x = g.op("Sub", [x, g.constant("mean_rgb", mean)], "centred")
    # dlib divides by 256.0; multiplying by 2**-8 is the same operation exactly.
    x = g.op("Mul", [x, g.constant("scale", np.array(1 / 256, np.float32))], "scaled")
    names = {-1: g.op("Transpose", [x], "input_nchw", perm=[0, 3, 1, 2])}
    shapes = {-1: (3, network.input.rows, network.input.columns)}

    last = len(network.nodes) - 1
    for index, node in enumerate(network.nodes):
        prefix = f"l{index:03d}"
        out = OUTPUT_NAME if index == last else f"{prefix}_out"
        inputs = [names[i] for i in node.inputs]
        layer = node.layer
        if isinstance(layer, Conv):
            pads = [*layer.padding, *layer.padding]
            names[index] = g.op(
                "Conv",
                [
                    inputs[0],
                    g.constant(f"{prefix}_conv_weights", layer.weights),
                    g.constant(f"{prefix}_conv_bias", layer.bias),
                ],
                out,
                kernel_shape=list(layer.weights.shape[2:]),
                strides=list(layer.stride),
                pads=pads,
            )
        elif isinstance(layer, Affine):
            shape = (1, -1, 1, 1) if layer.gamma.ndim == 1 else (1, *layer.gamma.shape)
            gamma = g.constant(f"{prefix}_affine_gamma", layer.gamma.reshape(shape))
            beta = g.constant(f"{prefix}_affine_beta", layer.beta.reshape(shape))
            scaled = g.op("Mul", [inputs[0], gamma], f"{prefix}_scaled")
            names[index] = g.op("Add", [scaled, beta], out)
        elif isinstance(layer, Relu):
            names[index] = g.op("Relu", inputs, out)
        elif isinstance(layer, Pool):
            names[index] = _pool(g, layer, inputs[0], out)
        elif isinstance(layer, AddPrev):
            padded = [
                _zero_pad(g, name, shapes[i], node.shape, f"{prefix}_pad{side}")
                for side, (name, i) in enumerate(zip(inputs, node.inputs, strict=True))
            ]
            names[index] = g.op("Add", padded, out)
        else:
            flat = g.op("Flatten", inputs, f"{prefix}_flat", axis=1)
            weights = g.constant(f"{prefix}_fc_weights", layer.weights)
            if layer.bias is None:
                names[index] = g.op("MatMul", [flat, weights], out)
            else:
                product = g.op("MatMul", [flat, weights], f"{prefix}_product")
                bias = g.constant(f"{prefix}_fc_bias", layer.bias)
                names[index] = g.op("Add", [product, bias], out)
        shapes[index] = node.shape

    dim = network.embedding_dim
    graph = helper.make_graph(
        g.nodes,
        "dlib_face_recognition_resnet_model_v1",
        [
            helper.make_tensor_value_info(
                INPUT_NAME, TensorProto.UINT8, ["N", network.input.rows, network.input.columns, 3]
            )
        ],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", dim])],
        g.initializers,
        doc_string="dlib's face recognition ResNet (dlib_face_recognition_resnet_model_v1), "
        "converted by watchkeeper.models.dlib_onnx.",
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
        producer_name=PRODUCER_NAME,
        producer_version=CONVERTER_VERSION,
    )
    model.ir_version = ONNX_IR_VERSION
    helper.set_model_props(model, _metadata(network, source_sha256))
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:  # a converter bug, not a user error
        raise ModelError(f"the converted ONNX model does not validate: {exc}") from exc
    return model.SerializeToString(deterministic=True)


def _pool(g: _Graph, layer: Pool, source: str, out: str) -> str:
    if layer.window == (0, 0):  # dlib's *_pool_everything
        op = "GlobalMaxPool" if layer.kind == "max" else "GlobalAveragePool"
        return g.op(op, [source], out)
    if layer.kind == "avg" and layer.padding != (0, 0):
        # Which padded cells dlib counts in an average is not verified here; the
        # network has none, so refuse rather than guess.
        raise ModelError("average pooling with padding is not supported")
    return g.op(
        "MaxPool" if layer.kind == "max" else "AveragePool",
        [source],
        out,
        kernel_shape=list(layer.window),
        strides=list(layer.stride),
        pads=[*layer.padding, *layer.padding],
    )


def _zero_pad(g: _Graph, source: str, shape: Shape, target: Shape, name: str) -> str:
    """``source`` zero-padded after its end to ``target`` (dlib's ``tt::add``)."""
    extra = [t - s for s, t in zip(shape, target, strict=True)]
    if not any(extra):
        return source
    pads = np.array([0, 0, 0, 0, 0, *extra], np.int64)
    return g.op("Pad", [source, g.constant(f"{name}_amounts", pads)], name, mode="constant")


# --------------------------------------------------------------------------------------
# Conversion


def convert_dlib_resnet(source: Path, destination: Path) -> Path:
    """Convert dlib's ResNet ``.dat`` file at ``source`` into ONNX at ``destination``.

    The file is written atomically (a temporary file in the destination's
    folder, then renamed): on any error (a :class:`ModelError`) no partial
    file is left, and a file already at ``destination`` is left as it was.
    Returns ``destination``.
    """
    data = _read_bytes(source)
    digest = hashlib.sha256(data).hexdigest()
    model = build_onnx(_parse(data, source.name), digest)
    try:
        _write_atomically(destination, model)
    except OSError as exc:
        raise ModelError(f"cannot write the converted model to {destination}: {exc}") from exc
    logger.info(
        "converted %s (sha256 %s) to %s (sha256 %s)",
        source,
        digest,
        destination,
        hashlib.sha256(model).hexdigest(),
    )
    return destination


def _write_atomically(destination: Path, data: bytes) -> None:
    """``data`` at ``destination`` in full or not at all (temporary file, then rename)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=".part", dir=destination.parent
    )
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
