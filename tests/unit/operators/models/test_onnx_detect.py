"""onnx family on tiny torch modules exported with torch.onnx.export: YOLO raw, YOLO with NMS, DETR-style.

The modules' outputs are known by construction (fixed boxes, class scores from the frame's mean
colour), so the tests assert exact boxes in source pixels, classes, NMS and thresholds.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from operators.frames import FrameBatch
from operators.geometry import to_source_xyxy
from operators.models.onnx_detect import OnnxDetectModel
from operators.models.registry import family_names, get
from operators.models.weights import ModelNotFoundError

S = 64  # model input
NAMES = ["red", "green", "blue"]
# cx, cy, w, h in input pixels; box 1 overlaps box 0 (NMS drops it), box 3's weight is under the threshold
BOXES = torch.tensor([[32.0, 32, 16, 16], [33, 32, 16, 16], [10, 10, 8, 8], [50, 50, 10, 10]])
WEIGHTS = torch.tensor([1.0, 0.9, 0.5, 0.1])


class YoloRaw(torch.nn.Module):
    """``[B, 4+C, N]`` (or ``[B, N, 4+C]``): fixed boxes; class c's score = mean of channel c x the box's weight."""

    def __init__(self, transpose: bool = False) -> None:
        super().__init__()
        self.transpose = transpose

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean((2, 3))  # [B, 3]
        scores = m[:, None, :] * WEIGHTS[None, :, None]  # [B, N, C]
        pred = torch.cat([BOXES[None].expand(x.shape[0], -1, -1), scores], -1)  # [B, N, 4+C]
        return pred if self.transpose else pred.transpose(1, 2)


class YoloNms(torch.nn.Module):
    """``[B, 3, 6]`` rows x1, y1, x2, y2, score, class; the last row is zero padding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean((2, 3))
        b = x.shape[0]
        r0 = torch.cat([torch.tensor([24.0, 24, 40, 40]).expand(b, 4), m[:, :1], torch.zeros(b, 1)], 1)
        r1 = torch.cat([torch.tensor([2.0, 2, 10, 10]).expand(b, 4), m[:, 1:2], torch.ones(b, 1)], 1)
        return torch.stack([r0, r1, torch.zeros(b, 6)], 1)


class Detr(torch.nn.Module):
    """boxes ``[B, 2, 4]`` normalised cxcywh and logits ``[B, 2, C(+1)]`` from the mean colour."""

    def __init__(self, no_object: bool = False) -> None:
        super().__init__()
        self.no_object = no_object

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = x.mean((2, 3))
        b = x.shape[0]
        boxes = torch.tensor([[0.5, 0.5, 0.25, 0.25], [0.25, 0.25, 0.125, 0.125]]).expand(b, -1, -1)
        logits = (m - 0.5) * 20
        low = logits - 30  # query 1: every class far below threshold (softmax: "no object" wins)
        if self.no_object:
            logits, low = torch.cat([logits, torch.zeros(b, 1)], 1), torch.cat([low, torch.zeros(b, 1)], 1)
        return boxes, torch.stack([logits, low], 1)


def export(module: torch.nn.Module, path: Path, *, outputs: list[str], dynamic: bool = True,
           dynamic_hw: bool = False) -> Path:
    axes: dict[str, dict[int, str]] = {}
    if dynamic:
        axes = {"images": {0: "batch"}, **{o: {0: "batch"} for o in outputs}}
    if dynamic_hw:
        axes.setdefault("images", {}).update({2: "h", 3: "w"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.rand(1, 3, S, S),), str(path), input_names=["images"],
                          output_names=outputs, dynamic_axes=axes or None, dynamo=False)
    return path


def frames(*colours: tuple[int, int, int]) -> np.ndarray:
    return np.stack([np.full((S, S, 3), c, np.uint8) for c in colours])


def batch(px: np.ndarray, meta: dict | None = None) -> FrameBatch:  # type: ignore[type-arg]
    n = len(px)
    return FrameBatch(px, ["cam"] * n, np.arange(n), np.arange(n) / 2, np.zeros(n), [640] * n, [272] * n,
                      meta=meta or {})


def load(path: Path, **opts) -> OnnxDetectModel:  # type: ignore[no-untyped-def]
    opts.setdefault("class_names", NAMES)  # 3 classes: what tells [B, 4+C, N] from [B, N, 4+C] with 4 anchors
    m = OnnxDetectModel(path=str(path), device="cpu", threads=1, **opts)
    m.setup()
    return m


def src(xyxy: list[float]) -> list[float]:
    return to_source_xyxy([xyxy], 640, 272, S, S)[0].tolist()


@pytest.mark.parametrize("transpose", [False, True], ids=["B,4+C,N", "B,N,4+C"])
def test_yolo_raw_boxes_classes_nms_in_source_pixels(tmp_path: Path, transpose: bool) -> None:
    m = load(export(YoloRaw(transpose), tmp_path / "yolo.onnx", outputs=["output0"]), output_format="yolo",
             class_names=NAMES)
    assert m.input_size() == (S, S) and m._dynamic_batch  # read from the graph's static H, W
    out = m(batch(frames((255, 0, 0), (0, 255, 0))))
    d = out.detections
    red, green = d.for_frame(0), d.for_frame(1)
    assert red.label.tolist() == ["red", "red"] and green.label.tolist() == ["green", "green"]
    np.testing.assert_allclose(red.score, [1.0, 0.5], atol=1e-5)  # box 1 lost to NMS, box 3 under 0.25
    np.testing.assert_allclose(red.xyxy, [src([24, 24, 40, 40]), src([6, 6, 14, 14])], atol=1e-3)
    assert red.xyxy[0].tolist() == pytest.approx([240.0, 102.0, 400.0, 170.0])
    assert out.models == {"detect": str(tmp_path / "yolo.onnx"), "caption": f"composed:{tmp_path / 'yolo.onnx'}"}
    assert out.captions.text == ["2 reds", "2 greens"]  # type: ignore[union-attr]


def test_nms_off_keeps_the_overlap_and_threshold_cuts(tmp_path: Path) -> None:
    path = export(YoloRaw(), tmp_path / "yolo.onnx", outputs=["output0"])
    assert len(load(path, output_format="yolo", iou_threshold=1.0)(batch(frames((255, 0, 0)))).detections) == 3
    assert len(load(path, output_format="yolo", score_threshold=0.95)(batch(frames((255, 0, 0)))).detections) == 1
    assert len(load(path, output_format="yolo", max_detections=1)(batch(frames((255, 0, 0)))).detections) == 1


def test_static_batch_graph_runs_frame_by_frame_and_equals_the_batch(tmp_path: Path) -> None:
    dyn = load(export(YoloRaw(), tmp_path / "dyn.onnx", outputs=["output0"]), output_format="yolo")
    static = load(export(YoloRaw(), tmp_path / "static.onnx", outputs=["output0"], dynamic=False),
                  output_format="yolo")
    assert not static._dynamic_batch
    px = frames((255, 0, 0), (0, 0, 255), (120, 200, 30))
    a, b = dyn(batch(px)).detections, static(batch(px)).detections
    np.testing.assert_array_equal(a.frame, b.frame)
    np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1e-4)
    for i in range(3):
        one = dyn(batch(px[i:i + 1])).detections
        np.testing.assert_allclose(one.xyxy, a.for_frame(i).xyxy, atol=1e-4)
        np.testing.assert_allclose(one.score, a.for_frame(i).score, atol=1e-6)


def test_yolo_nms_rows_and_class_names_file(tmp_path: Path) -> None:
    names = tmp_path / "classes.txt"
    names.write_text("red\ngreen\n\nblue\n")
    m = load(export(YoloNms(), tmp_path / "nms.onnx", outputs=["det"]), output_format="yolo_nms",
             class_names=str(names))
    d = m(batch(frames((255, 255, 0)))).detections  # both scores 1.0; the zero row is padding
    assert d.label.tolist() == ["red", "green"]
    np.testing.assert_allclose(d.xyxy, [src([24, 24, 40, 40]), src([2, 2, 10, 10])], atol=1e-3)
    assert m.names == NAMES


@pytest.mark.parametrize("no_object", [False, True], ids=["sigmoid", "softmax+no-object"])
def test_detr_outputs(tmp_path: Path, no_object: bool) -> None:
    names = tmp_path / "names.json"
    names.write_text(json.dumps({"0": "red", "1": "green", "2": "blue"}))
    m = load(export(Detr(no_object), tmp_path / "detr.onnx", outputs=["pred_boxes", "logits"]),
             output_format="detr", detr_scores="softmax" if no_object else "sigmoid", class_names=str(names))
    d = m(batch(frames((0, 0, 255), (0, 255, 0)))).detections
    assert d.label.tolist() == ["blue", "green"] and d.frame.tolist() == [0, 1]
    np.testing.assert_allclose(d.xyxy[0], src([24, 24, 40, 40]), atol=1e-3)
    assert (d.score > 0.9).all()


def test_bgr_and_normalisation_options(tmp_path: Path) -> None:
    path = export(YoloRaw(), tmp_path / "yolo.onnx", outputs=["output0"])
    bgr = load(path, output_format="yolo", class_names=NAMES, channels="bgr")
    assert set(bgr(batch(frames((255, 0, 0)))).detections.label.tolist()) == {"blue"}
    halved = load(path, output_format="yolo", class_names=NAMES, std=[2.0, 2.0, 2.0])  # means 0.5: scores halve
    np.testing.assert_allclose(halved(batch(frames((255, 0, 0)))).detections.score, [0.5, 0.25], atol=1e-5)


def test_letterboxed_source_maps_through_geometry(tmp_path: Path) -> None:
    m = load(export(YoloRaw(), tmp_path / "yolo.onnx", outputs=["output0"]), output_format="yolo")
    d = m(batch(frames((255, 0, 0)), meta={"cam": {"resize": "letterbox"}})).detections
    want = to_source_xyxy([[24, 24, 40, 40]], 640, 272, S, S, "letterbox")[0]
    np.testing.assert_allclose(d.xyxy[0], want, atol=1e-3)


def test_dynamic_input_needs_input_size_and_frames_are_resized(tmp_path: Path) -> None:
    path = export(YoloRaw(), tmp_path / "hw.onnx", outputs=["output0"], dynamic_hw=True)
    with pytest.raises(ValueError, match="input_size"):
        load(path, output_format="yolo")
    m = load(path, output_format="yolo", input_size=[S, S])
    d = m(batch(np.full((1, 32, 48, 3), (255, 0, 0), np.uint8))).detections  # resized to 64x64 here
    np.testing.assert_allclose(d.xyxy[0], [240.0, 102.0, 400.0, 170.0], atol=1e-3)


def test_bad_config_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="output_format"):
        OnnxDetectModel(path="x.onnx")
    with pytest.raises(ValueError, match="nms_iou"):
        OnnxDetectModel(output_format="yolo", nms_iou=0.5)
    with pytest.raises(ValueError, match="class_names"):
        OnnxDetectModel(output_format="yolo", class_names="/nope.txt")
    with pytest.raises(ModelNotFoundError, match="model.path"):
        OnnxDetectModel(output_format="yolo").setup()
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        OnnxDetectModel(output_format="yolo", path=str(tmp_path / "none.onnx")).setup()
    yolo = export(YoloRaw(), tmp_path / "yolo.onnx", outputs=["output0"])
    with pytest.raises(ValueError, match="two outputs"):
        load(yolo, output_format="detr")
    with pytest.raises(ValueError, match="rows of 6"):
        load(yolo, output_format="yolo_nms")
    (tmp_path / "junk.onnx").write_bytes(b"not a graph")
    with pytest.raises(OSError, match="onnxruntime cannot load"):
        load(tmp_path / "junk.onnx", output_format="yolo")


def test_registered() -> None:
    assert "onnx" in family_names() and get("onnx") is OnnxDetectModel
    assert OnnxDetectModel.supported_tasks == ("detect", "caption")


@pytest.mark.gpu
@pytest.mark.skipif("CUDAExecutionProvider" not in ort.get_available_providers(), reason="needs onnxruntime-gpu")
def test_cuda_execution_provider(tmp_path: Path) -> None:
    m = OnnxDetectModel(path=str(export(YoloRaw(), tmp_path / "y.onnx", outputs=["output0"])), output_format="yolo")
    m.setup()
    assert m.providers[0] == "CUDAExecutionProvider"
    assert len(m(batch(frames((255, 0, 0)))).detections) == 2
