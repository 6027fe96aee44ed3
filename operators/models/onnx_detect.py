"""A user's exported detector on onnxruntime: YOLO-style and DETR-style outputs, declared in the config.

Output formats (``output_format``):

- ``yolo``: one output ``[B, 4+C, N]`` (Ultralytics YOLOv8/v11 export) or ``[B, N, 4+C]``; boxes
  ``cx, cy, w, h`` in input pixels, then C class scores (already sigmoid). Class-wise NMS here.
- ``yolo_nms``: NMS done in the graph, ``[B, N, 6]`` or ``[N, 6]`` rows ``x1, y1, x2, y2, score, class``
  in input pixels (``end2end``/``nms=True`` exports); rows of zeros are padding.
- ``detr``: two outputs, boxes ``[B, Q, 4]`` ``cx, cy, w, h`` normalised to [0, 1] and logits
  ``[B, Q, C]`` (``detr_scores: sigmoid``, RT-DETR/D-FINE) or ``[B, Q, C+1]`` (``softmax``, DETR: the
  last class is "no object").

Frames are resized to ``input_size`` on decode; the whole batch runs in one call when the graph's
batch dimension is dynamic, else frame by frame. Boxes map back to source pixels through
``operators.geometry`` (stretch or letterbox, per source).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from operators.frames import FrameBatch
from operators.models.base import VisionModel
from operators.models.boxes import to_source
from operators.models.coco import COCO_LABELS, detector_output
from operators.models.weights import ModelNotFoundError
from operators.results import Detections, ModelOutput

__all__ = ["OnnxDetectModel", "OnnxOptions", "decode_outputs"]

log = logging.getLogger(__name__)


class OnnxOptions(BaseModel):
    """The ``model.options`` of the ``onnx`` family (a misspelt key fails at load)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    output_format: Literal["yolo", "yolo_nms", "detr"] = Field(description="how to read the graph's outputs")
    input_size: tuple[int, int] | None = Field(None, description="[height, width]; default the graph's static size")
    layout: Literal["nchw", "nhwc"] = "nchw"
    channels: Literal["rgb", "bgr"] = "rgb"
    scale: float = Field(1 / 255, gt=0, description="pixel multiplier before mean/std (1/255: 0..1)")
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    class_names: list[str] | str | None = Field(None, description="list, or a file (.txt one per line, .json list); "
                                                                  "default COCO's 80 names")
    score_threshold: float = Field(0.25, ge=0, le=1)
    iou_threshold: float = Field(0.45, ge=0, le=1, description="NMS for output_format yolo")
    max_detections: int = Field(100, ge=1)
    detr_scores: Literal["sigmoid", "softmax"] = "sigmoid"
    boxes_output: str | None = Field(None, description="detr: name of the boxes output (default: a name with 'box', "
                                                        "else the first ending in 4)")
    logits_output: str | None = None
    threads: int | None = Field(None, ge=1)

    @field_validator("input_size")
    @classmethod
    def _size(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and min(v) < 8:
            raise ValueError("input_size sides must be >= 8")
        return v


def _nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float) -> np.ndarray:
    import torch

    from operators.models.centernet import classwise_nms

    return classwise_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes), iou).numpy()


def decode_outputs(opts: OnnxOptions, outputs: dict[str, np.ndarray], n: int, in_w: int, in_h: int,
                   num_classes: int | None = None) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per frame ``(xyxy in input pixels, scores, class ids)``, best first, thresholded (and NMS'd for yolo).

    ``yolo``'s ``[B, 4+C, N]`` vs ``[B, N, 4+C]`` is told apart by ``num_classes`` when it fits one
    axis, else by the anchors outnumbering the channels (8400 vs 84 for a 640 COCO export).
    """
    frames = []
    if opts.output_format == "detr":
        bname = opts.boxes_output or next((k for k in outputs if "box" in k.lower()), None) or next(
            k for k, v in outputs.items() if v.shape[-1] == 4)
        lname = opts.logits_output or next(k for k in outputs if k != bname)
        boxes, logits = outputs[bname], outputs[lname]
        boxes, logits = boxes.reshape(n, -1, 4), logits.reshape(n, boxes.shape[-2], -1).astype(np.float64)
        if opts.detr_scores == "softmax":
            e = np.exp(logits - logits.max(-1, keepdims=True))
            probs = (e / e.sum(-1, keepdims=True))[..., :-1]
        else:
            probs = 1 / (1 + np.exp(-logits))
        cx, cy, w, h = np.moveaxis(boxes.astype(np.float64), -1, 0)
        xyxy = np.stack([(cx - w / 2) * in_w, (cy - h / 2) * in_h, (cx + w / 2) * in_w, (cy + h / 2) * in_h], -1)
        for i in range(n):
            cls, score = probs[i].argmax(-1), probs[i].max(-1)
            frames.append((xyxy[i], score, cls))
    else:
        out = next(iter(outputs.values()))
        if opts.output_format == "yolo_nms":
            rows = out.reshape(n, -1, out.shape[-1]) if out.ndim == 3 else out.reshape(1, -1, out.shape[-1])
            for i in range(n):
                r = rows[i].astype(np.float64)
                r = r[(r[:, 2] > r[:, 0]) & (r[:, 3] > r[:, 1])]  # padding rows are all zero
                frames.append((r[:, :4], r[:, 4], r[:, 5].astype(np.int64)))
        else:
            pred = out.astype(np.float64)
            fits = [ax for ax in (1, 2) if num_classes is not None and pred.shape[ax] == 4 + num_classes]
            if (fits == [1]) or (not fits and pred.shape[1] < pred.shape[2]):  # [B, 4+C, N] -> [B, N, 4+C]
                pred = pred.transpose(0, 2, 1)
            cx, cy, w, h = np.moveaxis(pred[..., :4], -1, 0)
            xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
            for i in range(n):
                cls_scores = pred[i, :, 4:]
                frames.append((xyxy[i], cls_scores.max(-1), cls_scores.argmax(-1)))
    result = []
    for xyxy, score, cls in frames:
        ok = score >= opts.score_threshold
        xyxy, score, cls = xyxy[ok].astype(np.float32), score[ok].astype(np.float32), cls[ok].astype(np.int64)
        if opts.output_format == "yolo" and len(score):
            keep = _nms(xyxy, score, cls, opts.iou_threshold)
        else:
            keep = np.argsort(-score, kind="stable")
        keep = keep[: opts.max_detections]
        result.append((xyxy[keep], score[keep], cls[keep]))
    return result


class OnnxDetectModel(VisionModel):
    """An exported detector (``model.path``: the ``.onnx`` file) on onnxruntime: task ``detect``, and ``caption``
    composed from the boxes. Options: :class:`OnnxOptions`. CUDA execution provider when present and
    ``device`` is not cpu."""

    family: ClassVar[str] = "onnx"
    supported_tasks: ClassVar[tuple[str, ...]] = ("detect", "caption")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        try:
            self.opts = OnnxOptions(**self.options)
        except ValidationError as exc:
            errs = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"onnx options: {errs} (known options: {list(OnnxOptions.model_fields)})") from None
        self.names = self._class_names(self.opts.class_names)
        self._session: Any = None
        self._size = self.opts.input_size or (640, 640)

    @staticmethod
    def _class_names(spec: list[str] | str | None) -> list[str]:
        if spec is None:
            return list(COCO_LABELS)
        if isinstance(spec, list):
            return [str(s) for s in spec]
        p = Path(spec).expanduser()
        if not p.is_file():
            raise ValueError(f"onnx option class_names={spec!r}: no such file; give a list or a .txt/.json file")
        if p.suffix == ".json":
            data = json.loads(p.read_text())
            return [str(data[k]) for k in sorted(data, key=int)] if isinstance(data, dict) else [str(s) for s in data]
        return [line.strip() for line in p.read_text().splitlines() if line.strip()]

    @classmethod
    def locate(cls, model_id: str, path: str | None = None) -> str:
        return str(cls._onnx_file(path or model_id))

    @staticmethod
    def _onnx_file(where: str | None) -> Path:
        if not where:
            raise ModelNotFoundError("onnx: set model.path to the exported .onnx file (or a directory holding "
                                     "model.onnx)")
        p = Path(where).expanduser()
        if p.is_dir():
            p = p / "model.onnx"
        if not p.is_file():
            raise ModelNotFoundError(f"onnx model {p} does not exist; export one (e.g. `yolo export format=onnx`) "
                                     "and set model.path to it")
        return p

    def setup(self) -> None:
        import onnxruntime as ort

        path = self._onnx_file(self.path or self.model_id)
        so = ort.SessionOptions()
        if self.opts.threads:
            so.intra_op_num_threads, so.inter_op_num_threads = self.opts.threads, 1
        want_cuda = self.device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers()
        providers = (["CUDAExecutionProvider"] if want_cuda else []) + ["CPUExecutionProvider"]
        try:
            self._session = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise OSError(f"onnxruntime cannot load {path}: {exc}") from exc
        inp = self._session.get_inputs()[0]
        self._input = inp.name
        shape = list(inp.shape)
        hw = shape[2:4] if self.opts.layout == "nchw" else shape[1:3]
        if self.opts.input_size is None:
            if not all(isinstance(d, int) for d in hw):
                raise ValueError(f"{path}: the input {inp.name} has dynamic size {shape}; set the onnx option "
                                 "input_size: [height, width]")
            self._size = (int(hw[0]), int(hw[1]))
        self._dynamic_batch = not isinstance(shape[0], int) or shape[0] != 1
        self.providers = self._session.get_providers()
        self.model_id = self.model_id or str(path)
        self._check_outputs()

    def _check_outputs(self) -> None:
        outs = self._session.get_outputs()
        fmt = self.opts.output_format
        if fmt == "detr" and len(outs) < 2:
            raise ValueError(f"onnx output_format detr needs two outputs (boxes, logits); the graph has "
                             f"{[o.name for o in outs]}: use output_format yolo or yolo_nms")
        if fmt != "detr" and len(outs) != 1:
            log.info("onnx: the graph has outputs %s; reading the first as %s", [o.name for o in outs], fmt)
        last = outs[0].shape[-1]
        if fmt == "yolo_nms" and isinstance(last, int) and last != 6:
            raise ValueError(f"onnx output_format yolo_nms expects rows of 6 (x1, y1, x2, y2, score, class); "
                             f"{outs[0].name} has shape {outs[0].shape}: use output_format yolo")

    def teardown(self) -> None:
        self._session = None

    def input_size(self) -> tuple[int, int]:
        return self._size

    def _prepare(self, pixels: np.ndarray) -> np.ndarray:
        import cv2

        h, w = self._size
        x = np.asarray(pixels)
        if x.shape[1:3] != (h, w):
            x = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) for f in x])
        if self.opts.channels == "bgr":
            x = x[..., ::-1]
        x = (x.astype(np.float32) * self.opts.scale - np.float32(self.opts.mean)) / np.float32(self.opts.std)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if self.opts.layout == "nchw" else x, np.float32)

    def raw_detections(self, pixels: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per frame ``(xyxy in model-input pixels, scores, class ids)``."""
        if self._session is None:
            raise RuntimeError("OnnxDetectModel.setup() must run before the model is called")
        if len(pixels) == 0:
            return []
        x = self._prepare(pixels)
        h, w = self._size
        names = [o.name for o in self._session.get_outputs()]
        chunks = [x] if self._dynamic_batch else [x[i:i + 1] for i in range(len(x))]
        out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for c in chunks:
            res = dict(zip(names, self._session.run(None, {self._input: c}), strict=True))
            if self.opts.output_format != "detr":
                res = {names[0]: res[names[0]]}
            try:
                out.extend(decode_outputs(self.opts, res, len(c), w, h, len(self.names)))
            except (ValueError, IndexError, StopIteration) as exc:
                shapes = {k: v.shape for k, v in res.items()}
                raise ValueError(f"onnx outputs {shapes} do not read as output_format {self.opts.output_format} "
                                 f"({exc}); see operators/models/onnx_detect.py for the shapes each format "
                                 "expects") from exc
        return out

    def __call__(self, batch: FrameBatch) -> ModelOutput:
        n = len(batch)
        parts: list[Detections] = []
        h, w = self._size
        for row, (xyxy, score, cls) in enumerate(self.raw_detections(batch.pixels) if n else []):
            # model input -> the batch's frame (a stretch, when they differ) -> source (the decoder's resize)
            src = to_source(batch, row, xyxy * np.float32([batch.width / w, batch.height / h] * 2))
            ok = (src[:, 2] > src[:, 0]) & (src[:, 3] > src[:, 1])
            labels = [self.names[c] if 0 <= c < len(self.names) else str(int(c)) for c in cls[ok]]
            parts.append(Detections(np.full(int(ok.sum()), row), src[ok], score[ok], np.array(labels, np.str_)))
        dets = Detections.concat(parts)
        out = detector_output(dets, n, self.tasks, self.model_id)
        return out
