"""Run a TensorFlow.js graph model (``model.json`` + weight shards) with PyTorch.

No TF.js runtime exists on PyPI for this stack, so this module parses the graph topology
and the (possibly quantized) weights and executes only the nodes an output needs, in
topological order, batched. Tensors keep TensorFlow's layout (NHWC) so graph constants
(axes, slices, shapes) mean what they say; op kernels live in ``tfjs_ops``.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["Node", "TfjsGraph", "TfjsGraphError", "decode_weights", "parse_attr"]


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


def _split_ref(ref: str) -> tuple[str, int]:
    name, _, idx = ref.rpartition(":")
    if name and idx.isdigit():
        return name, int(idx)
    return ref, 0


class TfjsGraph:
    """An executable TF.js graph: ``run(feeds, outputs)`` evaluates only what ``outputs`` need.

    >>> g = TfjsGraph([Node("x", "Placeholder", [], {}), Node("y", "Relu", ["x"], {})], {})
    >>> g.run(torch.tensor([-1.0, 2.0]))["y"].tolist()
    [0.0, 2.0]
    """

    def __init__(self, nodes: Sequence[Node], weights: Mapping[str, np.ndarray],
                 signature: Mapping[str, Any] | None = None) -> None:
        from operators.models import tfjs_ops

        self.nodes: dict[str, Node] = {n.name: n for n in nodes}
        self.consts: dict[str, torch.Tensor] = {}
        for n in nodes:
            if n.op != "Const":
                continue
            if n.name in weights:
                self.consts[n.name] = torch.from_numpy(np.array(weights[n.name]))
            elif isinstance(n.attr.get("value"), np.ndarray):
                self.consts[n.name] = torch.from_numpy(np.array(n.attr["value"]))
            else:
                raise TfjsGraphError(f"Const node {n.name!r} has no value in the weights or the topology")
        missing = sorted({n.op for n in nodes} - set(tfjs_ops.OPS) - {"Const", "Placeholder"})
        if missing:
            raise TfjsGraphError(f"graph uses ops this executor does not implement: {missing}")
        sig = signature or {}
        self.inputs = [_split_ref(v.get("name", k))[0] for k, v in sig.get("inputs", {}).items()] or [
            n.name for n in nodes if n.op == "Placeholder"]
        consumed = {_split_ref(i)[0] for n in nodes for i in n.inputs}
        self.outputs = [_split_ref(v.get("name", k))[0] for k, v in sig.get("outputs", {}).items()] or [
            n.name for n in nodes if n.name not in consumed and n.op != "Const"]
        self._plans: dict[tuple[str, ...], tuple[list[Node], dict[str, int]]] = {}
        self._ops = tfjs_ops.OPS

    @classmethod
    def load(cls, model_json: str | Path) -> TfjsGraph:
        """Read ``model.json`` and its weight shards (paths relative to the json's folder)."""
        path = Path(model_json)
        try:
            model = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise TfjsGraphError(f"cannot read TF.js model {path}: {exc}") from exc
        if "modelTopology" not in model or "node" not in model["modelTopology"]:
            raise TfjsGraphError(f"{path} is not a TF.js graph model (no modelTopology.node)")
        weights: dict[str, np.ndarray] = {}
        for group in model.get("weightsManifest", []):
            data = b"".join((path.parent / p).read_bytes() for p in group["paths"])
            weights.update(decode_weights(group["weights"], data))
        nodes = [Node.from_json(d) for d in model["modelTopology"]["node"]]
        signature = model.get("signature") or model["modelTopology"].get("signature")
        return cls(nodes, weights, signature)

    def op_counts(self) -> Counter[str]:
        """How many nodes of each op type the graph holds."""
        return Counter(n.op for n in self.nodes.values())

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> TfjsGraph:
        """Move the constants to ``device``; ``dtype`` casts the floating-point ones (e.g. half on GPU)."""
        self.consts = {k: v.to(device, dtype if dtype is not None and v.is_floating_point() else v.dtype)
                       for k, v in self.consts.items()}
        for n in self.nodes.values():
            n.cache.clear()
        return self

    def _plan(self, outputs: tuple[str, ...]) -> tuple[list[Node], dict[str, int]]:
        """Topological order of the nodes ``outputs`` depend on, and each tensor's last use."""
        if outputs in self._plans:
            return self._plans[outputs]
        order: list[Node] = []
        state: dict[str, int] = {}  # 1 = visiting, 2 = done
        for out in outputs:
            stack = [(_split_ref(out)[0], False)]
            while stack:
                name, expanded = stack.pop()
                if expanded:
                    state[name] = 2
                    order.append(self.nodes[name])
                    continue
                if state.get(name) == 2:
                    continue
                if name not in self.nodes:
                    raise TfjsGraphError(f"graph has no node {name!r}")
                if state.get(name) == 1:
                    raise TfjsGraphError(f"graph has a cycle through {name!r}")
                state[name] = 1
                stack.append((name, True))
                for ref in reversed(self.nodes[name].inputs):
                    dep = _split_ref(ref)[0]
                    if state.get(dep) != 2:
                        stack.append((dep, False))
        last_use = {_split_ref(i)[0]: pos for pos, n in enumerate(order) for i in n.inputs}
        self._plans[outputs] = (order, last_use)
        return self._plans[outputs]

    @torch.inference_mode()
    def run(self, feeds: torch.Tensor | np.ndarray | Mapping[str, torch.Tensor | np.ndarray],
            outputs: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Evaluate ``outputs`` (default: the signature's) given input tensors by name.

        A bare tensor feeds the single input. Intermediate tensors are freed after their
        last use, so peak memory stays near the widest layer.
        """
        if not isinstance(feeds, Mapping):
            if len(self.inputs) != 1:
                raise TfjsGraphError(f"graph has inputs {self.inputs}; feed a dict by name")
            feeds = {self.inputs[0]: feeds}
        wanted = tuple(outputs or self.outputs)
        order, last_use = self._plan(wanted)
        keep = {_split_ref(o)[0] for o in wanted}
        env: dict[str, Any] = {}
        for pos, node in enumerate(order):
            if node.op == "Const":
                env[node.name] = self.consts[node.name]
            elif node.op == "Placeholder":
                if node.name not in feeds:
                    raise TfjsGraphError(f"input {node.name!r} was not fed; inputs: {self.inputs}")
                value = feeds[node.name]
                env[node.name] = torch.from_numpy(value) if isinstance(value, np.ndarray) else value
            else:
                args = []
                for ref in node.inputs:
                    name, k = _split_ref(ref)
                    v = env[name]
                    args.append(v[k] if isinstance(v, tuple) else v)
                try:
                    env[node.name] = self._ops[node.op](node, args)
                except TfjsGraphError:
                    raise
                except (RuntimeError, ValueError, IndexError, TypeError) as exc:
                    raise TfjsGraphError(f"{node.op} node {node.name!r} failed: {exc}") from exc
            for ref in node.inputs:
                name = _split_ref(ref)[0]
                if last_use.get(name) == pos and name not in keep:
                    env.pop(name, None)
        result = {}
        for ref in wanted:
            name, k = _split_ref(ref)
            v = env[name]
            result[ref] = v[k] if isinstance(v, tuple) else v
        return result
