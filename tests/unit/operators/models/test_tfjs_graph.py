"""The TF.js graph executor, op by op against numpy references written from TF's definitions,
and a tiny hand-written graph (JSON + quantized weight bin) executed end to end."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from operators.models.tfjs_graph import Node, TfjsGraph, TfjsGraphError, decode_weights
from operators.models.tfjs_ops import OPS, same_pads

RNG = np.random.default_rng(0)


# ---- numpy references (TF semantics, written independently of the torch kernels) ----------
def ref_pads(size: int, k: int, s: int, d: int, padding: str) -> tuple[int, int, int]:
    """(out, pad_before, pad_after) as in TF's GetWindowedOutputSize."""
    eff = (k - 1) * d + 1
    if padding == "VALID":
        return (size - eff) // s + 1, 0, 0
    out = (size + s - 1) // s
    need = max(0, (out - 1) * s + eff - size)
    return out, need // 2, need - need // 2


def ref_conv(x: np.ndarray, f: np.ndarray, s: int, padding: str, d: int = 1, depthwise: bool = False) -> np.ndarray:
    n, h, w, c = x.shape
    kh, kw = f.shape[:2]
    oh, pt, pb = ref_pads(h, kh, s, d, padding)
    ow, pl, pr = ref_pads(w, kw, s, d, padding)
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    cout = c * f.shape[3] if depthwise else f.shape[3]
    y = np.zeros((n, oh, ow, cout))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, i * s:i * s + (kh - 1) * d + 1:d, j * s:j * s + (kw - 1) * d + 1:d, :]  # n,kh,kw,c
            if depthwise:
                y[:, i, j, :] = np.einsum("nhwc,hwcm->ncm", patch, f).reshape(n, -1)
            else:
                y[:, i, j, :] = np.einsum("nhwc,hwco->no", patch, f)
    return y


def ref_resize_bilinear(x: np.ndarray, oh: int, ow: int, align: bool, half: bool) -> np.ndarray:
    def weights(out: int, size: int) -> list[tuple[int, int, float]]:
        scale = (size - 1) / (out - 1) if align and out > 1 else size / out
        res = []
        for o in range(out):
            src = (o + 0.5) * scale - 0.5 if half else o * scale
            lo = max(int(np.floor(src)), 0)
            hi = min(int(np.ceil(src)), size - 1)
            res.append((lo, hi, src - np.floor(src)))
        return res

    n, h, w, c = x.shape
    y = np.zeros((n, oh, ow, c))
    for i, (t, b, fy) in enumerate(weights(oh, h)):
        for j, (lft, r, fx) in enumerate(weights(ow, w)):
            top = x[:, t, lft] + (x[:, t, r] - x[:, t, lft]) * fx
            bot = x[:, b, lft] + (x[:, b, r] - x[:, b, lft]) * fx
            y[:, i, j] = top + (bot - top) * fy
    return y


def ref_resize_nearest(x: np.ndarray, oh: int, ow: int, align: bool, half: bool) -> np.ndarray:
    def index(out: int, size: int) -> list[int]:
        scale = (size - 1) / (out - 1) if align and out > 1 else size / out
        idx = []
        for o in range(out):
            src = (o + 0.5) * scale if half else o * scale
            i = int(np.floor(src + 0.5)) if align else int(np.floor(src))
            idx.append(max(0, min(i, size - 1)))
        return idx

    return x[:, index(oh, x.shape[1])][:, :, index(ow, x.shape[2])]


def ref_pool(x: np.ndarray, k: int, s: int, padding: str, kind: str) -> np.ndarray:
    n, h, w, c = x.shape
    oh, pt, _ = ref_pads(h, k, s, 1, padding)
    ow, pl, _ = ref_pads(w, k, s, 1, padding)
    y = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * s - pt, j * s - pl
            win = x[:, max(r0, 0):min(r0 + k, h), max(c0, 0):min(c0 + k, w)]
            y[:, i, j] = win.max(axis=(1, 2)) if kind == "max" else win.mean(axis=(1, 2))
    return y


# ---- helpers -------------------------------------------------------------------------------
def node(op: str, **attr: Any) -> Node:
    return Node("n", op, [], attr)


def run_op(op: str, args: list[Any], **attr: Any) -> Any:
    tensors = [torch.as_tensor(a) for a in args]
    return OPS[op](node(op, **attr), tensors)


def conv_attrs(s: int, padding: str, d: int = 1) -> dict[str, Any]:
    return {"strides": [1, s, s, 1], "padding": padding, "dilations": [1, d, d, 1], "data_format": "NHWC"}


def close(a: torch.Tensor, b: np.ndarray, tol: float = 1e-4) -> None:
    assert tuple(a.shape) == b.shape, (tuple(a.shape), b.shape)
    np.testing.assert_allclose(a.double().numpy(), b, rtol=tol, atol=tol)


# ---- convolutions --------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(7, 8), (8, 8), (5, 6)])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("k", [1, 3])
def test_conv2d(size: tuple[int, int], stride: int, padding: str, k: int) -> None:
    x = RNG.normal(size=(2, *size, 3)).astype(np.float32)
    f = RNG.normal(size=(k, k, 3, 5)).astype(np.float32)
    close(run_op("Conv2D", [x, f], **conv_attrs(stride, padding)), ref_conv(x, f, stride, padding))


def test_conv2d_dilated_and_asymmetric_same_pad() -> None:
    x = RNG.normal(size=(1, 9, 10, 2)).astype(np.float32)
    f = RNG.normal(size=(3, 3, 2, 4)).astype(np.float32)
    close(run_op("Conv2D", [x, f], **conv_attrs(1, "SAME", 2)), ref_conv(x, f, 1, "SAME", 2))
    assert same_pads(8, 3, 2) == (0, 1)  # TF puts the odd pad after; torch's symmetric pad would differ
    assert same_pads(7, 3, 2) == (1, 1) and same_pads(8, 4, 1) == (1, 2)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("mult", [1, 2])
def test_depthwise(stride: int, mult: int) -> None:
    x = RNG.normal(size=(2, 8, 7, 3)).astype(np.float32)
    f = RNG.normal(size=(3, 3, 3, mult)).astype(np.float32)
    close(run_op("DepthwiseConv2dNative", [x, f], **conv_attrs(stride, "SAME")),
          ref_conv(x, f, stride, "SAME", depthwise=True))


@pytest.mark.parametrize("act", ["Relu", "Relu6", "Prelu", "LeakyRelu", None])
@pytest.mark.parametrize("depthwise", [False, True])
def test_fused_conv(act: str | None, depthwise: bool) -> None:
    x = (RNG.normal(size=(2, 6, 6, 4)) * 4).astype(np.float32)
    f = RNG.normal(size=(3, 3, 4, 1 if depthwise else 5)).astype(np.float32)
    cout = 4 if depthwise else 5
    bias = RNG.normal(size=cout).astype(np.float32)
    alpha = RNG.uniform(0.1, 0.5, size=cout).astype(np.float32)
    y = ref_conv(x, f, 2, "SAME", depthwise=depthwise) + bias
    want = {"Relu": np.maximum(y, 0), "Relu6": np.clip(y, 0, 6), "Prelu": np.where(y > 0, y, y * alpha),
            "LeakyRelu": np.where(y > 0, y, y * 0.3), None: y}[act]
    args = [x, f, bias] + ([alpha] if act == "Prelu" else [])
    op = "FusedDepthwiseConv2dNative" if depthwise else "_FusedConv2D"
    got = run_op(op, args, fused_ops=["BiasAdd"] + ([act] if act else []), leakyrelu_alpha=0.3,
                 num_args=len(args) - 2, **conv_attrs(2, "SAME"))
    close(got, want)


def test_fused_conv_refuses_unknown_fusion() -> None:
    x, f = np.zeros((1, 4, 4, 2), np.float32), np.zeros((1, 1, 2, 2), np.float32)
    with pytest.raises(TfjsGraphError, match="fused_ops"):
        run_op("_FusedConv2D", [x, f, np.zeros(2, np.float32)], fused_ops=["FusedBatchNorm"], **conv_attrs(1, "SAME"))


# ---- resize, pooling, padding --------------------------------------------------------------
@pytest.mark.parametrize("out", [(8, 8), (9, 13), (3, 2), (1, 1)])
@pytest.mark.parametrize("align,half", [(False, False), (True, False), (False, True)])
def test_resize_bilinear(out: tuple[int, int], align: bool, half: bool) -> None:
    x = RNG.normal(size=(2, 4, 5, 3)).astype(np.float32)
    got = run_op("ResizeBilinear", [x, np.array(out, np.int32)], align_corners=align, half_pixel_centers=half)
    close(got, ref_resize_bilinear(x, *out, align, half))


@pytest.mark.parametrize("out", [(8, 10), (3, 2), (7, 7)])
@pytest.mark.parametrize("align,half", [(False, False), (True, False), (False, True)])
def test_resize_nearest(out: tuple[int, int], align: bool, half: bool) -> None:
    x = RNG.normal(size=(1, 4, 5, 2)).astype(np.float32)
    got = run_op("ResizeNearestNeighbor", [x, np.array(out, np.int32)], align_corners=align, half_pixel_centers=half)
    close(got, ref_resize_nearest(x, *out, align, half))


@pytest.mark.parametrize("k,s", [(3, 1), (3, 2), (2, 2)])
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool(k: int, s: int, padding: str, kind: str) -> None:
    x = RNG.normal(size=(2, 7, 6, 3)).astype(np.float32) - 5  # negative: a zero-padded max would be wrong
    got = run_op("MaxPool" if kind == "max" else "AvgPool", [x], ksize=[1, k, k, 1], strides=[1, s, s, 1],
                 padding=padding)
    close(got, ref_pool(x, k, s, padding, kind))


@pytest.mark.parametrize("op,mode,np_mode", [("Pad", None, "constant"), ("MirrorPad", "REFLECT", "reflect"),
                                             ("MirrorPad", "SYMMETRIC", "symmetric")])
def test_pad(op: str, mode: str | None, np_mode: str) -> None:
    x = RNG.normal(size=(2, 4, 5, 3)).astype(np.float32)
    pads = np.array([[0, 0], [1, 2], [2, 1], [0, 0]], np.int32)
    attr = {"mode": mode} if mode else {}
    close(run_op(op, [x, pads], **attr), np.pad(x, pads, mode=np_mode))
    got = run_op("PadV2", [x, pads, np.float32(-3)])
    close(got, np.pad(x, pads, constant_values=-3))


# ---- shape and index ops -------------------------------------------------------------------
def test_concat_mean_reshape_expand_cast() -> None:
    a, b = RNG.normal(size=(2, 3, 4, 2)), RNG.normal(size=(2, 3, 4, 5))
    close(run_op("ConcatV2", [a, b, np.int32(3)]), np.concatenate([a, b], 3))
    close(run_op("ConcatV2", [a, a, np.int32(-4)]), np.concatenate([a, a], 0))
    close(run_op("Mean", [b, np.array([1, 2], np.int32)], keep_dims=True), b.mean((1, 2), keepdims=True))
    close(run_op("Mean", [b, np.array([-1], np.int32)], keep_dims=False), b.mean(-1))
    close(run_op("Reshape", [b, np.array([2, -1], np.int32)]), b.reshape(2, -1))
    close(run_op("ExpandDims", [b, np.int32(-1)]), b[..., None])
    assert run_op("Cast", [np.array([1.7, -1.7])], DstT="DT_INT32").tolist() == [1, -1]
    assert run_op("Cast", [np.array([True, False])], DstT="DT_FLOAT").dtype == torch.float32


@pytest.mark.parametrize("begin,end,strides,masks,index", [
    ([0, 0, 1], [0, 0, 2], [1, 1, 1], dict(begin_mask=3, end_mask=3), np.s_[:, :, 1:2]),
    ([1, 0], [3, 0], [1, 1], dict(end_mask=2), np.s_[1:3, 0:]),
    ([0, 2], [0, 0], [1, 1], dict(begin_mask=1, end_mask=1, shrink_axis_mask=2), np.s_[:, 2]),
    ([0, 0], [0, 0], [1, -1], dict(begin_mask=3, end_mask=3), np.s_[:, ::-1]),
    ([0, -1], [0, 0], [1, -2], dict(begin_mask=1, end_mask=3), np.s_[:, -1::-2]),
    ([0, 0, 1], [0, 0, 3], [1, 1, 1], dict(ellipsis_mask=1, new_axis_mask=2), np.s_[..., None, 1:3]),
    ([-3], [-1], [1], {}, np.s_[-3:-1]),
    ([5], [9], [1], {}, np.s_[5:9]),
])
def test_strided_slice(begin: list[int], end: list[int], strides: list[int], masks: dict[str, int],
                       index: Any) -> None:
    x = RNG.normal(size=(4, 5, 6))
    got = run_op("StridedSlice", [x, np.array(begin, np.int32), np.array(end, np.int32), np.array(strides, np.int32)],
                 **masks)
    close(got, x[index])


def test_topk_gather_floor_ops() -> None:
    x = RNG.permutation(40).astype(np.float32).reshape(2, 20)
    vals, idx = run_op("TopKV2", [x, np.int32(5)])
    assert idx.dtype == torch.int32
    np.testing.assert_array_equal(vals.numpy(), -np.sort(-x, axis=1)[:, :5])
    np.testing.assert_array_equal(np.take_along_axis(x, idx.numpy(), 1), vals.numpy())
    p = RNG.normal(size=(6, 4))
    i = np.array([[5, 0], [2, 2]], np.int32)
    close(run_op("GatherV2", [p, i, np.int32(0)]), np.take(p, i, axis=0))
    close(run_op("GatherV2", [p, np.array([3, 1], np.int32), np.int32(1)]), p[:, [3, 1]])
    a, b = np.array([7, -7, 9], np.int32), np.array([2, 2, -4], np.int32)
    assert run_op("FloorDiv", [a, b]).tolist() == np.floor_divide(a, b).tolist()
    assert run_op("FloorMod", [a, b]).tolist() == np.mod(a, b).tolist()
    assert run_op("Equal", [a, np.int32(7)]).tolist() == [True, False, False]


# ---- weights and whole graphs --------------------------------------------------------------
def test_decode_weights_dequantizes() -> None:
    f32 = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    half = np.array([0.5, -2.25, 1e-3], np.float16)
    q8 = np.array([0, 128, 255], np.uint8)
    q16 = np.array([1, 40000], np.uint16)
    i32 = np.array([3, -1], np.int32)
    data = f32.tobytes() + half.tobytes() + q8.tobytes() + q16.tobytes() + i32.tobytes()
    specs = [
        {"name": "a", "dtype": "float32", "shape": [2, 3]},
        {"name": "h", "dtype": "float32", "shape": [3], "quantization": {"dtype": "float16"}},
        {"name": "q8", "dtype": "float32", "shape": [3], "quantization": {"dtype": "uint8", "scale": 0.1, "min": -1}},
        {"name": "q16", "dtype": "float32", "shape": [2], "quantization": {"dtype": "uint16", "scale": 1e-3,
                                                                           "min": 2.0}},
        {"name": "i", "dtype": "int32", "shape": [2]},
    ]
    w = decode_weights(specs, data)
    np.testing.assert_array_equal(w["a"], f32)
    np.testing.assert_array_equal(w["h"], half.astype(np.float32))
    np.testing.assert_allclose(w["q8"], [-1.0, 11.8, 24.5], rtol=1e-6)
    np.testing.assert_allclose(w["q16"], [2.001, 42.0], rtol=1e-6)
    assert w["i"].dtype == np.int32 and w["i"].tolist() == [3, -1]
    with pytest.raises(TfjsGraphError, match="bytes"):
        decode_weights(specs, data + b"\0")


def _attr(v: Any) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"b": v}
    if isinstance(v, str):
        return {"s": base64.b64encode(v.encode()).decode()}
    if isinstance(v, list) and v and isinstance(v[0], str):
        return {"list": {"s": [base64.b64encode(s.encode()).decode() for s in v]}}
    if isinstance(v, list):
        return {"list": {"i": [str(i) for i in v]}}
    return {"i": str(v)}


def _write_tiny_graph(folder: Path) -> dict[str, np.ndarray]:
    """conv(SAME, s2)+bias+relu6 -> depthwise+bias+prelu -> resize x2 -> concat with input -> SE-style mean*mul."""
    w = {
        "w": (RNG.normal(size=(3, 3, 2, 4)) * 0.5).astype(np.float32),
        "b": RNG.uniform(-1, 1, size=4).astype(np.float32),
        "dw": (RNG.normal(size=(3, 3, 4, 1)) * 0.5).astype(np.float32),
        "db": RNG.normal(size=4).astype(np.float32),
        "alpha": np.full(4, 0.25, np.float32),
    }
    w["w"] = w["w"].astype(np.float16).astype(np.float32)  # stored as float16: exact after the round trip
    lo, hi = float(w["b"].min()), float(w["b"].max())
    scale = (hi - lo) / 255
    q = np.rint((w["b"] - lo) / scale).astype(np.uint8)
    w["b"] = (q.astype(np.float32) * np.float32(scale) + np.float32(lo)).astype(np.float32)
    consts = {"size": np.array([6, 6], np.int32), "axis": np.array(3, np.int32), "red": np.array([1, 2], np.int32)}
    specs = [
        {"name": "w", "dtype": "float32", "shape": [3, 3, 2, 4], "quantization": {"dtype": "float16",
                                                                                  "original_dtype": "float32"}},
        {"name": "b", "dtype": "float32", "shape": [4], "quantization": {"dtype": "uint8", "scale": scale,
                                                                         "min": lo, "original_dtype": "float32"}},
        {"name": "dw", "dtype": "float32", "shape": [3, 3, 4, 1]},
        {"name": "db", "dtype": "float32", "shape": [4]},
        {"name": "alpha", "dtype": "float32", "shape": [4]},
        {"name": "size", "dtype": "int32", "shape": [2]},
        {"name": "axis", "dtype": "int32", "shape": []},
    ]
    blob = (np.array(w["w"], np.float16).tobytes() + q.tobytes() + w["dw"].tobytes() + w["db"].tobytes()
            + w["alpha"].tobytes() + consts["size"].tobytes() + consts["axis"].tobytes())
    conv = conv_attrs(2, "SAME")
    nodes = [
        {"name": "x", "op": "Placeholder", "attr": {"dtype": {"type": "DT_FLOAT"}}},
        *({"name": k, "op": "Const", "attr": {}} for k in ("w", "b", "dw", "db", "alpha", "size", "axis")),
        {"name": "red", "op": "Const", "attr": {"value": {"tensor": {
            "dtype": "DT_INT32", "tensorShape": {"dim": [{"size": "2"}]}, "intVal": [1, 2]}}}},
        {"name": "c1", "op": "_FusedConv2D", "input": ["x", "w", "b"],
         "attr": {k: _attr(v) for k, v in {**conv, "fused_ops": ["BiasAdd", "Relu6"], "num_args": 1}.items()}},
        {"name": "d1", "op": "FusedDepthwiseConv2dNative", "input": ["c1", "dw", "db", "alpha", "^c1"],
         "attr": {k: _attr(v) for k, v in {**conv_attrs(1, "SAME"), "fused_ops": ["BiasAdd", "Prelu"],
                                           "num_args": 2}.items()}},
        {"name": "up", "op": "ResizeBilinear", "input": ["d1", "size"],
         "attr": {"align_corners": _attr(False), "half_pixel_centers": _attr(False)}},
        {"name": "cat", "op": "ConcatV2", "input": ["x", "up", "axis"], "attr": {"N": _attr(2)}},
        {"name": "m", "op": "Mean", "input": ["cat", "red"], "attr": {"keep_dims": _attr(True)}},
        {"name": "gate", "op": "Sigmoid", "input": ["m"]},
        {"name": "y", "op": "Mul", "input": ["cat", "gate"]},
        {"name": "out", "op": "Identity", "input": ["y"]},
    ]
    model = {"format": "graph-model", "modelTopology": {"node": nodes},
             "weightsManifest": [{"paths": ["group1-shard1of2.bin", "group1-shard2of2.bin"], "weights": specs}],
             "signature": {"inputs": {"x:0": {"name": "x:0"}}, "outputs": {"out:0": {"name": "out:0"}}}}
    (folder / "model.json").write_text(json.dumps(model))
    (folder / "group1-shard1of2.bin").write_bytes(blob[:100])
    (folder / "group1-shard2of2.bin").write_bytes(blob[100:])
    return w


def test_tiny_graph_end_to_end(tmp_path: Path) -> None:
    w = _write_tiny_graph(tmp_path)
    g = TfjsGraph.load(tmp_path / "model.json")
    assert g.inputs == ["x"] and g.outputs == ["out"]
    assert g.op_counts()["Const"] == 8
    x = RNG.normal(size=(3, 6, 6, 2)).astype(np.float32) * 3
    c1 = np.clip(ref_conv(x, w["w"], 2, "SAME") + w["b"], 0, 6)
    d1 = ref_conv(c1, w["dw"], 1, "SAME", depthwise=True) + w["db"]
    d1 = np.where(d1 > 0, d1, d1 * w["alpha"])
    cat = np.concatenate([x, ref_resize_bilinear(d1, 6, 6, False, False)], 3)
    want = cat / (1 + np.exp(-cat.mean((1, 2), keepdims=True)))
    got = g.run(torch.from_numpy(x))
    close(got["out"], want)
    # only what is asked for runs; intermediate outputs can be fetched; batch rows are independent
    close(g.run({"x": x[:1]}, ["c1"])["c1"], c1[:1])
    close(g.run(x[2:])["out"], want[2:])


def test_graph_errors(tmp_path: Path) -> None:
    with pytest.raises(TfjsGraphError, match="does not implement.*NonMaxSuppressionV5"):
        TfjsGraph([Node("x", "Placeholder", [], {}), Node("n", "NonMaxSuppressionV5", ["x"], {})], {})
    g = TfjsGraph([Node("x", "Placeholder", [], {}), Node("y", "Relu", ["x"], {})], {})
    with pytest.raises(TfjsGraphError, match="not fed"):
        g.run({"z": torch.zeros(1)})
    with pytest.raises(TfjsGraphError, match="no node"):
        g.run(torch.zeros(1), ["nope"])
    (tmp_path / "m.json").write_text("{}")
    with pytest.raises(TfjsGraphError, match="not a TF.js graph"):
        TfjsGraph.load(tmp_path / "m.json")
