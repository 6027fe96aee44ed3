"""Run a TensorFlow.js graph model (``model.json`` + weight shards) with PyTorch.

No TF.js runtime exists on PyPI for this stack, so this module parses the graph topology
and the (possibly quantized) weights and executes only the nodes an output needs, in
topological order, batched. Tensors keep TensorFlow's layout (NHWC) so graph constants
(axes, slices, shapes) mean what they say; op kernels live in ``tfjs_ops``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from operators.models.tfjs_nodes import Node, TfjsGraphError, decode_weights, parse_attr

__all__ = ["Node", "TfjsGraph", "TfjsGraphError", "decode_weights", "parse_attr"]


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
