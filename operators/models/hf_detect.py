"""Closed-set detectors through ``AutoModelForObjectDetection``: RT-DETR, RT-DETR v2, D-FINE, DETR and kin.

Frames become the model input on the device (``device.frames_to_model_input``: resize to the
processor's size, rescale, normalise), the whole batch goes through the model in one pass, and
the processor's own ``post_process_object_detection`` (sigmoid top-k for RT-DETR/D-FINE,
softmax without the no-object class for DETR) turns logits into boxes in the pixels of the
frames given; ``operators.models.boxes`` maps those to source pixels (stretch or letterbox).
Labels are the checkpoint's ``config.id2label``. Captions, when asked for, are composed from
the detections like CenterNet's.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np

from operators.frames import FrameBatch
from operators.models.base import VisionModel
from operators.models.boxes import to_source
from operators.models.coco import detector_output
from operators.models.device import frames_to_model_input, processor_norm, select_device
from operators.models.weights import resolve_weights
from operators.results import Detections, ModelOutput

__all__ = ["HFDetectModel", "processor_size"]

log = logging.getLogger(__name__)

DTYPES = ("auto", "float32", "bfloat16", "float16")
OPTIONS = ("threads", "score_threshold", "input_size", "max_detections")


def _field(size: Any, key: str) -> Any:
    return size.get(key) if isinstance(size, dict) else getattr(size, key, None)


def processor_size(image_processor: Any, default: tuple[int, int]) -> tuple[int, int]:
    """(height, width) an image processor resizes to: its fixed size, else a square of its shortest edge."""
    size = getattr(image_processor, "size", None) or {}
    h, w = _field(size, "height"), _field(size, "width")
    if h and w:
        return int(h), int(w)
    edge = _field(size, "shortest_edge")
    return (int(edge), int(edge)) if edge else default


def check_loaded(info: dict[str, Any], local: str, what: str) -> None:
    """Refuse a checkpoint whose weights do not fit the architecture (transformers would only log it)."""
    bad = sorted(set(info.get("missing_keys", ())) | {str(k) for k in info.get("mismatched_keys", ())})
    if bad:
        raise OSError(f"the checkpoint in {local} does not fit {what}: {len(bad)} weights missing or mis-shaped "
                      f"(e.g. {', '.join(bad[:3])}); give a checkpoint saved for this architecture")


def parse_input_size(family: str, value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{family} option input_size={value!r}: give [height, width], e.g. [640, 640]") from None
    if h < 16 or w < 16:
        raise ValueError(f"{family} option input_size={value!r}: both sides must be >= 16")
    return h, w


class HFDetectModel(VisionModel):
    """A Hugging Face object detector (e.g. ``PekingU/rtdetr_v2_r18vd``, ``ustc-community/dfine-small-coco``,
    ``facebook/detr-resnet-50``): task ``detect``, and ``caption`` composed from the boxes.

    Options: ``score_threshold`` (0.5), ``input_size`` ([h, w]; default the processor's size, a
    square of its shortest edge for DETR's 800/1333), ``max_detections`` (per frame, highest
    scores first, 100), ``threads`` (CPU torch threads).
    """

    family: ClassVar[str] = "hf_detect"
    default_id: ClassVar[str] = "PekingU/rtdetr_v2_r18vd"
    supported_tasks: ClassVar[tuple[str, ...]] = ("detect", "caption")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        bad = sorted(set(self.options) - set(OPTIONS))
        if bad:
            raise ValueError(f"unknown {self.family} option(s) {bad}; known options: {list(OPTIONS)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"{self.family} dtype {self.dtype!r}; use one of {list(DTYPES)}")
        self.score_threshold = float(self.options.get("score_threshold", 0.5))
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"{self.family} option score_threshold must be in [0, 1], got {self.score_threshold}")
        self.max_detections = int(self.options.get("max_detections", 100))
        if self.max_detections < 1:
            raise ValueError(f"{self.family} option max_detections must be >= 1, got {self.max_detections}")
        self._size_option = parse_input_size(self.family, self.options.get("input_size"))
        self._size = self._size_option or (640, 640)
        self._model: Any = None
        self._processor: Any = None

    def setup(self) -> None:
        from transformers import AutoImageProcessor, AutoModelForObjectDetection

        local = resolve_weights(self.model_id or self.default_id, self.path)
        self._device, self._dtype = select_device(self.family, self.device, self.dtype, self.options.get("threads"))
        try:
            model, info = AutoModelForObjectDetection.from_pretrained(local, dtype=self._dtype,
                                                                      output_loading_info=True)
        except (ValueError, KeyError) as exc:
            raise OSError(f"{local} does not hold a transformers object-detection checkpoint "
                          f"({type(exc).__name__}: {exc}); give e.g. PekingU/rtdetr_v2_r18vd") from exc
        check_loaded(info, local, type(model).__name__)
        self._processor = AutoImageProcessor.from_pretrained(local)
        self._model = model.to(self._device).eval()
        self._size = self._size_option or processor_size(self._processor, (640, 640))
        self._norm = processor_norm(self._processor)
        self.model_id = self.model_id or local

    def teardown(self) -> None:
        self._model = None

    @property
    def hf_model(self) -> Any:
        return self._model

    @property
    def labels(self) -> dict[int, str]:
        """The checkpoint's class names, ``config.id2label`` (known after setup)."""
        return {int(k): str(v) for k, v in self._model.config.id2label.items()}

    def input_size(self) -> tuple[int, int]:
        return self._size

    def raw_detections(self, pixels: np.ndarray) -> list[dict[str, Any]]:
        """The processor's post-processed results per frame: ``scores``, ``labels`` (ids), ``boxes`` (xyxy in
        the pixels of ``pixels``), one model pass for the batch."""
        import torch

        if self._model is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before the model is called")
        n, h, w = pixels.shape[:3]
        with torch.inference_mode():
            x = frames_to_model_input(pixels, self._device, self._dtype, self._size, *self._norm)
            outputs = self._model(pixel_values=x)
            outputs.logits = outputs.logits.float()
            outputs.pred_boxes = outputs.pred_boxes.float()
            return self._processor.post_process_object_detection(  # type: ignore[no-any-return]
                outputs, threshold=self.score_threshold, target_sizes=[(h, w)] * n)

    def __call__(self, batch: FrameBatch) -> ModelOutput:
        n = len(batch)
        parts: list[Detections] = []
        if n:
            names = self.labels
            for row, r in enumerate(self.raw_detections(batch.pixels)):
                scores = r["scores"].cpu().numpy()
                order = np.argsort(-scores, kind="stable")[: self.max_detections]
                xyxy = to_source(batch, row, r["boxes"].cpu().numpy()[order])
                ok = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
                ids = r["labels"].cpu().numpy()[order][ok]
                parts.append(Detections(np.full(int(ok.sum()), row), xyxy[ok], scores[order][ok],
                                        np.array([names.get(int(i), str(int(i))) for i in ids], np.str_)))
        dets = Detections.concat(parts)
        out = detector_output(dets, n, self.tasks, self.model_id)
        return out
