"""Open-vocabulary detection through ``AutoModelForZeroShotObjectDetection`` (OWLv2, OWL-ViT, Grounding DINO).

Standing queries (and ``detect_classes``) are grounded to boxes in one model pass per batch:
every prompt is encoded with the batch, and each predicted box gets a probability per prompt,
``[N frames, P boxes, Q prompts]``. OWL scores each prompt directly (sigmoid of its logit);
Grounding DINO scores text tokens, so a prompt's probability is the best of its own tokens
(the prompts are joined as ``"a cat. a dog."`` and their token spans are known). The
processors' ``post_process_grounded_object_detection`` give one label per box (the argmax) and,
for Grounding DINO, decoded token phrases rather than which prompt they came from; standing
queries are independent questions (one box can be both "a person" and "a cyclist"), so the
scores are read per prompt here; a test checks the boxes agree with the processor's. OWLv2
pads frames to a square (bottom/right) like its processor, so its boxes are relative to it.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np

from operators.frames import FrameBatch
from operators.models.base import VisionModel
from operators.models.boxes import to_source
from operators.models.centernet import classwise_nms
from operators.models.device import frames_to_model_input, processor_norm, select_device
from operators.models.hf_detect import DTYPES, check_loaded, parse_input_size, processor_size
from operators.models.weights import resolve_weights
from operators.results import Detections, ModelOutput, QueryAnswers

__all__ = ["KINDS", "ZeroShotDetectModel"]

log = logging.getLogger(__name__)

# model_type -> (how prompts are scored, pad frames to a square first, default threshold)
KINDS: dict[str, tuple[str, bool, float]] = {
    "owlv2": ("prompt", True, 0.1), "owlvit": ("prompt", False, 0.1), "grounding-dino": ("tokens", False, 0.3)}
OPTIONS = ("threads", "threshold", "thresholds", "detect_classes", "input_size", "max_boxes", "nms_iou")


class ZeroShotDetectModel(VisionModel):
    """Open-vocabulary boxes for standing queries (task ``query``; matched = a box above the threshold) and
    for ``detect_classes`` (task ``detect``).

    Options: ``threshold`` (box probability; OWL 0.1, Grounding DINO 0.3), ``thresholds`` ({query:
    threshold}), ``detect_classes`` (names for ``detect``), ``input_size`` ([h, w]; default the
    processor's, OWLv2 960x960), ``max_boxes`` (per prompt per frame, 20), ``nms_iou`` (per prompt,
    0.5), ``threads``. Checkpoints: google/owlv2-base-patch16-ensemble, IDEA-Research/grounding-dino-tiny.
    """

    family: ClassVar[str] = "zero_shot"
    default_id: ClassVar[str] = "google/owlv2-base-patch16-ensemble"
    supported_tasks: ClassVar[tuple[str, ...]] = ("query", "detect")

    def __init__(self, **kwargs: Any) -> None:
        explicit = kwargs.get("tasks") is not None
        super().__init__(**kwargs)
        bad = sorted(set(self.options) - set(OPTIONS))
        if bad:
            raise ValueError(f"unknown zero_shot option(s) {bad}; known options: {list(OPTIONS)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"zero_shot dtype {self.dtype!r}; use one of {list(DTYPES)}")
        t = self.options.get("threshold")
        self._threshold = None if t is None else self._unit("threshold", t)
        th = self.options.get("thresholds") or {}
        if not isinstance(th, dict):
            raise ValueError(f"zero_shot option thresholds must map query text to a threshold, got {th!r}")
        self.thresholds = {str(q): self._unit(f"thresholds[{q!r}]", v) for q, v in th.items()}
        self.detect_classes = [str(c) for c in self.options.get("detect_classes") or ()]
        if not explicit and not self.detect_classes:
            self.tasks = ("query",)  # every supported task, but detect has nothing to look for
        if "detect" in self.tasks and not self.detect_classes:
            raise ValueError("zero_shot task detect needs option detect_classes (the names to find, e.g. "
                             "[person, car]); an open-vocabulary detector has no fixed classes")
        self.max_boxes = int(self.options.get("max_boxes", 20))
        self.nms_iou = self._unit("nms_iou", self.options.get("nms_iou", 0.5))
        if self.max_boxes < 1:
            raise ValueError(f"zero_shot option max_boxes must be >= 1, got {self.max_boxes}")
        self._size_option = parse_input_size("zero_shot", self.options.get("input_size"))
        self._size = self._size_option or (960, 960)
        self._model: Any = None
        self._kind = ""

    @staticmethod
    def _unit(name: str, value: Any) -> float:
        v = float(value)
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"zero_shot option {name}={value!r}: give a probability in [0, 1]")
        return v

    @property
    def model_type(self) -> str:
        """``owlv2``, ``owlvit`` or ``grounding-dino`` (known after setup)."""
        return self._kind

    @property
    def threshold(self) -> float:
        return self._threshold if self._threshold is not None else KINDS.get(self._kind, ("", False, 0.3))[2]

    def threshold_for(self, query: str) -> float:
        return self.thresholds.get(query, self.threshold)

    # ---- lifecycle ---------------------------------------------------------------------
    def setup(self) -> None:
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

        local = resolve_weights(self.model_id or self.default_id, self.path)
        self._device, self._dtype = select_device("zero_shot", self.device, self.dtype, self.options.get("threads"))
        try:
            model, info = AutoModelForZeroShotObjectDetection.from_pretrained(local, dtype=self._dtype,
                                                                              output_loading_info=True)
        except (ValueError, KeyError) as exc:
            raise OSError(f"{local} does not hold a zero-shot object-detection checkpoint ({type(exc).__name__}: "
                          f"{exc}); give e.g. google/owlv2-base-patch16-ensemble") from exc
        kind = model.config.model_type
        if kind not in KINDS:
            raise OSError(f"{local}: zero_shot runs {sorted(KINDS)} checkpoints, not {kind!r}")
        check_loaded(info, local, type(model).__name__)
        self._processor = AutoProcessor.from_pretrained(local)
        self._model = model.to(self._device).eval()
        self._kind = kind
        self._size = self._size_option or processor_size(self._processor.image_processor, (960, 960))
        self._norm = processor_norm(self._processor.image_processor)
        self.model_id = self.model_id or local

    def teardown(self) -> None:
        self._model = None

    @property
    def hf_model(self) -> Any:
        return self._model

    def input_size(self) -> tuple[int, int]:
        return self._size

    # ---- per batch ---------------------------------------------------------------------
    def _text(self, prompts: list[str], n: int) -> tuple[dict[str, Any], Any]:
        """Model text inputs for ``n`` frames and the ``[Q, T]`` token span of each prompt (Grounding DINO)."""
        import torch

        tok = self._processor.tokenizer
        if KINDS[self._kind][0] == "prompt":
            enc = tok(prompts, padding="max_length", max_length=min(16, tok.model_max_length), truncation=True,
                      return_tensors="pt")
            return {k: enc[k].repeat(n, 1).to(self._device) for k in ("input_ids", "attention_mask")}, None
        text, starts = "", []
        for p in prompts:  # "a cat. a dog." with each prompt's character range known
            p = p.strip().lower().rstrip(".")
            starts.append((len(text), len(text) + len(p)))
            text += p + ". "
        enc = tok([text.strip()], return_offsets_mapping=True, return_tensors="pt")
        limit = int(getattr(self._model.config, "max_text_len", 256))
        if enc["input_ids"].shape[1] > limit:
            raise ValueError(f"zero_shot: {len(prompts)} prompts make {enc['input_ids'].shape[1]} tokens; Grounding "
                             f"DINO reads at most {limit}: use fewer or shorter queries")
        offsets = enc.pop("offset_mapping")[0]
        spans = torch.zeros(len(prompts), limit, dtype=torch.bool)
        for q, (a, b) in enumerate(starts):
            hit = (offsets[:, 0] >= a) & (offsets[:, 1] <= b) & (offsets[:, 1] > offsets[:, 0])
            spans[q, : len(hit)] = hit
        inputs = {k: v.repeat(n, 1).to(self._device) for k, v in enc.items()}
        return inputs, spans.to(self._device)

    def ground(self, pixels: np.ndarray, prompts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(probs [N, P, Q], xyxy [N, P, 4] in the pixels of `pixels`)``: every box's probability for every prompt."""
        import torch

        if self._model is None:
            raise RuntimeError("ZeroShotDetectModel.setup() must run before the model is called")
        n, h, w = pixels.shape[:3]
        how, pad, _ = KINDS[self._kind]
        with torch.inference_mode():
            x = frames_to_model_input(pixels, self._device, self._dtype, self._size, *self._norm,
                                      pad_square=0.0 if pad else None)
            text, spans = self._text(prompts, n)
            out = self._model(pixel_values=x, **text)
            logits = out.logits.float()
            if how == "prompt":
                probs = logits.sigmoid()  # [N, P, Q]
            else:  # [N, P, T] token probabilities -> best token of each prompt's span
                tokp = logits.sigmoid()[..., : spans.shape[1]]
                probs = torch.where(spans[None, None], tokp[..., None, :], 0.0).amax(-1)
            cx, cy, bw, bh = out.pred_boxes.float().unbind(-1)
            sx, sy = (max(h, w), max(h, w)) if pad else (w, h)
            xyxy = torch.stack([(cx - bw / 2) * sx, (cy - bh / 2) * sy, (cx + bw / 2) * sx, (cy + bh / 2) * sy], -1)
        return probs.cpu().numpy(), xyxy.cpu().numpy()

    def _select(self, batch: FrameBatch, row: int, xyxy: np.ndarray, scores: np.ndarray, threshold: float,
                label: str) -> Detections:
        """Boxes of one prompt on one frame above ``threshold``: NMS, best ``max_boxes``, in source pixels."""
        import torch

        keep = np.flatnonzero(scores >= threshold)
        if len(keep):
            b, s = torch.from_numpy(xyxy[keep]), torch.from_numpy(scores[keep])
            kept = classwise_nms(b, s, torch.zeros(len(keep), dtype=torch.long), self.nms_iou).numpy()
            keep = keep[kept[: self.max_boxes]]
        src = to_source(batch, row, xyxy[keep])
        return Detections(np.full(len(keep), row), src, scores[keep], np.full(len(keep), label, dtype=object))

    def __call__(self, batch: FrameBatch) -> ModelOutput:
        n = len(batch)
        queries = list(self.queries) if "query" in self.tasks else []
        classes = self.detect_classes if "detect" in self.tasks else []
        prompts = list(dict.fromkeys(queries + classes))
        out = ModelOutput(n_frames=n)
        probs = np.zeros((n, 0, len(prompts)), np.float32)
        xyxy = np.zeros((n, 0, 4), np.float32)
        if n and prompts:
            probs, xyxy = self.ground(batch.pixels, prompts)
        if "query" in self.tasks:
            q = len(queries)
            score = np.zeros((q, n), np.float32)
            parts: list[Detections] = []
            for qi, text in enumerate(queries):
                pi = prompts.index(text)
                for row in range(n):
                    d = self._select(batch, row, xyxy[row], probs[row, :, pi], self.threshold_for(text), text)
                    score[qi, row] = probs[row, :, pi].max() if probs.shape[1] else 0.0
                    parts.append(d)
            boxes = Detections.concat(parts)
            matched = np.zeros((q, n), bool)
            for qi, text in enumerate(queries):
                matched[qi, boxes.frame[boxes.label == text]] = True
            out.queries = QueryAnswers(queries, matched, score, boxes)
            out.models["query"] = self.model_id
        if "detect" in self.tasks:
            idx = [prompts.index(c) for c in classes]
            found: list[Detections] = []
            for row in range(n):
                cp = probs[row][:, idx] if probs.shape[1] else np.zeros((0, len(idx)), np.float32)
                best = cp.argmax(1) if cp.shape[1] else np.zeros(0, int)
                for ci, name in enumerate(classes):  # each box is its best class only, as in the processors
                    s = np.where(best == ci, cp[:, ci], -1.0) if len(cp) else np.zeros(0, np.float32)
                    found.append(self._select(batch, row, xyxy[row], s.astype(np.float32), self.threshold, name))
            out.detections = Detections.concat(found)
            out.models["detect"] = self.model_id
        return out
