"""RapidOCR (PP-OCRv4 detection + recognition on onnxruntime): the offline OCR family, with real weights.

The ONNX models ship inside the ``rapidocr-onnxruntime`` wheel, so nothing is downloaded at run
time. rapidocr's own ``RapidOCR.__call__`` reads one image at a time; here its parts are driven
per batch instead: the DB text detector runs once over all N frames (they share one size, so
they stack into one ``[N, 3, H, W]`` input), its post-processing (rapidocr's ``DBPostProcess``)
turns each frame's probability map into text quadrilaterals, and the crops of every frame of
the batch go to the CRNN recogniser together (rapidocr sorts them by aspect ratio and runs them
``rec_batch_num`` at a time). Polygons are mapped back to source pixels through
``operators.geometry``.
"""

from __future__ import annotations

import logging
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from operators.frames import FrameBatch
from operators.models.base import VisionModel
from operators.models.boxes import to_source_points
from operators.models.weights import ModelNotFoundError
from operators.results import ModelOutput, TextLines

__all__ = ["DEFAULT_ID", "DEFAULT_INPUT_SIZE", "RapidOcrModel"]

log = logging.getLogger(__name__)

DEFAULT_ID = "rapidocr-onnxruntime:ch_PP-OCRv4"
# 544x960 (16:9, both multiples of 32, which the DB detector needs): a 640x272 frame is scaled up
# 1.5x/2x, so 12 px text becomes 18-24 px, where PP-OCRv4's detector finds it reliably, and one
# CPU pass stays ~0.3 s; rapidocr's own default (short side up to 736) costs ~2x more for no gain.
DEFAULT_INPUT_SIZE = (544, 960)
OPTIONS = ("threads", "input_size", "score_threshold", "box_threshold", "det_threshold", "unclip_ratio",
           "use_cls", "rec_batch_num", "det_model_path", "rec_model_path", "rec_keys_path")


def _package_dir() -> Path:
    import rapidocr_onnxruntime

    return Path(rapidocr_onnxruntime.__file__).resolve().parent


class RapidOcrModel(VisionModel):
    """Text lines (polygon, text, confidence) in every frame, task ``ocr``.

    Options: ``input_size`` ([h, w] frames are decoded to, default 544x960; rounded to multiples
    of 32), ``score_threshold`` (recognition confidence a line needs, 0.5), ``box_threshold``
    (detector box score, 0.5), ``det_threshold`` (pixel probability, 0.3), ``unclip_ratio``
    (box growth, 1.6), ``use_cls`` (rotate upside-down lines first, default false: video text is
    mostly upright), ``rec_batch_num`` (crops per recogniser pass, 16), ``threads`` (onnxruntime
    intra-op threads), ``det_model_path``/``rec_model_path``/``rec_keys_path`` (other PP-OCR ONNX
    models, e.g. an English recogniser; default the wheel's Chinese+English PP-OCRv4).
    """

    family: ClassVar[str] = "rapidocr"
    supported_tasks: ClassVar[tuple[str, ...]] = ("ocr",)
    default_id: ClassVar[str] = DEFAULT_ID
    batch_size: ClassVar[int] = 8

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        bad = sorted(set(self.options) - set(OPTIONS))
        if bad:
            raise ValueError(f"unknown rapidocr option(s) {bad}; known options: {list(OPTIONS)}")
        self.model_id = self.model_id or DEFAULT_ID
        size = self.options.get("input_size", DEFAULT_INPUT_SIZE)
        try:
            h, w = (int(v) for v in size)
        except (TypeError, ValueError):
            raise ValueError(f"rapidocr option input_size={size!r}: give [height, width], e.g. [544, 960]") from None
        if h < 32 or w < 32:
            raise ValueError(f"rapidocr option input_size={size!r}: both sides must be >= 32")
        self._size = (max(32, round(h / 32) * 32), max(32, round(w / 32) * 32))
        self.score_threshold = self._unit("score_threshold", 0.5)
        self.box_threshold = self._unit("box_threshold", 0.5)
        self.det_threshold = self._unit("det_threshold", 0.3)
        self.unclip_ratio = float(self.options.get("unclip_ratio", 1.6))
        self.use_cls = bool(self.options.get("use_cls", False))
        self.rec_batch_num = int(self.options.get("rec_batch_num", 16))
        if self.rec_batch_num < 1 or self.unclip_ratio <= 0:
            raise ValueError("rapidocr options rec_batch_num must be >= 1 and unclip_ratio > 0")
        for key in ("det_model_path", "rec_model_path", "rec_keys_path"):
            p = self.options.get(key)
            if p and not Path(p).expanduser().is_file():
                raise ModelNotFoundError(f"rapidocr option {key}={p!r}: no such file")
        self._engine: Any = None

    def _unit(self, name: str, default: float) -> float:
        v = float(self.options.get(name, default))
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"rapidocr option {name} must be in [0, 1], got {v}")
        return v

    @classmethod
    def locate(cls, model_id: str, path: str | None = None) -> str:
        try:
            where = _package_dir() / "models"
        except ImportError as exc:
            raise ModelNotFoundError(f"{model_id or DEFAULT_ID}: rapidocr-onnxruntime is not installed ({exc}); "
                                     "pip install rapidocr-onnxruntime") from exc
        if not any(where.glob("*det*.onnx")) or not any(where.glob("*rec*.onnx")):
            raise ModelNotFoundError(f"{model_id or DEFAULT_ID}: no PP-OCR det/rec ONNX models in {where}; "
                                     "reinstall rapidocr-onnxruntime")
        return str(where)

    @property
    def model_name(self) -> str:
        """The id events carry: the model id and the wheel's version (the weights are the wheel's)."""
        try:
            return f"{self.model_id}@{metadata.version('rapidocr-onnxruntime')}"
        except metadata.PackageNotFoundError:
            return self.model_id

    # ---- lifecycle ---------------------------------------------------------------------
    def setup(self) -> None:
        import onnxruntime as ort
        from rapidocr_onnxruntime import RapidOCR

        self.locate(self.model_id)
        cuda = (self.device in ("auto", "cuda") or self.device.startswith("cuda")) and \
            "CUDAExecutionProvider" in ort.get_available_providers()
        threads = int(self.options.get("threads") or -1)
        params: dict[str, Any] = dict(
            intra_op_num_threads=threads, inter_op_num_threads=1 if threads > 0 else -1, print_verbose=False,
            text_score=self.score_threshold, det_box_thresh=self.box_threshold, det_thresh=self.det_threshold,
            det_unclip_ratio=self.unclip_ratio, rec_batch_num=self.rec_batch_num,
            det_use_cuda=cuda, cls_use_cuda=cuda, rec_use_cuda=cuda)
        for key, name in (("det_model_path", "det_model_path"), ("rec_model_path", "rec_model_path"),
                          ("rec_keys_path", "rec_keys_path")):
            if self.options.get(key):
                params[name] = str(Path(self.options[key]).expanduser())
        self._engine = RapidOCR(**params)

    def teardown(self) -> None:
        self._engine = None

    def input_size(self) -> tuple[int, int]:
        return self._size

    # ---- per batch ---------------------------------------------------------------------
    def detect_text(self, bgr: np.ndarray) -> list[np.ndarray]:
        """Per frame of uint8 BGR ``[N, H, W, 3]``: text quadrilaterals ``[M, 4, 2]`` in those pixels, in
        reading order (top to bottom, left to right). One detector pass for the whole batch."""
        from rapidocr_onnxruntime.ch_ppocr_det.utils import DetPreProcess

        if self._engine is None:
            raise RuntimeError("RapidOcrModel.setup() must run before the model is called")
        n, h, w = bgr.shape[:3]
        if n == 0:
            return []
        det = self._engine.text_det
        # limit_type max at the frame's own longest side: no rescale, only rounding to multiples of 32
        prep = DetPreProcess(max(h, w), "max", det.mean, det.std)
        x = np.concatenate([prep(f) for f in bgr])
        maps = det.infer(x)[0]  # [N, 1, H', W'] text probability
        out = []
        for i in range(n):
            boxes, _ = det.postprocess_op(maps[i:i + 1], (h, w))
            boxes = det.filter_tag_det_res(boxes, (h, w)) if len(boxes) else np.zeros((0, 4, 2), np.float32)
            boxes = self._engine.sorted_boxes(boxes) if len(boxes) else []
            out.append(np.asarray(boxes, np.float32).reshape(-1, 4, 2))
        return out

    def read(self, pixels: np.ndarray) -> list[list[tuple[np.ndarray, str, float]]]:
        """Per frame of uint8 RGB ``[N, H, W, 3]``: (quadrilateral in those pixels, text, score) per line read."""
        bgr = np.ascontiguousarray(np.asarray(pixels)[..., ::-1])
        quads = self.detect_text(bgr)
        crops, owner = [], []
        for i, q in enumerate(quads):
            if len(q):
                crops.extend(self._engine.get_crop_img_list(bgr[i], list(q.copy())))
                owner.extend((i, j) for j in range(len(q)))
        results: list[list[tuple[np.ndarray, str, float]]] = [[] for _ in quads]
        if not crops:
            return results
        if self.use_cls:
            crops, _, _ = self._engine.text_cls(crops)
        recs, _ = self._engine.text_rec(crops)  # every crop of the batch in one call
        for (i, j), rec in zip(owner, recs, strict=True):
            text, score = str(rec[0]).strip(), float(rec[1])
            if text and score >= self.score_threshold:
                results[i].append((quads[i][j], text, score))
        return results

    def __call__(self, batch: FrameBatch) -> ModelOutput:
        n = len(batch)
        parts: list[TextLines] = []
        if n:
            for row, lines in enumerate(self.read(batch.pixels)):
                if not lines:
                    continue
                poly = to_source_points(batch, row, np.stack([q for q, _, _ in lines]))
                parts.append(TextLines(np.full(len(lines), row), poly, [t for _, t, _ in lines],
                                       [s for _, _, s in lines]))
        out = ModelOutput(n_frames=n)
        if "ocr" in self.tasks:
            out.text = TextLines.concat(parts)
            out.models["ocr"] = self.model_name
        return out
