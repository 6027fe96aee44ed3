"""A TF.js graph (run by ``tfjs_graph``) exported once to ONNX and run on onnxruntime: same weights, same outputs.

``torch.onnx.export`` traces the torch executor (plus an optional tail, e.g. a detector's
peak decoding) into an ONNX graph; three exact graph passes then give onnxruntime what it
fuses best: constant subgraphs are folded (TF's SAME pads become constants), zero ``Pad``
nodes merge into the following ``Conv`` (ONNX convs take asymmetric pads), and TF's
``x * c * relu6(x + 3)`` / ``c * relu6(x + 3)`` become ``HardSwish`` / ``HardSigmoid`` times
``6c`` (the graph's ``c`` is a quantized 1/6, so the scale is kept, not dropped). The
file is built at setup time into the framewire cache, keyed by the weights' hash and the
exporter, under a file lock, and checked against the torch executor before it is used.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from operators.models.tfjs_graph import TfjsGraph, TfjsGraphError

__all__ = ["EXPORT_VERSION", "OnnxRunner", "export_onnx", "fold_constants", "fuse_hard_swish", "fuse_pads",
           "onnx_cache_path", "optimize"]

log = logging.getLogger(__name__)

EXPORT_VERSION = 1  # bump when the export or a pass changes: cached files are keyed by it
OPSET = 17
Tail = Callable[..., tuple[torch.Tensor, ...]]


def onnx_cache_path(name: str, weight_files: Sequence[Path], key: str = "", cache_dir: Path | None = None) -> Path:
    """``<cache>/onnx/<name>-<hash>.onnx``, the hash over the weight files, ``key``, torch and the exporter."""
    from operators.models.assets import models_cache_dir

    h = hashlib.sha256(f"{EXPORT_VERSION}|{torch.__version__}|{OPSET}|{key}".encode())
    for f in weight_files:
        h.update(Path(f).read_bytes())
    return (cache_dir or models_cache_dir() / "onnx") / f"{name}-{h.hexdigest()[:16]}.onnx"


class _Traced(torch.nn.Module):
    def __init__(self, graph: TfjsGraph, input_name: str, outputs: Sequence[str], tail: Tail | None) -> None:
        super().__init__()
        self.graph, self.input_name, self.outputs, self.tail = graph, input_name, list(outputs), tail

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.graph.run({self.input_name: x}, self.outputs)
        values = [out[o] for o in self.outputs]
        return tuple(self.tail(*values)) if self.tail else tuple(values)


def export_onnx(graph: TfjsGraph, input_name: str, input_shape: Sequence[int], outputs: Sequence[str],
                path: Path, *, tail: Tail | None = None, output_names: Sequence[str] | None = None,
                atol: float = 1e-3) -> Path:
    """Trace ``graph`` (float32, CPU) from ``input_name`` (NHWC ``input_shape``, batch dynamic) to ``outputs``
    (then ``tail``) into ONNX at ``path``, optimized and verified against the torch executor; atomic, locked."""
    import onnx

    from operators.models.assets import _locked

    path = Path(path)
    if path.is_file():
        return path
    with _locked(path.with_name(f".{path.name}.lock")):
        if path.is_file():
            return path
        names = list(output_names or [f"out{i}" for i in range(len(outputs))])
        module = _Traced(graph, input_name, outputs, tail)
        example = torch.rand(2, *input_shape[1:], generator=torch.Generator().manual_seed(0)) * 255
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        try:
            with warnings.catch_warnings():  # the tracer warns that shape arithmetic becomes constants: it should
                warnings.simplefilter("ignore")
                torch.onnx.export(module, (example,), str(tmp), input_names=["input"], output_names=names,
                                  dynamic_axes={"input": {0: "batch"}}, opset_version=OPSET, dynamo=False)
            model = optimize(onnx.load(str(tmp)))
            onnx.checker.check_model(model)
            onnx.save(model, str(tmp))
            want = [t.numpy() for t in module(example[:1])]
            got = OnnxRunner(tmp, threads=1).run(example[:1].numpy())
            for name, w, g in zip(names, want, got, strict=True):
                if w.shape != g.shape or not np.allclose(w, g, atol=atol, rtol=1e-3):
                    raise TfjsGraphError(f"ONNX export of {name!r} does not match the torch executor (max |diff| "
                                         f"{np.abs(w - g).max() if w.shape == g.shape else 'shape'}); "
                                         "use runtime: torch")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)  # a failed export leaves nothing behind
    log.info("exported %s", path)
    return path


# ---- graph passes (exact) --------------------------------------------------------------------
def fold_constants(model: Any) -> Any:
    """Evaluate every node whose inputs are all constants (onnx's reference evaluator); keep the rest."""
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    g = model.graph
    known = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    keep = []
    for n in g.node:
        ins = [i for i in n.input if i]
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            known[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        elif n.op_type != "Constant" and all(i in known for i in ins):
            for name, v in zip(n.output, ReferenceEvaluator(n).run(None, {i: known[i] for i in ins}), strict=False):
                known[name] = np.asarray(v)
        else:
            keep.append(n)
    used = {i for n in keep for i in n.input} | {o.name for o in g.output}
    del g.node[:]
    g.node.extend(keep)
    del g.initializer[:]
    g.initializer.extend(numpy_helper.from_array(v, k) for k, v in known.items() if k in used)
    return model


def _index(g: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, list[Any]]]:
    from onnx import numpy_helper

    prod = {o: n for n in g.node for o in n.output}
    init = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    cons: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            cons.setdefault(i, []).append(n)
    return prod, init, cons


def fuse_pads(model: Any) -> Any:
    """A constant zero ``Pad`` of the spatial axes feeding one ``Conv`` becomes that conv's (asymmetric) pads."""
    import onnx

    g = model.graph
    _, init, cons = _index(g)
    drop = set()
    for p in g.node:
        if p.op_type != "Pad" or len(p.input) < 2 or p.input[1] not in init or (len(p.input) > 2 and p.input[2]):
            continue
        if next((a.s for a in p.attribute if a.name == "mode"), b"constant") != b"constant":
            continue
        pads = init[p.input[1]].tolist()
        users = cons.get(p.output[0], [])
        if len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)) or len(users) != 1 or users[0].op_type != "Conv":
            continue
        conv = users[0]
        attr = next((a for a in conv.attribute if a.name == "pads"), None)
        old = list(attr.ints) if attr is not None else [0, 0, 0, 0]
        new = [old[0] + pads[2], old[1] + pads[3], old[2] + pads[6], old[3] + pads[7]]
        if attr is None:
            conv.attribute.append(onnx.helper.make_attribute("pads", new))
        else:
            del attr.ints[:]
            attr.ints.extend(new)
        conv.input[0] = p.input[0]
        drop.add(p.name)
    keep = [n for n in g.node if n.name not in drop]
    del g.node[:]
    g.node.extend(keep)
    return model


def fuse_hard_swish(model: Any) -> Any:
    """``Mul(Mul(x, c), Clip(Add(x, 3), 0, 6))`` -> ``HardSwish(x) * 6c``; ``Mul(c, Clip(Add(x, 3), 0, 6))`` ->
    ``HardSigmoid(x) * 6c``. Exact: ``c * x * clip(x + 3, 0, 6) = 6c * x * clip(x / 6 + 1/2, 0, 1)``."""
    from onnx import helper, numpy_helper

    g = model.graph
    prod, init, cons = _index(g)

    def scalar(name: str) -> float | None:
        v = init.get(name)
        return float(v.reshape(())) if v is not None and v.size == 1 else None

    drop: set[str] = set()
    repl: dict[str, list[Any]] = {}
    for clip in g.node:
        if clip.op_type != "Clip" or len(clip.input) != 3 or (scalar(clip.input[1]), scalar(clip.input[2])) != (0, 6):
            continue
        add = prod.get(clip.input[0])
        if add is None or add.op_type != "Add" or len(cons[clip.input[0]]) != 1:
            continue
        xs = [i for i in add.input if scalar(i) is None]
        if len(xs) != 1 or scalar(next(i for i in add.input if i != xs[0])) != 3.0:
            continue
        x, users = xs[0], cons[clip.output[0]]
        if len(users) != 1 or users[0].op_type != "Mul":
            continue
        mul = users[0]
        other = next(i for i in mul.input if i != clip.output[0])
        pre = prod.get(other)
        if (pre is not None and pre.op_type == "Mul" and x in pre.input and len(cons[other]) == 1
                and scalar(next(i for i in pre.input if i != x)) is not None):
            c, kind, kw = scalar(next(i for i in pre.input if i != x)), "HardSwish", {}
            drop.add(pre.name)
        elif scalar(other) is not None:
            c, kind, kw = scalar(other), "HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}
        else:
            continue
        out = mul.output[0]
        g.initializer.append(numpy_helper.from_array(np.array(6 * c, np.float32), f"{out}/scale"))
        repl[mul.name] = [helper.make_node(kind, [x], [f"{out}/{kind}"], name=f"{mul.name}/{kind}", **kw),
                          helper.make_node("Mul", [f"{out}/{kind}", f"{out}/scale"], [out], name=f"{mul.name}/scale")]
        drop |= {add.name, clip.name}
    nodes: list[Any] = []
    for n in g.node:
        if n.name in repl:
            nodes.extend(repl[n.name])
        elif n.name not in drop:
            nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    return model


def optimize(model: Any) -> Any:
    """The exact passes, in order."""
    return fuse_hard_swish(fuse_pads(fold_constants(model)))


class OnnxRunner:
    """An onnxruntime session on one exported file: ``run(x)`` -> the outputs as numpy arrays.

    ``device`` ``cuda`` uses the CUDA execution provider (errors clearly where onnxruntime has none).
    """

    def __init__(self, path: str | Path, *, threads: int | None = None, device: str = "cpu") -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = int(threads or torch.get_num_threads())
        so.inter_op_num_threads = 1
        # idle worker threads sleep instead of spinning: in a pipeline the decoder and publisher need those cycles
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3  # the NCHWc notice on saved models is not for us
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise TfjsGraphError("runtime onnx on cuda needs onnxruntime-gpu (CUDAExecutionProvider); install it "
                                     "or use runtime: torch")
            index = int(device.split(":", 1)[1]) if ":" in device else 0
            providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(path), so, providers=providers)
        self.input_name = self.session.get_inputs()[0].name

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        return list(self.session.run(None, {self.input_name: np.ascontiguousarray(x, np.float32)}))
