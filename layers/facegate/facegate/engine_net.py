"""dlib's face recognition ResNet (``dlib_face_recognition_resnet_model_v1``), run with numpy.

dlib's Python wheel is built without BLAS, so its own convolutions cost ~100 ms per
face on one core. numpy's wheels bundle OpenBLAS: the same network as im2col + matrix
products costs a fraction of that. This module reads dlib's model file itself and runs
the network's forward pass; dlib still detects the face, finds the 5 landmarks and cuts
the 150×150 chip (``dlib.get_face_chip``, exactly what ``compute_face_descriptor`` does
before it runs the network). tests/unit/test_engine_net.py proves the descriptor equals
dlib's own on the test photos and transformed copies of them.

The network, as dlib defines it (``examples/dnn_face_recognition_ex.cpp``), innermost last::

    loss_metric<fc_no_bias<128, avg_pool_everything<
        alevel0<alevel1<alevel2<alevel3<alevel4<
        max_pool<3,3,2,2, relu<affine<con<32,7,7,2,2, input_rgb_image_sized<150>>>>>>>>>>>>>

    alevel4 = 3 × ares<32>;  alevel3 = 3 × ares<64>, ares_down<64>;
    alevel2 = 2 × ares<128>, ares_down<128>;  alevel1 = 2 × ares<256>, ares_down<256>;
    alevel0 = ares_down<256>

    ares<N>      = relu(x + block<N, stride 1>(x))
    ares_down<N> = relu(avg_pool<2,2,2,2>(x) + block<N, stride 2>(x))
    block<N, s>  = affine(con<N,3,3,1,1>(relu(affine(con<N,3,3,s,s>(x)))))

The file format (dlib/serialize.h, dlib/cuda/tensor.h, dlib/dnn/core.h, layers.h, input.h):

* an integer is a control byte (low 4 bits: how many bytes follow; bit 7: negative)
  and then its magnitude, little-endian; a string is its length and its bytes; a bool
  is the byte ``'1'`` or ``'0'``; a float is its mantissa and then its exponent, both
  integers (value = mantissa × 2^exponent).
* a tensor is version 2, num_samples, k, nr, nc, then the values as little-endian float32
  (row-major in n, k, nr, nc); an alias_tensor is version 1 and the same four sizes.
* the loss layer writes its version, its own details, then the network below it; each
  ``add_layer`` writes its version, the network below it, then its layer's details and its
  training state (flags and scratch tensors); tags and skips write a version and the
  network below. So the file holds the wrappers' versions from the top down, the input
  layer, then each layer's details from the bottom up.

Anything that does not match this exact network (a layer tag, a version, a size) raises
``ModelFormatError``: a descriptor from a misread model must never be used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

CHIP_SIZE = 150  # input_rgb_image_sized<150>
CHIP_PADDING = 0.25  # compute_face_descriptor's get_face_chip_details(shape, 150, 0.25)
DIMENSION = 128
_CONV_MODE = 0  # affine_'s layer_mode for per-channel scale and shift
_FC_NO_BIAS = 1  # fc_bias_mode


class ModelFormatError(ValueError):
    """The model file is not the network this module implements."""


@dataclass(frozen=True)
class _Conv:
    """A convolution with the affine layer after it folded in."""

    weights: np.ndarray  # (size*size*in_channels, out_channels) float32, rows in (dy, dx, channel) order
    bias: np.ndarray  # (out_channels,) float32
    size: int
    stride: int
    padding: int


@dataclass(frozen=True)
class _Residual:
    first: _Conv  # stride 1 (ares) or 2 (ares_down)
    second: _Conv  # stride 1
    down: bool  # ares_down: the shortcut is a 2×2 average pool of the input


@dataclass(frozen=True)
class FaceNet:
    """The parsed network; ``descriptor`` runs it on one chip."""

    channel_means: np.ndarray  # (3,) float32: the input layer's avg_red, avg_green, avg_blue
    stem: _Conv  # con<32,7,7,2,2> + affine
    blocks: tuple[_Residual, ...]  # from the input side
    fc: np.ndarray  # (256, 128) float32

    def descriptor(self, chip: np.ndarray) -> np.ndarray:
        """The 128-d descriptor (float32) of a 150×150×3 uint8 RGB face chip."""
        import numpy as np

        if chip.shape != (CHIP_SIZE, CHIP_SIZE, 3) or chip.dtype != np.uint8:
            raise ValueError(f"the face network takes a {CHIP_SIZE}×{CHIP_SIZE}×3 uint8 RGB chip")
        # input_rgb_image_sized::to_tensor: (pixel - channel mean) / 256. Channels last here.
        x = (chip.astype(np.float32) - self.channel_means) / np.float32(256)
        x = _max_pool_3x3_s2(_relu(_conv(x, self.stem)))
        for block in self.blocks:
            y = _conv(_relu(_conv(x, block.first)), block.second)
            x = _relu(_add_zero_padded(y, _avg_pool_2x2_s2(x) if block.down else x))
        pooled = x.mean(axis=(0, 1), dtype=np.float32)  # avg_pool_everything
        out: np.ndarray = pooled @ self.fc  # fc_no_bias; loss_metric outputs it as is
        return out


# Read by OpenBLAS itself when it loads, so a thread count set there is already in force.
BLAS_THREADS_ENV = "OPENBLAS_NUM_THREADS"
_blas_missing_reported = False


def use_one_blas_thread() -> list[int]:
    """Make numpy's BLAS use one thread, unless ``OPENBLAS_NUM_THREADS`` says otherwise.

    Why one: a Lambda function of ≤ 1769 MB gets one vCPU's worth of time, the local server
    runs requests in threads of its own, and these matrices are small (at most 5184×147 by
    147×32). With the default of one thread per core, a descriptor on this 2-core machine
    under other load took 180-360 ms p50 (threads spinning against the load) against
    15-20 ms single-threaded (bench/RESULTS.md). The environment variable works only before
    numpy is imported, which the engine does not control, so threadpoolctl tells the BLAS
    numpy loaded, for the rest of the process. The generic ``OMP_NUM_THREADS`` does not
    count: images and tools set it for OpenMP libraries (this OpenBLAS uses pthreads), and
    honouring it would silently bring back the slow descriptors.

    Returns each BLAS's thread count as it then stands; none found is a warning, once.
    """
    global _blas_missing_reported  # one warning per process
    import numpy  # noqa: F401  (loads the BLAS that threadpoolctl looks for)
    from threadpoolctl import ThreadpoolController

    blas = ThreadpoolController().select(user_api="blas")
    if not blas.lib_controllers:
        if not _blas_missing_reported:
            _blas_missing_reported = True
            from facegate import observability

            observability.logger.warning(
                "the built-in engine found no BLAS to set to one thread: descriptors may be several times slower"
            )
        return []
    if not os.environ.get(BLAS_THREADS_ENV):
        blas.limit(limits=1)  # not a `with` block: the limit stays for the process
    return [int(library["num_threads"]) for library in blas.info()]


# -- forward-pass pieces, all on H×W×C float32 arrays -------------------------------------


def _conv(x: np.ndarray, conv: _Conv) -> np.ndarray:
    """dlib's con_: zero padding, output side 1 + (side + 2·padding - size) / stride."""
    import numpy as np

    p, k, s = conv.padding, conv.size, conv.stride
    if p:  # (np.pad does the same at several times the cost for these small arrays)
        padded = np.zeros((x.shape[0] + 2 * p, x.shape[1] + 2 * p, x.shape[2]), dtype=np.float32)
        padded[p:-p, p:-p] = x
        x = padded
    height, width, channels = x.shape
    out_h = 1 + (height - k) // s
    out_w = 1 + (width - k) // s
    rs, cs, ch = x.strides
    windows = np.lib.stride_tricks.as_strided(
        x, shape=(out_h, out_w, k, k, channels), strides=(rs * s, cs * s, rs, cs, ch), writeable=False
    )
    columns = windows.reshape(out_h * out_w, k * k * channels)  # im2col: one copy
    out: np.ndarray = columns @ conv.weights
    out += conv.bias
    return out.reshape(out_h, out_w, -1)


def _relu(x: np.ndarray) -> np.ndarray:
    import numpy as np

    out: np.ndarray = np.maximum(x, np.float32(0), out=x)
    return out


def _max_pool_3x3_s2(x: np.ndarray) -> np.ndarray:
    """max_pool<3,3,2,2>: padding 0, so every window lies inside the input."""
    import numpy as np

    out_h = 1 + (x.shape[0] - 3) // 2
    out_w = 1 + (x.shape[1] - 3) // 2
    out = x[0 : 2 * out_h : 2, 0 : 2 * out_w : 2].copy()
    for dy in range(3):
        for dx in range(3):
            if dy or dx:
                np.maximum(out, x[dy : dy + 2 * out_h : 2, dx : dx + 2 * out_w : 2], out=out)
    return out


def _avg_pool_2x2_s2(x: np.ndarray) -> np.ndarray:
    """avg_pool<2,2,2,2>: padding 0, output side 1 + (side - 2) / 2."""
    import numpy as np

    out_h = 1 + (x.shape[0] - 2) // 2
    out_w = 1 + (x.shape[1] - 2) // 2
    h, w = 2 * out_h, 2 * out_w
    total = x[0:h:2, 0:w:2] + x[0:h:2, 1:w:2]
    total += x[1:h:2, 0:w:2]
    total += x[1:h:2, 1:w:2]
    out: np.ndarray = total / np.float32(4)
    return out


def _add_zero_padded(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """add_prev_: the sum over the larger of each size, a value missing from one counting as 0.

    (dlib's tt::add indexes both tensors from the top-left corner and channel 0.) Sizes differ
    only at the four ares_down: the block doubles the channels at the first three (32→64→128
    →256), and at the last two the pooled shortcut is a row and a column larger than the
    stride-2 block (from 8×8: 4×4 against 3×3; from 4×4: 2×2 against 1×1).
    """
    import numpy as np

    if a.shape == b.shape:
        a += b
        return a
    shape = tuple(max(m, n) for m, n in zip(a.shape, b.shape, strict=True))
    out = np.zeros(shape, dtype=np.float32)
    out[: a.shape[0], : a.shape[1], : a.shape[2]] += a
    out[: b.shape[0], : b.shape[1], : b.shape[2]] += b
    return out


# -- the model file ---------------------------------------------------------------------


class _Reader:
    """dlib's serialization primitives over the whole file's bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def fail(self, what: str) -> ModelFormatError:
        return ModelFormatError(f"unexpected model file content at byte {self.pos}: {what}")

    def _take(self, count: int) -> bytes:
        end = self.pos + count
        if end > len(self.data):
            raise self.fail("the file ends early")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def integer(self) -> int:
        control = self._take(1)[0]
        size = control & 0x0F
        if size > 8 or control & 0x70:
            raise self.fail(f"bad integer control byte {control:#x}")
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def string(self) -> str:
        length = self.integer()
        if not 0 <= length <= 256:
            raise self.fail(f"string length {length}")
        return self._take(length).decode("ascii", errors="replace")

    def real(self) -> float:
        mantissa = self.integer()
        exponent = self.integer()
        return float(mantissa) * 2.0**exponent

    def boolean(self) -> bool:
        byte = self._take(1)
        if byte not in (b"0", b"1"):
            raise self.fail(f"bad bool {byte!r}")
        return byte == b"1"

    def expect(self, actual: object, expected: object, what: str) -> None:
        if actual != expected:
            raise self.fail(f"{what} is {actual!r}, expected {expected!r}")

    def version(self, allowed: tuple[int, ...], what: str) -> int:
        value = self.integer()
        if value not in allowed:
            raise self.fail(f"{what} version {value}, expected one of {allowed}")
        return value

    def tag(self, expected: tuple[str, ...]) -> str:
        name = self.string()
        if name not in expected:
            raise self.fail(f"layer {name!r}, expected {' or '.join(expected)}")
        return name

    def tensor(self) -> np.ndarray:
        """A resizable_tensor as a (num_samples, k, nr, nc) float32 view of the file's bytes."""
        import numpy as np

        self.version((2,), "tensor")
        shape = tuple(self.integer() for _ in range(4))
        if any(n < 0 for n in shape):
            raise self.fail(f"tensor shape {shape}")
        count = shape[0] * shape[1] * shape[2] * shape[3]
        start = self.pos
        self._take(4 * count)
        return np.frombuffer(self.data, dtype="<f4", count=count, offset=start).reshape(shape)

    def alias(self) -> tuple[int, int, int, int]:
        self.version((1,), "alias_tensor")
        n, k, nr, nc = (self.integer() for _ in range(4))
        return n, k, nr, nc


# The wrappers from the top down, as dlib serializes their versions: a layer ("con", n, size,
# stride), ("affine",), ("relu",), ("add_prev",), ("avg_pool",), ("max_pool",) ...; ("tag",)
# and ("skip",) have no details of their own.
_Wrapper = tuple[Any, ...]


def _residual_wrappers(channels: int, down: bool) -> list[_Wrapper]:
    block = [("affine",), ("con", channels, 3, 1), ("relu",), ("affine",), ("con", channels, 3, 2 if down else 1)]
    if down:
        return [("relu",), ("add_prev",), ("avg_pool", 2, 2), ("skip",), ("tag",), *block, ("tag",)]
    return [("relu",), ("add_prev",), *block, ("tag",)]


def _levels() -> list[tuple[int, bool]]:
    """(channels, down) for each residual block from the top (alevel0) down (alevel4)."""
    return [
        (256, True),
        *[(256, False)] * 2,
        (256, True),
        *[(128, False)] * 2,
        (128, True),
        *[(64, False)] * 3,
        (64, True),
        *[(32, False)] * 3,
    ]


def _wrappers() -> list[_Wrapper]:
    top: list[_Wrapper] = [("fc", DIMENSION), ("avg_pool", 0, 1)]
    for channels, down in _levels():
        top += _residual_wrappers(channels, down)
    return [*top, ("max_pool", 3, 2), ("relu",), ("affine",), ("con", 32, 7, 2)]


def load(path: Path) -> FaceNet:
    """Parse ``dlib_face_recognition_resnet_model_v1.dat``; ``ModelFormatError`` if it is not that network."""
    import numpy as np

    r = _Reader(path.read_bytes())
    r.version((1,), "loss layer")
    r.tag(("loss_metric_2",))
    r.real()  # margin and distance threshold: training settings
    r.real()
    wrappers = _wrappers()
    versions: list[int] = []
    for i, wrapper in enumerate(wrappers):
        kind = wrapper[0]
        if kind in ("tag", "skip"):
            versions.append(r.version((1,), f"add_{kind}_layer"))
        elif i == len(wrappers) - 1:  # the add_layer over the input layer
            versions.append(r.version((2, 3), "add_layer (input)"))
        else:
            versions.append(r.version((1, 2), "add_layer"))

    r.tag(("input_rgb_image_sized",))
    channel_means = _read_only(np.array([r.real(), r.real(), r.real()], dtype=np.float32))
    r.expect((r.integer(), r.integer()), (CHIP_SIZE, CHIP_SIZE), "input size")

    # Details from the bottom up; the parameter-bearing layers in that order.
    convs: list[_Conv] = []
    pending: tuple[np.ndarray, np.ndarray, int, int, int] | None = None  # a con waiting for its affine
    fc: np.ndarray | None = None
    in_channels = 3
    for i in reversed(range(len(wrappers))):
        wrapper = wrappers[i]
        kind = wrapper[0]
        if kind in ("tag", "skip"):
            continue
        if kind == "con":
            _, out_channels, size, stride = wrapper
            weights, bias = _read_con(r, in_channels, out_channels, size, stride)
            pending = (weights, bias, size, stride, 0 if stride != 1 else size // 2)
            in_channels = out_channels
        elif kind == "affine":
            if pending is None:
                raise r.fail("an affine layer not after a convolution")
            gamma, beta = _read_affine(r, in_channels)
            weights, bias, size, stride, padding = pending
            convs.append(_fold(weights, bias, gamma, beta, size, stride, padding))
            pending = None
        elif kind == "relu":
            r.tag(("relu_",))
        elif kind == "add_prev":
            r.tag(("add_prev_",))
        elif kind in ("avg_pool", "max_pool"):
            _, size, stride = wrapper
            r.tag((f"{kind}_2",))
            fields = tuple(r.integer() for _ in range(6))  # nr, nc, stride_y, stride_x, padding_y, padding_x
            r.expect(fields, (size, size, stride, stride, 0, 0), kind)
        elif kind == "fc":
            fc = _read_fc(r, in_channels, wrapper[1])
        else:  # pragma: no cover - the table above has no other kinds
            raise r.fail(f"unknown layer kind {kind}")
        _skip_layer_state(r, versions[i], is_input=i == len(wrappers) - 1)

    if r.pos != len(r.data):
        raise r.fail(f"{len(r.data) - r.pos} bytes left after the network")
    if fc is None or pending is not None:
        raise r.fail("the network is incomplete")
    stem, rest = convs[0], convs[1:]
    blocks = tuple(
        _Residual(first=rest[2 * j], second=rest[2 * j + 1], down=down)
        for j, (_, down) in enumerate(reversed(_levels()))
    )
    return FaceNet(channel_means=channel_means, stem=stem, blocks=blocks, fc=fc)


def _read_con(r: _Reader, in_channels: int, out_channels: int, size: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    version = r.tag(("con_4", "con_5"))
    params = r.tensor()
    padding = 0 if stride != 1 else size // 2  # con_'s default padding
    fields = tuple(r.integer() for _ in range(7))  # num_filters, nr, nc, stride_y, stride_x, padding_y, padding_x
    r.expect(fields, (out_channels, size, size, stride, stride, padding, padding), "con_ settings")
    r.expect(r.alias(), (out_channels, in_channels, size, size), "con_ filters")
    biases = r.alias()
    for _ in range(4):  # learning-rate and weight-decay multipliers
        r.real()
    if version == "con_5":
        r.expect(r.boolean(), True, "con_ use_bias")
    r.expect(biases, (1, out_channels, 1, 1), "con_ biases")
    filter_count = out_channels * in_channels * size * size
    r.expect(params.size, filter_count + out_channels, "con_ parameter count")
    flat = params.reshape(-1)
    return flat[:filter_count].reshape(out_channels, in_channels, size, size), flat[filter_count:]


def _read_affine(r: _Reader, channels: int) -> tuple[np.ndarray, np.ndarray]:
    r.tag(("affine_",))
    params = r.tensor()
    r.expect(r.alias(), (1, channels, 1, 1), "affine_ gamma")
    r.expect(r.alias(), (1, channels, 1, 1), "affine_ beta")
    r.expect(r.integer(), _CONV_MODE, "affine_ mode")
    r.expect(params.size, 2 * channels, "affine_ parameter count")
    flat = params.reshape(-1)
    return flat[:channels], flat[channels:]


def _read_fc(r: _Reader, num_inputs: int, num_outputs: int) -> np.ndarray:
    import numpy as np

    r.tag(("fc_2",))
    r.expect((r.integer(), r.integer()), (num_outputs, num_inputs), "fc_ outputs and inputs")
    params = r.tensor()
    r.expect(r.alias(), (num_inputs, num_outputs, 1, 1), "fc_ weights")
    r.alias()  # biases: unused without a bias
    r.expect(r.integer(), _FC_NO_BIAS, "fc_ bias mode")
    for _ in range(4):
        r.real()
    r.expect(params.size, num_inputs * num_outputs, "fc_ parameter count")
    return _read_only(np.ascontiguousarray(params.reshape(num_inputs, num_outputs), dtype=np.float32).copy())


def _read_only(array: np.ndarray) -> np.ndarray:
    """The frozen dataclasses do not freeze their arrays: a forward pass must not be able to change a weight."""
    array.setflags(write=False)
    return array


def _skip_layer_state(r: _Reader, version: int, *, is_input: bool) -> None:
    """add_layer's training state after its details: flags and scratch tensors, unused here."""
    for _ in range(3):  # this_layer_setup_called, gradient_input_is_stale, get_output_..._disabled
        r.boolean()
    r.tensor()  # x_grad
    r.tensor()  # cached_output
    if is_input:
        r.tensor()  # grad_final
        if version >= 3:
            r.integer()  # _sample_expansion_factor
    elif version >= 2:
        r.tensor()  # params_grad


def _fold(
    filters: np.ndarray, bias: np.ndarray, gamma: np.ndarray, beta: np.ndarray, size: int, stride: int, padding: int
) -> _Conv:
    """affine(con(x)) = con(x)·γ + β: scale the filters by γ and the bias to bias·γ + β.

    The filters go from dlib's (out, in, dy, dx) to im2col's (dy·dx·in, out). The result
    is a new array, so nothing keeps the file's bytes alive.
    """
    import numpy as np

    out_channels = filters.shape[0]
    weights = filters.transpose(2, 3, 1, 0).reshape(-1, out_channels) * gamma
    return _Conv(
        weights=_read_only(np.ascontiguousarray(weights, dtype=np.float32)),
        bias=_read_only((bias * gamma + beta).astype(np.float32)),
        size=size,
        stride=stride,
        padding=padding,
    )
