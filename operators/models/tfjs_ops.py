"""PyTorch kernels for the TensorFlow ops a TF.js graph model uses, with TF's exact semantics.

Tensors are in TF layout (NHWC). Convolutions view them as channels-last NCHW (a free
permute), so no layout copies happen between layers. ``SAME`` padding is TF's: the extra
row/column of an odd total goes after (bottom/right), which PyTorch cannot express alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from operators.models.tfjs_nodes import TF_DTYPES, Node, TfjsGraphError

__all__ = ["OPS", "same_pads"]

Tensor = torch.Tensor
OpFn = Callable[[Node, list[Tensor]], Any]
OPS: dict[str, OpFn] = {}


def _op(*names: str) -> Callable[[OpFn], OpFn]:
    def deco(fn: OpFn) -> OpFn:
        for n in names:
            OPS[n] = fn
        return fn

    return deco


def _ints(t: Tensor | Sequence[int]) -> list[int]:
    return [int(v) for v in (t.reshape(-1).tolist() if isinstance(t, Tensor) else t)]


def same_pads(size: int, k: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF 'SAME' padding (before, after) of one spatial axis; the odd pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _pads(node: Node, h: int, w: int, kh: int, kw: int, s: Sequence[int], d: Sequence[int]) -> list[int]:
    """[top, bottom, left, right] for a conv/pool node's padding attribute on an NHWC input."""
    padding = node.attr.get("padding", "VALID")
    if padding == "SAME":
        return [*same_pads(h, kh, s[0], d[0]), *same_pads(w, kw, s[1], d[1])]
    if padding == "VALID":
        return [0, 0, 0, 0]
    if padding == "EXPLICIT":
        p = node.attr.get("explicit_paddings", [0] * 8)
        return [p[2], p[3], p[4], p[5]]
    raise TfjsGraphError(f"{node.op} {node.name!r}: padding {padding!r} is not supported")


def _nhwc_only(node: Node) -> None:
    if node.attr.get("data_format", "NHWC") != "NHWC":
        raise TfjsGraphError(f"{node.op} {node.name!r}: data_format {node.attr['data_format']} is not supported")


def _conv(node: Node, x: Tensor, weight: Tensor, bias: Tensor | None, groups: int) -> Tensor:
    """NHWC conv through a channels-last view; asymmetric SAME pads applied explicitly."""
    _nhwc_only(node)
    st = node.attr.get("strides", [1, 1, 1, 1])[1:3]
    dl = node.attr.get("dilations", [1, 1, 1, 1])[1:3]
    kh, kw = weight.shape[2], weight.shape[3]
    top, bottom, left, right = _pads(node, int(x.shape[1]), int(x.shape[2]), kh, kw, st, dl)
    xc = x.contiguous().permute(0, 3, 1, 2)
    if top == bottom and left == right:
        pad: tuple[int, int] = (top, left)
    else:
        xc = F.pad(xc, (left, right, top, bottom)).contiguous(memory_format=torch.channels_last)
        pad = (0, 0)
    y = F.conv2d(xc, weight.to(x.dtype), None if bias is None else bias.to(x.dtype), tuple(st), pad, tuple(dl), groups)
    return y.permute(0, 2, 3, 1)


def _filter(node: Node, f: Tensor, depthwise: bool) -> Tensor:
    """TF filter [kh,kw,in,out|mult] as a torch weight [out,in/groups,kh,kw], prepared once per node."""
    w = node.cache.get("w")
    if w is None or w.device != f.device:
        if depthwise:
            kh, kw, cin, mult = f.shape
            w = f.reshape(kh, kw, cin * mult).permute(2, 0, 1).unsqueeze(1).contiguous()
        else:
            w = f.permute(3, 2, 0, 1).contiguous()
        node.cache["w"] = w
    return w


def _activation(node: Node, kind: str, y: Tensor, alpha: Tensor | None) -> Tensor:
    """A fused activation, in place where it can be: ``y`` is a fresh conv output nobody else holds."""
    if kind == "Relu":
        return y.relu_()
    if kind == "Relu6":
        return y.clamp_(0.0, 6.0)
    if kind == "Elu":
        return F.elu(y)
    if kind == "Sigmoid":
        return torch.sigmoid(y)
    if kind == "Tanh":
        return torch.tanh(y)
    if kind == "LeakyRelu":
        return F.leaky_relu(y, float(node.attr.get("leakyrelu_alpha", 0.2)))
    if kind == "Prelu" and alpha is not None:
        return torch.where(y > 0, y, y * alpha)
    raise TfjsGraphError(f"{node.op} {node.name!r}: fused activation {kind!r} is not supported")


def _fused(node: Node, args: list[Tensor], depthwise: bool) -> Tensor:
    ops = node.attr.get("fused_ops", [])
    extra = args[2:]
    if not ops or ops[0] != "BiasAdd" or len(ops) > 2:
        raise TfjsGraphError(f"{node.op} {node.name!r}: fused_ops {ops} not supported (need BiasAdd[, activation])")
    x, f = args[0], args[1]
    groups = f.shape[2] if depthwise else 1
    y = _conv(node, x, _filter(node, f, depthwise), extra[0], groups)
    if len(ops) == 2:
        y = _activation(node, ops[1], y, extra[1] if len(extra) > 1 else None)
    return y


@_op("Conv2D")
def _conv2d(node: Node, a: list[Tensor]) -> Tensor:
    return _conv(node, a[0], _filter(node, a[1], False), None, 1)


@_op("DepthwiseConv2dNative", "DepthwiseConv2D")
def _depthwise(node: Node, a: list[Tensor]) -> Tensor:
    return _conv(node, a[0], _filter(node, a[1], True), None, a[1].shape[2])


@_op("_FusedConv2D")
def _fused_conv(node: Node, a: list[Tensor]) -> Tensor:
    return _fused(node, a, False)


@_op("FusedDepthwiseConv2dNative")
def _fused_depthwise(node: Node, a: list[Tensor]) -> Tensor:
    return _fused(node, a, True)


def _binary(fn: Callable[[Tensor, Tensor], Tensor]) -> OpFn:
    return lambda node, a: fn(a[0], a[1])


def _unary(fn: Callable[[Tensor], Tensor]) -> OpFn:
    return lambda node, a: fn(a[0])


_BINARY: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "Add": torch.add, "AddV2": torch.add, "BiasAdd": torch.add, "Sub": torch.sub, "Mul": torch.mul,
    "RealDiv": torch.true_divide, "Div": torch.true_divide, "Maximum": torch.maximum, "Minimum": torch.minimum,
    "Pow": torch.pow, "SquaredDifference": lambda x, y: (x - y) * (x - y),
    "FloorDiv": lambda x, y: torch.div(x, y, rounding_mode="floor"), "FloorMod": torch.remainder,
    "Equal": torch.eq, "NotEqual": torch.ne, "Greater": torch.gt, "GreaterEqual": torch.ge, "Less": torch.lt,
    "LessEqual": torch.le, "LogicalAnd": torch.logical_and,
}
_UNARY: dict[str, Callable[[Tensor], Tensor]] = {
    "Identity": lambda x: x, "Relu": torch.relu, "Relu6": lambda x: x.clamp(0.0, 6.0), "Sigmoid": torch.sigmoid,
    "Tanh": torch.tanh, "Elu": F.elu, "Exp": torch.exp, "Log": torch.log, "Sqrt": torch.sqrt, "Rsqrt": torch.rsqrt,
    "Square": torch.square, "Neg": torch.neg, "Abs": torch.abs, "Floor": torch.floor, "Round": torch.round,
}
OPS.update({name: _binary(fn) for name, fn in _BINARY.items()})
OPS.update({name: _unary(fn) for name, fn in _UNARY.items()})


@_op("AddN")
def _add_n(node: Node, a: list[Tensor]) -> Tensor:
    return torch.stack(torch.broadcast_tensors(*a)).sum(0)


@_op("LeakyRelu")
def _leaky(node: Node, a: list[Tensor]) -> Tensor:
    return F.leaky_relu(a[0], float(node.attr.get("alpha", 0.2)))


@_op("Prelu")
def _prelu(node: Node, a: list[Tensor]) -> Tensor:
    return torch.where(a[0] > 0, a[0], a[0] * a[1])


@_op("Softmax")
def _softmax(node: Node, a: list[Tensor]) -> Tensor:
    return torch.softmax(a[0], -1)


@_op("Cast")
def _cast(node: Node, a: list[Tensor]) -> Tensor:
    dst = TF_DTYPES.get(node.attr.get("DstT", "DT_FLOAT"))
    if dst is None:
        raise TfjsGraphError(f"Cast {node.name!r}: DstT {node.attr.get('DstT')} is not supported")
    x = a[0]
    if not dst.is_floating_point and x.is_floating_point() and dst != torch.bool:
        x = torch.trunc(x)  # TF truncates toward zero
    return x.to(dst)


@_op("Reshape")
def _reshape(node: Node, a: list[Tensor]) -> Tensor:
    return a[0].reshape(_ints(a[1]))


@_op("ExpandDims")
def _expand_dims(node: Node, a: list[Tensor]) -> Tensor:
    dim = _ints(a[1])[0]
    return a[0].unsqueeze(dim if dim >= 0 else a[0].dim() + 1 + dim)


@_op("Squeeze")
def _squeeze(node: Node, a: list[Tensor]) -> Tensor:
    dims = node.attr.get("squeeze_dims") or [i for i, s in enumerate(a[0].shape) if s == 1]
    return a[0].squeeze(tuple(dims)) if dims else a[0]


@_op("Transpose")
def _transpose(node: Node, a: list[Tensor]) -> Tensor:
    return a[0].permute(_ints(a[1]))


@_op("ConcatV2")
def _concat(node: Node, a: list[Tensor]) -> Tensor:
    return torch.cat(a[:-1], _ints(a[-1])[0])


@_op("Pack")
def _pack(node: Node, a: list[Tensor]) -> Tensor:
    return torch.stack(a, int(node.attr.get("axis", 0)))


def _reduce(fn: Callable[..., Tensor]) -> OpFn:
    def run(node: Node, a: list[Tensor]) -> Tensor:
        axes = [d % a[0].dim() for d in _ints(a[1])]
        if not axes:
            return a[0]
        return fn(a[0], dim=tuple(axes), keepdim=bool(node.attr.get("keep_dims", False)))

    return run


OPS["Mean"] = _reduce(torch.mean)
OPS["Sum"] = _reduce(torch.sum)
OPS["Max"] = _reduce(torch.amax)
OPS["Min"] = _reduce(torch.amin)


@_op("MaxPool", "AvgPool")
def _pool(node: Node, a: list[Tensor]) -> Tensor:
    """Max pooling ignores padded cells (pads with -inf); average pooling does not count them (TF)."""
    _nhwc_only(node)
    x = a[0]
    kh, kw = node.attr.get("ksize", [1, 1, 1, 1])[1:3]
    st = node.attr.get("strides", [1, 1, 1, 1])[1:3]
    top, bottom, left, right = _pads(node, int(x.shape[1]), int(x.shape[2]), kh, kw, st, (1, 1))
    xc = x.contiguous().permute(0, 3, 1, 2)
    if node.op == "MaxPool":
        xc = F.pad(xc, (left, right, top, bottom), value=-math.inf) if top + bottom + left + right else xc
        return F.max_pool2d(xc, (kh, kw), tuple(st)).permute(0, 2, 3, 1)
    summed = F.avg_pool2d(F.pad(xc, (left, right, top, bottom)), (kh, kw), tuple(st), divisor_override=1)
    ones = F.pad(torch.ones_like(xc[:1, :1]), (left, right, top, bottom))
    count = F.avg_pool2d(ones, (kh, kw), tuple(st), divisor_override=1)
    return (summed / count).permute(0, 2, 3, 1)


@_op("ResizeBilinear")
def _resize_bilinear(node: Node, a: list[Tensor]) -> Tensor:
    """TF bilinear resize on NHWC in its three coordinate modes, via torch's interpolate.

    half_pixel_centers is torch's ``align_corners=False``; align_corners is torch's
    ``align_corners=True``; TF's legacy mode (``src = dst * in / out``, clamped) equals
    align_corners on the input edge-padded by one pixel, resized to ``out + 1``, cropped.
    """
    x, (oh, ow) = a[0], _ints(a[1])
    ac, hp = bool(node.attr.get("align_corners", False)), bool(node.attr.get("half_pixel_centers", False))
    xc = x.contiguous().permute(0, 3, 1, 2)
    dtype = xc.dtype
    if not dtype.is_floating_point:
        xc = xc.float()
    if hp and not ac:
        y = F.interpolate(xc, (oh, ow), mode="bilinear", align_corners=False)
    elif ac:
        y = F.interpolate(xc, (oh, ow), mode="bilinear", align_corners=True)
    else:
        padded = F.pad(xc, (0, 1, 0, 1), mode="replicate")
        y = F.interpolate(padded, (oh + 1, ow + 1), mode="bilinear", align_corners=True)[:, :, :oh, :ow]
    return y.permute(0, 2, 3, 1)


@_op("ResizeNearestNeighbor")
def _resize_nearest(node: Node, a: list[Tensor]) -> Tensor:
    x, (oh, ow) = a[0], _ints(a[1])
    ac, hp = bool(node.attr.get("align_corners", False)), bool(node.attr.get("half_pixel_centers", False))
    for axis, out in ((1, oh), (2, ow)):
        size = x.shape[axis]
        scale = (size - 1) / (out - 1) if ac and out > 1 else size / out
        pos = torch.arange(out, dtype=torch.float64)
        src = (pos + 0.5) * scale if hp else pos * scale
        # TF rounds half away from zero under align_corners; coordinates here are >= 0
        idx = torch.floor(src + 0.5) if ac else torch.floor(src)
        x = x.index_select(axis, idx.long().clamp(0, size - 1).to(x.device))
    return x


def _mirror_index(n: int, before: int, after: int, symmetric: bool) -> Tensor:
    k = 0 if symmetric else 1
    left = list(range(before - 1 + k, k - 1, -1))
    right = list(range(n - 1 - k, n - 1 - k - after, -1))
    return torch.tensor(left + list(range(n)) + right, dtype=torch.long)


@_op("Pad", "PadV2", "MirrorPad")
def _pad(node: Node, a: list[Tensor]) -> Tensor:
    x, pads = a[0], _ints(a[1])
    pairs = [(pads[2 * i], pads[2 * i + 1]) for i in range(x.dim())]
    if node.op == "MirrorPad":
        symmetric = node.attr.get("mode", "REFLECT") == "SYMMETRIC"
        for axis, (b, e) in enumerate(pairs):
            if b or e:
                x = x.index_select(axis, _mirror_index(x.shape[axis], b, e, symmetric).to(x.device))
        return x
    value = float(a[2].item()) if node.op == "PadV2" and len(a) > 2 else 0.0
    flat = [p for pair in reversed(pairs) for p in pair]
    return F.pad(x, flat, value=value)


@_op("StridedSlice")
def _strided_slice(node: Node, a: list[Tensor]) -> Tensor:
    """TF StridedSlice with begin/end/ellipsis/new_axis/shrink_axis masks and negative strides."""
    x = a[0]
    begin, end, strides = _ints(a[1]), _ints(a[2]), _ints(a[3]) if len(a) > 3 else [1] * len(_ints(a[1]))
    bit = {k: int(node.attr.get(k, 0)) for k in ("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask",
                                                  "shrink_axis_mask")}
    specs: list[tuple[Any, ...]] = []
    explicit = sum(1 for i in range(len(begin)) if not (bit["new_axis_mask"] >> i) & 1
                   and not (bit["ellipsis_mask"] >> i) & 1)
    for i in range(len(begin)):
        if (bit["ellipsis_mask"] >> i) & 1:
            specs += [("slice", None, None, 1)] * (x.dim() - explicit)
        elif (bit["new_axis_mask"] >> i) & 1:
            specs.append(("new",))
        elif (bit["shrink_axis_mask"] >> i) & 1:
            specs.append(("index", begin[i]))
        else:
            specs.append(("slice", None if (bit["begin_mask"] >> i) & 1 else begin[i],
                          None if (bit["end_mask"] >> i) & 1 else end[i], strides[i]))
    d = 0
    for spec in specs:
        if spec[0] == "new":
            x, d = x.unsqueeze(d), d + 1
        elif spec[0] == "index":
            x = x.select(d, spec[1])
        else:
            idx = range(*slice(spec[1], spec[2], spec[3]).indices(x.shape[d]))
            if len(idx) == 0:
                x = x.narrow(d, 0, 0)
            elif spec[3] > 0:
                x = x[(slice(None),) * d + (slice(idx.start, idx[-1] + 1, spec[3]),)]
            else:
                x = x[(slice(None),) * d + (slice(idx[-1], idx[0] + 1, -spec[3]),)].flip(d)
            d += 1
    return x


@_op("TopKV2")
def _topk(node: Node, a: list[Tensor]) -> tuple[Tensor, Tensor]:
    values, indices = torch.topk(a[0], _ints(a[1])[0], dim=-1, largest=True, sorted=True)
    return values, indices.to(torch.int32)


@_op("GatherV2")
def _gather(node: Node, a: list[Tensor]) -> Tensor:
    params, indices = a[0], a[1]
    axis = _ints(a[2])[0] % params.dim() if len(a) > 2 else 0
    if int(node.attr.get("batch_dims", 0)) != 0:
        raise TfjsGraphError(f"GatherV2 {node.name!r}: batch_dims != 0 is not supported")
    flat = params.index_select(axis, indices.reshape(-1).long())
    return flat.reshape(*params.shape[:axis], *indices.shape, *params.shape[axis + 1:])
