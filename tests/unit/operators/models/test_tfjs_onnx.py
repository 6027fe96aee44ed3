"""TF.js graph -> ONNX: the exact graph passes, the cached export and its outputs against the torch executor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from operators.models.tfjs_graph import Node, TfjsGraph  # noqa: E402
from operators.models.tfjs_onnx import OnnxRunner, export_onnx, onnx_cache_path  # noqa: E402

K = np.float32(0.16662598)  # the quantized 1/6 the CenterNet graph carries


def _graph() -> TfjsGraph:
    """A stride-2 SAME conv on 8x8 (TF pads 0 before, 1 after), TF's hard_swish, then x * hard_sigmoid(x)."""
    rng = np.random.default_rng(0)

    def const(name: str, value: np.ndarray) -> Node:
        return Node(name, "Const", [], {"value": np.asarray(value, np.float32)})

    nodes = [
        Node("x", "Placeholder", [], {}),
        const("w", rng.normal(0, 0.02, (3, 3, 3, 4))), const("b", rng.normal(0, 0.5, 4)),
        const("k", K), const("three", np.float32(3)),
        Node("conv", "_FusedConv2D", ["x", "w", "b"],
             {"strides": [1, 2, 2, 1], "padding": "SAME", "fused_ops": ["BiasAdd"]}),
        Node("hs/mul", "Mul", ["k", "conv"], {}), Node("hs/add", "Add", ["conv", "three"], {}),
        Node("hs/relu6", "Relu6", ["hs/add"], {}), Node("hs", "Mul", ["hs/mul", "hs/relu6"], {}),
        Node("sig/add", "Add", ["hs", "three"], {}), Node("sig/relu6", "Relu6", ["sig/add"], {}),
        Node("sig", "Mul", ["k", "sig/relu6"], {}), Node("y", "Mul", ["hs", "sig"], {}),
    ]
    return TfjsGraph(nodes, {})


def test_export_fuses_pads_and_hard_swish_with_the_same_outputs(tmp_path: Path) -> None:
    g = _graph()
    path = export_onnx(g, "x", (1, 8, 8, 3), ["y"], tmp_path / "tiny.onnx", output_names=["y"])
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Conv", "HardSwish", "HardSigmoid"} <= ops and not ops & {"Pad", "Clip"}
    x = torch.rand(3, 8, 8, 3) * 255  # another batch size than the trace's
    want = g.run({"x": x}, ["y"])["y"].numpy()
    (got,) = OnnxRunner(path, threads=1).run(x.numpy())
    assert got.shape == want.shape == (3, 4, 4, 4)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_export_is_cached_and_keyed_by_the_weights(tmp_path: Path) -> None:
    g = _graph()
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"weights one")
    b.write_bytes(b"weights two")
    pa = onnx_cache_path("tiny", [a], cache_dir=tmp_path)
    assert pa == onnx_cache_path("tiny", [a], cache_dir=tmp_path)
    assert pa != onnx_cache_path("tiny", [b], cache_dir=tmp_path) != onnx_cache_path("tiny", [a], "k=50", tmp_path)
    export_onnx(g, "x", (1, 8, 8, 3), ["y"], pa)
    stamp = pa.stat().st_mtime_ns
    assert export_onnx(g, "x", (1, 8, 8, 3), ["y"], pa) == pa and pa.stat().st_mtime_ns == stamp  # not rebuilt
    assert not list(tmp_path.glob("*.tmp"))
