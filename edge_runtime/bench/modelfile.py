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

