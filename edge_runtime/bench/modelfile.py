"""The model file: GFLOP per inference counted from a .tflite flatbuffer, with no TensorFlow.

Only the multiply-accumulate-heavy ops are counted, from the tensor shapes stored in the
model (a fixed-batch export has every shape); one MAC is two FLOPs:
  CONV_2D            output N*Ho*Wo*Co x Kh*Kw*Ci        (filter [Co, Kh, Kw, Ci])
  DEPTHWISE_CONV_2D  output N*Ho*Wo*Co x Kh*Kw           (filter [1, Kh, Kw, Co])
  TRANSPOSE_CONV     input  N*H*W*Ci  x Kh*Kw*Co         (every input pixel meets the kernel)
  FULLY_CONNECTED    output elements x input features    (weights [O, I])
  BATCH_MATMUL       output elements x the shared dimension
Element-wise ops, pooling and resizing are not counted (a few % of a U-Net's arithmetic).
The reader implements just enough of the FlatBuffers wire format for the TFLite schema
(tables, vectors, scalars) to work with no flatbuffers/tensorflow package on the device.
"""

import math
import struct

# BuiltinOperator codes (tensorflow/compiler/mlir/lite/schema/schema.fbs)
CONV_2D = 3
DEPTHWISE_CONV_2D = 4
FULLY_CONNECTED = 9
TRANSPOSE_CONV = 67
BATCH_MATMUL = 126
COUNTED = {CONV_2D: "CONV_2D", DEPTHWISE_CONV_2D: "DEPTHWISE_CONV_2D",
           FULLY_CONNECTED: "FULLY_CONNECTED", TRANSPOSE_CONV: "TRANSPOSE_CONV",
           BATCH_MATMUL: "BATCH_MATMUL"}


class _Table:
    """A FlatBuffers table: field access by field id."""

    __slots__ = ("buf", "pos", "vt", "vt_len")

    def __init__(self, buf, pos):
        self.buf, self.pos = buf, pos
        self.vt = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vt_len = struct.unpack_from("<H", buf, self.vt)[0]

    def _offset(self, field_id):
        slot = 4 + 2 * field_id
        if slot + 2 > self.vt_len:
            return 0
        return struct.unpack_from("<H", self.buf, self.vt + slot)[0]

    def scalar(self, field_id, fmt, default=0):
        off = self._offset(field_id)
        return default if not off else struct.unpack_from("<" + fmt, self.buf, self.pos + off)[0]

    def _target(self, field_id):
        off = self._offset(field_id)
        if not off:
            return None
        at = self.pos + off
        return at + struct.unpack_from("<I", self.buf, at)[0]

    def vector(self, field_id, fmt):
        """A vector of scalars -> tuple (empty when absent)."""
        at = self._target(field_id)
        if at is None:
            return ()
        n = struct.unpack_from("<I", self.buf, at)[0]
        return struct.unpack_from(f"<{n}{fmt}", self.buf, at + 4)

    def tables(self, field_id):
        """A vector of tables -> list of _Table."""
        at = self._target(field_id)
        if at is None:
            return []
        n = struct.unpack_from("<I", self.buf, at)[0]
        out = []
        for i in range(n):
            el = at + 4 + 4 * i
            out.append(_Table(self.buf, el + struct.unpack_from("<I", self.buf, el)[0]))
        return out


def _prod(values):
    out = 1
    for v in values:
        out *= max(int(v), 1)
    return out


def count_macs(model_bytes):
    """-> {"macs": int, "gflop": float (2 x MACs / 1e9), "by_op": {name: macs}, "ops": int,
    "counted_ops": int}; raises ValueError when the bytes are not a TFLite model."""
    buf = bytes(model_bytes)
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ValueError("not a TFLite flatbuffer (no TFL3 identifier)")
    try:
        model = _Table(buf, struct.unpack_from("<I", buf, 0)[0])
        codes = []
        for oc in model.tables(1):                       # operator_codes
            deprecated = oc.scalar(0, "b", 0)            # deprecated_builtin_code: byte
            builtin = oc.scalar(3, "i", 0)               # builtin_code: int
            codes.append(max(deprecated, builtin))
        subgraphs = model.tables(2)
        if not subgraphs:
            raise ValueError("model has no subgraph")
        sub = subgraphs[0]                               # the main graph
        shapes = [t.vector(0, "i") for t in sub.tables(0)]
        by_op, n_ops, n_counted = {}, 0, 0
        for op in sub.tables(3):
            n_ops += 1
            code = codes[op.scalar(0, "I", 0)]
            if code not in COUNTED:
                continue
            ins = op.vector(1, "i")
            outs = op.vector(2, "i")
            macs = _op_macs(code, [shapes[i] if i >= 0 else () for i in ins],
                            [shapes[i] for i in outs])
            if macs:
                n_counted += 1
                by_op[COUNTED[code]] = by_op.get(COUNTED[code], 0) + macs
    except (struct.error, IndexError) as exc:
        raise ValueError(f"damaged TFLite flatbuffer ({exc})") from None
    total = sum(by_op.values())
    return {"macs": total, "gflop": 2.0 * total / 1e9, "by_op": by_op, "ops": n_ops,
            "counted_ops": n_counted}


def _op_macs(code, ins, outs):
    out = outs[0] if outs else ()
    if code == CONV_2D and len(ins) >= 2 and len(ins[1]) == 4:
        return _prod(out) * _prod(ins[1][1:])
    if code == DEPTHWISE_CONV_2D and len(ins) >= 2 and len(ins[1]) == 4:
        return _prod(out) * _prod(ins[1][1:3])
    if code == TRANSPOSE_CONV and len(ins) >= 3 and len(ins[1]) == 4:
        return _prod(ins[2]) * _prod(ins[1][:3])
    if code == FULLY_CONNECTED and len(ins) >= 2 and len(ins[1]) == 2:
        return _prod(out) * int(ins[1][1])
    if code == BATCH_MATMUL and len(ins) >= 2 and ins[0]:
        return _prod(out) * int(ins[0][-1])
    return 0


def model_gflop(model_bytes, manifest=None):
    """GFLOP per inference: counted from the flatbuffer, else a manifest's ``gflops`` field,
    else None."""
    try:
        return count_macs(model_bytes)["gflop"]
    except ValueError:
        pass
    value = (manifest or {}).get("gflops")
    return float(value) if isinstance(value, (int, float)) else None



# ----------------------------------------------------------------------------- seeded weights
#
# A random-weight reference (the paper-size Res-UNet+AG: 31 / 116 MB) is too big to commit,
# but its speed and size do not depend on its weight values. So the kit commits a template:
# the same model with every filter (the weight input of CONV_2D, DEPTHWISE_CONV_2D,
# TRANSPOSE_CONV, FULLY_CONNECTED) set to zero, which deflates to almost nothing, and the
# device fills the filters back from a seed. The fill uses only the PCG64 bit generator's raw
# output (numpy guarantees that stream on every platform and version) and IEEE arithmetic, so
# every machine makes the same bytes and the kit can pin their sha256.

SEEDED_SCHEME = "pcg64-raw-v1"
# TensorType codes -> (numpy dtype name, bytes per element); the types a filter can have
_FILTER_TYPES = {0: ("float32", 4), 1: ("float16", 2), 9: ("int8", 1)}
_FILTER_OPS = (CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE_CONV, FULLY_CONNECTED)


def filter_buffers(model_bytes):
    """The constant filters of a TFLite model -> list of dicts ``buffer`` (index), ``offset``
    and ``nbytes`` (of its data in ``model_bytes``), ``type`` (float32, float16 or int8),
    ``shape``, ``fan_in``; each buffer once, in buffer order. Raises ValueError when the bytes
    are not a TFLite model or a filter's data does not match its shape and type."""
    buf = bytes(model_bytes)
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ValueError("not a TFLite flatbuffer (no TFL3 identifier)")
    try:
        model = _Table(buf, struct.unpack_from("<I", buf, 0)[0])
        codes = [max(oc.scalar(0, "b", 0), oc.scalar(3, "i", 0)) for oc in model.tables(1)]
        buffers = model.tables(4)
        found = {}
        for sub in model.tables(2):
            tensors = sub.tables(0)
            for op in sub.tables(3):
                code = codes[op.scalar(0, "I", 0)]
                ins = op.vector(1, "i")
                if code not in _FILTER_OPS or len(ins) < 2 or ins[1] < 0:
                    continue
                t = tensors[ins[1]]
                index = t.scalar(2, "I", 0)
                if index == 0 or index in found:
                    continue
                at = buffers[index]._target(0)              # Buffer.data: [ubyte]
                if at is None:
                    continue                                 # a runtime tensor, not a constant
                nbytes = struct.unpack_from("<I", buf, at)[0]
                ttype = t.scalar(1, "b", 0)
                shape = tuple(t.vector(0, "i"))
                if ttype not in _FILTER_TYPES:
                    raise ValueError(f"filter of tensor type {ttype} (allowed: float32, "
                                     "float16, int8)")
                name, size = _FILTER_TYPES[ttype]
                if nbytes != _prod(shape) * size:
                    raise ValueError(f"filter buffer {index} holds {nbytes} bytes, its shape "
                                     f"{list(shape)} of {name} needs {_prod(shape) * size}")
                fan_in = (_prod(shape[1:3]) if code == DEPTHWISE_CONV_2D
                          else _prod(shape[1:]))
                found[index] = {"buffer": index, "offset": at + 4, "nbytes": nbytes,
                                "type": name, "shape": shape, "fan_in": fan_in}
    except (struct.error, IndexError) as exc:
        raise ValueError(f"damaged TFLite flatbuffer ({exc})") from None
    return [found[i] for i in sorted(found)]


def _seeded_values(np, seed, index, count, dtype, fan_in):
    """``count`` values of ``dtype`` for filter buffer ``index``: int8 uniform on -127..127;
    floats uniform on +-sqrt(6 / fan_in) (He uniform), from PCG64(seed, index) raw bits."""
    bits = np.random.PCG64([int(seed), int(index)]).random_raw((count + 1) // 2)
    words = bits.astype("<u8").view("<u4")[:count]              # two 32-bit words per draw
    if dtype == "int8":
        return ((words % 255).astype(np.int16) - 127).astype(np.int8)
    unit = (words >> 8).astype(np.float64) * (1.0 / (1 << 24))  # [0, 1), 24 exact bits
    limit = math.sqrt(6.0 / max(int(fan_in), 1))            # IEEE: correctly rounded
    return ((unit * 2.0 - 1.0) * limit).astype(dtype)


def seeded_weights(model_bytes, seed=0, zero=False):
    """The model with every constant filter (``filter_buffers``) refilled from ``seed`` (or
    set to zero: the template a kit commits) -> bytes of the same length; every other byte
    (graph, biases, quantization scales) is kept. Deterministic on every platform."""
    import numpy as np
    out = bytearray(model_bytes)
    for f in filter_buffers(out):
        if zero:
            out[f["offset"]:f["offset"] + f["nbytes"]] = bytes(f["nbytes"])
            continue
        count = f["nbytes"] // np.dtype(f["type"]).itemsize
        values = _seeded_values(np, seed, f["buffer"], count, f["type"], f["fan_in"])
        out[f["offset"]:f["offset"] + f["nbytes"]] = values.astype(
            np.dtype(f["type"]).newbyteorder("<")).tobytes()
    return bytes(out)
