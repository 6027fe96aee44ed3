"""The pieces of a TF.js graph model both the executor (``tfjs_graph``) and its ops (``tfjs_ops``) need:
nodes, attributes, dtypes, weight decoding and the error type; here so neither imports the other back."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["Node", "TF_DTYPES", "TfjsGraphError", "decode_weights", "parse_attr"]


class TfjsGraphError(ValueError):
    """The model file is malformed or uses something this executor does not implement."""


_NP_DTYPES: dict[str, Any] = {"float32": np.float32, "int32": np.int32, "bool": np.bool_,
                              "uint8": np.uint8, "uint16": np.uint16, "float16": np.float16, "int8": np.int8}
TF_DTYPES: dict[str, torch.dtype] = {
    "DT_FLOAT": torch.float32, "DT_HALF": torch.float16, "DT_BFLOAT16": torch.bfloat16, "DT_DOUBLE": torch.float64,
    "DT_INT32": torch.int32, "DT_INT64": torch.int64, "DT_INT8": torch.int8, "DT_UINT8": torch.uint8,
    "DT_INT16": torch.int16, "DT_BOOL": torch.bool,
}


def decode_weights(specs: Sequence[Mapping[str, Any]], data: bytes) -> dict[str, np.ndarray]:
    """Cut one weight group's concatenated shard bytes into named arrays, dequantizing.

    ``quantization`` ``{"dtype": "uint8"|"uint16", "scale", "min"}`` is affine
    (``q * scale + min``); ``{"dtype": "float16"}`` is half precision. Results have the
    original dtype (float32, int32 or bool).
    """
    out: dict[str, np.ndarray] = {}
    offset = 0
    for spec in specs:
        name, dtype, shape = spec["name"], spec["dtype"], [int(s) for s in spec.get("shape", [])]
        count = int(np.prod(shape)) if shape else 1
        quant = spec.get("quantization")
        stored = quant["dtype"] if quant else dtype
        if stored not in _NP_DTYPES or dtype not in ("float32", "int32", "bool"):
            raise TfjsGraphError(f"weight {name!r}: dtype {dtype} stored as {stored} is not supported")
        np_dtype = np.dtype(_NP_DTYPES[stored])
        end = offset + count * np_dtype.itemsize
        if end > len(data):
            raise TfjsGraphError(f"weight {name!r} ends at byte {end} but the weight data has {len(data)} bytes")
        raw = np.frombuffer(data, np_dtype, count, offset)
        offset = end
        if quant and stored in ("uint8", "uint16"):
            vals = raw.astype(np.float32) * np.float32(quant["scale"]) + np.float32(quant["min"])
            arr = np.rint(vals).astype(np.int32) if dtype == "int32" else vals
        else:
            arr = raw.astype(_NP_DTYPES[dtype])
        out[name] = np.ascontiguousarray(arr).reshape(shape)
    if offset != len(data):
        raise TfjsGraphError(f"weight manifest covers {offset} bytes but the weight data has {len(data)}")
    return out


def _tensor_proto(t: Mapping[str, Any]) -> np.ndarray:
    """A TensorProto (as JSON) inlined in a Const node's ``value`` attribute."""
    dtype = TF_DTYPES.get(t.get("dtype", "DT_FLOAT"), torch.float32)
    np_dtype = torch.empty(0, dtype=dtype).numpy().dtype if dtype != torch.bfloat16 else np.float32
    shape = [int(d.get("size", 0)) for d in t.get("tensorShape", {}).get("dim", [])]
    count = int(np.prod(shape)) if shape else 1
    if "tensorContent" in t:
        arr = np.frombuffer(base64.b64decode(t["tensorContent"]), np_dtype).copy()
    else:
        key = next((k for k in ("floatVal", "intVal", "int64Val", "boolVal", "doubleVal", "halfVal") if k in t), None)
        vals = t[key] if key else [0]
        arr = np.array([float(v) if key in ("floatVal", "doubleVal") else int(v) for v in vals], np_dtype)
        if arr.size < count:  # TensorProto repeats the last value to fill the shape
            arr = np.concatenate([arr, np.full(count - arr.size, arr[-1] if arr.size else 0, np_dtype)])
    return arr.reshape(shape)


def parse_attr(value: Mapping[str, Any]) -> Any:
    """Decode one AttrValue: ints arrive as strings and strings as base64."""
    if "list" in value:
        lst = value["list"]
        if "i" in lst:
            return [int(v) for v in lst["i"]]
        if "s" in lst:
            return [base64.b64decode(v).decode() for v in lst["s"]]
        if "f" in lst:
            return [float(v) for v in lst["f"]]
        if "type" in lst:
            return list(lst["type"])
        return []
    if "s" in value:
        return base64.b64decode(value["s"]).decode()
    if "i" in value:
        return int(value["i"])
    if "f" in value:
        return float(value["f"])
    if "b" in value:
        return bool(value["b"])
    if "type" in value:
        return value["type"]
    if "tensor" in value:
        return _tensor_proto(value["tensor"])
    if "shape" in value:
        return [int(d.get("size", -1)) for d in value["shape"].get("dim", [])]
    return None


@dataclass
class Node:
    """One graph node; ``inputs`` are data inputs (``name`` or ``name:k``), control inputs dropped."""

    name: str
    op: str
    inputs: list[str]
    attr: dict[str, Any]
    cache: dict[str, Any] = field(default_factory=dict)  # per-node prepared constants (conv filters)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Node:
        inputs = [i for i in d.get("input", []) if not i.startswith("^")]
        attr = {k: parse_attr(v) for k, v in d.get("attr", {}).items()}
        return cls(d["name"], d["op"], inputs, attr)
