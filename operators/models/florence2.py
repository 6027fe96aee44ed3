"""Florence-2: captions, object detection and phrase-grounded queries from one vision pass.

Each batch runs the DaViT vision tower once (``get_image_features``); every task then
puts those image tokens before its own prompt embeddings, runs the text encoder on that and
calls ``generate(encoder_outputs=...)``, so captions, detections and Q standing queries share
one vision encoding of each frame. Location tokens ``<loc_N>`` (1000 bins over the full frame) are parsed
here into boxes in source-frame pixels; Florence-2 gives no confidence, so scores are NaN.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from operators.frames import FrameBatch
from operators.geometry import batch_to_source_xyxy, to_source_xyxy
from operators.masks import compress_counts, encode_rle, polygon_mask
from operators.models.base import VisionModel
from operators.models.device import frames_to_device, select_device
from operators.models.weights import resolve_weights
from operators.results import Captions, Detections, ModelOutput, QueryAnswers, Segment

__all__ = ["CAPTION_TASKS", "Florence2Model", "clean_text", "parse_locations", "parse_polygons"]

log = logging.getLogger(__name__)

LOC_BINS = 1000
# Prompts the Florence-2 checkpoints were trained with (as in transformers' Florence2Processor).
PROMPTS = {
    "<CAPTION>": "What does the image describe?",
    "<DETAILED_CAPTION>": "Describe in detail what is shown in the image.",
    "<MORE_DETAILED_CAPTION>": "Describe with a paragraph what is shown in the image.",
    "<OCR>": "What is the text in the image?",
    "<OD>": "Locate the objects with category name in the image.",
    "<CAPTION_TO_PHRASE_GROUNDING>": "Locate the phrases in the caption: {input}",
    "<OPEN_VOCABULARY_DETECTION>": "Locate {input} in the image.",
    "<REFERRING_EXPRESSION_SEGMENTATION>": "Locate {input} in the image with mask",
}
# option caption_detail -> task token; "ocr" makes the caption the text read in the frame.
CAPTION_TASKS = {"short": "<CAPTION>", "detailed": "<DETAILED_CAPTION>",
                 "more_detailed": "<MORE_DETAILED_CAPTION>", "ocr": "<OCR>"}
DTYPES = ("auto", "float32", "bfloat16", "float16")
DEFAULT_MAX_NEW_TOKENS = {"caption": 64, "detect": 256, "query": 256}
OPTIONS = ("threads", "caption_detail", "max_new_tokens", "detect_classes", "max_rows", "attn_implementation",
           "share_vision", "segment_phrases")

_NATIVE = ("use a transformers-native conversion such as florence-community/Florence-2-base "
           "(the original microsoft/Florence-2-* repositories need trust_remote_code, which framewire does not run)")
_PIECES = re.compile(r"<loc_(\d+)>|<[^<>]*>|[^<]+|<")
_SPECIAL = re.compile(r"<loc_\d+>|</?s>|<pad>|<unk>")


def parse_locations(text: str, width: float, height: float, *,
                    bins: int = LOC_BINS) -> tuple[list[str], np.ndarray]:
    """Labels and ``xyxy`` float32 boxes from Florence-2 output like ``car<loc_1><loc_2><loc_3><loc_4>``.

    Every 4 location tokens make a box labelled with the text before them (a run of
    several boxes shares one label); bins map to ``width``/``height`` pixels at bin
    centres. Malformed text never raises: a trailing or interrupted run of fewer than 4
    tokens is dropped, bins past the last are clipped, other tags (``<s>``, ``<od>``) are skipped.

    >>> labels, xyxy = parse_locations("<s>car<loc_0><loc_0><loc_999><loc_499><loc_7></s>", 2000, 1000)
    >>> labels, xyxy.tolist()
    (['car'], [[1.0, 0.5, 1999.0, 499.5]])
    """
    labels: list[str] = []
    boxes: list[list[int]] = []
    label, fresh, pending = "", [], []  # type: ignore[var-annotated]
    for m in _PIECES.finditer(text):
        piece = m.group(0)
        if m.group(1) is not None:  # a location token
            new = "".join(fresh).strip()
            if new:
                label = new
            fresh = []
            pending.append(min(int(m.group(1)), bins - 1))
            if len(pending) == 4:
                labels.append(label)
                boxes.append(pending)
                pending = []
        elif piece.startswith("<") and piece.endswith(">"):
            continue  # a tag that is not a location: <s>, </s>, <pad>, <od>, <poly>...
        else:
            pending = []  # text interrupts a box: drop its partial coordinates
            fresh.append(piece)
    if not boxes:
        return labels, np.zeros((0, 4), np.float32)
    b = (np.asarray(boxes, np.float64) + 0.5) / bins * np.array([width, height, width, height], np.float64)
    xyxy = np.stack([np.minimum(b[:, 0], b[:, 2]), np.minimum(b[:, 1], b[:, 3]),
                     np.maximum(b[:, 0], b[:, 2]), np.maximum(b[:, 1], b[:, 3])], axis=1)
    return labels, xyxy.astype(np.float32)


def parse_polygons(text: str, width: float, height: float, *, bins: int = LOC_BINS) -> list[np.ndarray]:
    """Polygons (flat float64 ``x1, y1, x2, y2, ...`` in ``width`` x ``height`` pixels) of Florence-2
    ``<REFERRING_EXPRESSION_SEGMENTATION>`` output: ``<loc_x><loc_y>`` pairs, polygons split by ``<sep>``
    (optionally inside ``<poly>...</poly>``), bins at their centres as the processor dequantizes them;
    a trailing odd coordinate is dropped, and so is a polygon of fewer than 3 points.

    >>> [p.tolist() for p in parse_polygons("x<loc_0><loc_0><loc_999><loc_0><loc_499><loc_999></s>", 1000, 100)]
    [[0.5, 0.05, 999.5, 0.05, 499.5, 99.95]]
    """
    out = []
    for piece in re.split(r"<sep>|</?poly>", text):
        vals = [min(int(v), bins - 1) for v in re.findall(r"<loc_(\d+)>", piece)]
        vals = vals[: len(vals) // 2 * 2]
        if len(vals) < 6:
            continue
        xy = (np.asarray(vals, np.float64).reshape(-1, 2) + 0.5) / bins * np.array([width, height])
        out.append(xy.reshape(-1))
    return out


def _field(size: Any, key: str) -> Any:
    """A key of an image processor's size (a dict or a SizeDict), None when absent."""
    return size.get(key) if isinstance(size, dict) else getattr(size, key, None)


def clean_text(text: str) -> str:
    """Plain text of a caption/OCR answer: special and location tokens removed, spaces squeezed."""
    return " ".join(_SPECIAL.sub("", text).split())


class Florence2Model(VisionModel):
    """Florence-2 (transformers-native checkpoint, e.g. ``florence-community/Florence-2-base``).

    Options: ``threads`` (CPU torch threads), ``caption_detail`` (short | detailed |
    more_detailed | ocr), ``max_new_tokens`` (int, or per task {caption, detect, query}),
    ``detect_classes`` (list: open-vocabulary detection of these names instead of ``<OD>``),
    ``max_rows`` (sequences per generate call, default 64), ``attn_implementation`` (sdpa),
    ``share_vision`` (default true: one vision pass per frame for all tasks; false re-encodes
    the frames for every task, which is what the benchmark compares against), ``segment_phrases``
    (list: task ``detect`` also runs ``<REFERRING_EXPRESSION_SEGMENTATION>`` per phrase, a box and a
    polygon mask per frame where found). Florence-2 has no VQA task upstream: no ``ask``.
    """

    family: ClassVar[str] = "florence2"
    default_id: ClassVar[str] = "florence-community/Florence-2-base"
    supported_tasks: ClassVar[tuple[str, ...]] = ("caption", "detect", "query")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        bad = sorted(set(self.options) - set(OPTIONS))
        if bad:
            raise ValueError(f"unknown florence2 option(s) {bad}; known options: {list(OPTIONS)}")
        detail = self.options.get("caption_detail", "short")
        if detail not in CAPTION_TASKS:
            raise ValueError(f"florence2 option caption_detail={detail!r}; use one of {list(CAPTION_TASKS)}")
        self.caption_task = CAPTION_TASKS[detail]
        if self.dtype not in DTYPES:
            raise ValueError(f"florence2 dtype {self.dtype!r}; use one of {list(DTYPES)}")
        mnt = self.options.get("max_new_tokens", {})
        per_task = mnt if isinstance(mnt, dict) else dict.fromkeys(DEFAULT_MAX_NEW_TOKENS, int(mnt))
        if set(per_task) - set(DEFAULT_MAX_NEW_TOKENS):
            raise ValueError(f"florence2 option max_new_tokens: keys {sorted(per_task)}; "
                             f"use {list(DEFAULT_MAX_NEW_TOKENS)}")
        self.max_new_tokens = {**DEFAULT_MAX_NEW_TOKENS, **{k: int(v) for k, v in per_task.items()}}
        self.detect_classes: list[str] = [str(c) for c in self.options.get("detect_classes", ())]
        self.segment_phrases: list[str] = [str(c) for c in self.options.get("segment_phrases", ())]
        self.share_vision = bool(self.options.get("share_vision", True))
        self.max_rows = int(self.options.get("max_rows", 64))
        if self.max_rows < 1:
            raise ValueError(f"florence2 option max_rows must be >= 1, got {self.max_rows}")
        self._model: Any = None
        self._processor: Any = None
        self._size = (768, 768)

    # ---- lifecycle ---------------------------------------------------------------------
    def setup(self) -> None:
        import torch
        from transformers import AutoProcessor, Florence2ForConditionalGeneration

        local = resolve_weights(self.model_id, self.path)
        device, dtype = select_device("florence2", self.device, self.dtype, self.options.get("threads"))
        try:
            self._processor = AutoProcessor.from_pretrained(local)
            loaded: Any = Florence2ForConditionalGeneration.from_pretrained(
                local, dtype=dtype, attn_implementation=self.options.get("attn_implementation", "sdpa"),
                output_loading_info=True)
            model, info = loaded
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise OSError(f"{local} does not hold a transformers-native Florence-2 checkpoint "
                          f"({type(exc).__name__}: {exc}); {_NATIVE}") from exc
        bad = sorted(set(info.get("missing_keys", ())) | {str(k) for k in info.get("mismatched_keys", ())})
        if bad:  # transformers fills these with random weights and only logs it; refuse instead
            raise OSError(f"the checkpoint in {local} does not fit transformers' Florence-2 layout: {len(bad)} "
                          f"weights missing or mis-shaped (e.g. {', '.join(bad[:3])}); {_NATIVE}")
        self._model = model.to(device).eval()
        self._encoder = self._model.get_encoder()  # the BART text encoder
        self._device, self._dtype = device, dtype
        self._tok = self._processor.tokenizer
        ip = self._processor.image_processor
        size = ip.crop_size if getattr(ip, "do_center_crop", False) else ip.size
        h, w = _field(size, "height"), _field(size, "width")
        if not (h and w):
            h = w = _field(size, "shortest_edge") or 768
        self._size = (int(h), int(w))
        norm = getattr(ip, "do_normalize", True)
        self._scale = float(ip.rescale_factor) if getattr(ip, "do_rescale", True) else 1.0
        self._mean = torch.tensor(ip.image_mean if norm else [0.0] * 3, dtype=torch.float32, device=device)
        self._std = torch.tensor(ip.image_std if norm else [1.0] * 3, dtype=torch.float32, device=device)

    def teardown(self) -> None:
        import torch

        self._model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    @property
    def hf_model(self) -> Any:
        """The loaded ``Florence2ForConditionalGeneration`` (None before ``setup()``)."""
        return self._model

    @property
    def processor(self) -> Any:
        """The loaded ``Florence2Processor`` (tokenizer + image processor config)."""
        return self._processor

    def input_size(self) -> tuple[int, int]:
        """(height, width) the processor resizes to (768x768 for released checkpoints; known after setup)."""
        return self._size

    # ---- per batch ---------------------------------------------------------------------
    def __call__(self, batch: FrameBatch) -> ModelOutput:
        import torch

        if self._model is None:
            raise RuntimeError("Florence2Model.setup() must run before the model is called")
        n = len(batch)
        out = ModelOutput(n_frames=n, models=dict.fromkeys(self.tasks, self.model_id or str(self.path)))
        with torch.inference_mode():
            shared = self.image_features(batch.pixels) if n else None

            def vision() -> Any:  # the shared encoding, or a fresh one per task when sharing is off
                return shared if self.share_vision or not n else self.image_features(batch.pixels)

            if "caption" in self.tasks:
                texts = self._generate(shared, [self.caption_task], [""], self.max_new_tokens["caption"], plain=True)
                out.captions = Captions([clean_text(t) for t in texts[0]], kind="model")
            if "detect" in self.tasks:
                if self.detect_classes:
                    texts = self._generate(vision(), ["<OPEN_VOCABULARY_DETECTION>"] * len(self.detect_classes),
                                           self.detect_classes, self.max_new_tokens["detect"])
                    out.detections = Detections.concat([
                        self._boxes(texts[c], batch, force_label=name) for c, name in enumerate(self.detect_classes)])
                else:
                    texts = self._generate(vision(), ["<OD>"], [""], self.max_new_tokens["detect"])
                    out.detections = self._boxes(texts[0], batch)
                if self.segment_phrases:
                    res = "<REFERRING_EXPRESSION_SEGMENTATION>"
                    texts = self._generate(vision(), [res] * len(self.segment_phrases), self.segment_phrases,
                                           self.max_new_tokens["detect"])
                    segs = [self.segments(texts[i], batch, p) for i, p in enumerate(self.segment_phrases)]
                    out.detections = Detections.concat([out.detections, *segs])
            if "query" in self.tasks:
                out.queries = self._queries(vision(), batch)
        return out

    def image_features(self, pixels: np.ndarray) -> Any:
        """Projected image tokens ``[N, T, D]`` of uint8 ``[N, H, W, 3]`` frames: one vision pass."""
        import torch.nn.functional as F

        x = frames_to_device(pixels, self._device)
        if tuple(x.shape[-2:]) != self._size:
            x = F.interpolate(x, size=self._size, mode="bicubic", align_corners=False, antialias=True)
            x = x.clamp_(0, 255)
        x = ((x * self._scale - self._mean.view(1, 3, 1, 1)) / self._std.view(1, 3, 1, 1)).to(self._dtype)
        feats = self._model.get_image_features(pixel_values=x)
        return getattr(feats, "pooler_output", feats)  # a ModelOutput in transformers 5, a tensor in 4.x

    def _generate(self, feats: Any, tasks: Sequence[str], inputs: Sequence[str], max_new_tokens: int, *,
                  plain: bool = False) -> list[list[str]]:
        """Texts ``[P][N]``: prompt p on every frame, all P x N sequences sharing ``feats`` (never re-encoded).

        ``plain`` drops special tokens (location tokens included) from the text, for captions.
        """
        import torch

        n = 0 if feats is None else int(feats.shape[0])
        if n == 0 or not tasks:
            return [[] for _ in tasks]
        tok = self._tok
        prompts = [tok.bos_token + PROMPTS[t].format(input=text) + tok.eos_token
                   for t, text in zip(tasks, inputs, strict=True)]
        enc = tok(prompts, add_special_tokens=False, padding=True, padding_side="right", return_tensors="pt")
        text_emb = self._model.get_input_embeddings()(enc["input_ids"].to(self._device)).to(feats.dtype)
        text_mask = enc["attention_mask"].to(self._device)
        p = len(prompts)
        rows = torch.arange(p * n, device=self._device)  # row r = prompt r // n on frame r % n
        texts: list[str] = []
        for chunk in rows.split(self.max_rows):
            pi, fi = chunk // n, chunk % n
            embeds = torch.cat([feats[fi], text_emb[pi]], dim=1)
            mask = torch.cat([torch.ones(len(chunk), feats.shape[1], dtype=text_mask.dtype, device=self._device),
                              text_mask[pi]], dim=1)
            # what Florence2Model.forward does with pixel_values, minus the vision pass: the BART encoder
            # reads [image tokens; prompt tokens]; generate() then only runs the decoder
            encoded = self._encoder(inputs_embeds=embeds, attention_mask=mask, return_dict=True)
            seqs = self._model.generate(encoder_outputs=encoded, attention_mask=mask, max_new_tokens=max_new_tokens,
                                        num_beams=1, do_sample=False)
            texts.extend(self._decode(seqs, plain))
        return [texts[i * n:(i + 1) * n] for i in range(p)]

    def _decode(self, seqs: Any, plain: bool) -> list[str]:
        """Decoder outputs to text, cut at the first end-of-sequence after the start token."""
        tok = self._tok
        start = self._model.generation_config.decoder_start_token_id
        out = []
        for row in seqs.tolist():
            if row and row[0] == start:
                row = row[1:]
            if tok.eos_token_id in row:
                row = row[: row.index(tok.eos_token_id)]
            out.append(tok.decode([t for t in row if t != tok.pad_token_id], skip_special_tokens=plain,
                                  clean_up_tokenization_spaces=False))
        return out

    @staticmethod
    def _boxes(texts: list[str], batch: FrameBatch, *, force_label: str | None = None) -> Detections:
        """Detections of one prompt over N frames in source pixels; ``force_label`` replaces the parsed phrase.

        Location bins are fractions of the frame the model saw (the batch's pixels, stretched to the
        processor's size), mapped back through how the decoder resized the source (``geometry``).
        """
        frames, xyxy, labels = [], [], []
        for row, text in enumerate(texts):
            lab, boxes = parse_locations(text, float(batch.width), float(batch.height))
            boxes = batch_to_source_xyxy(batch, row, boxes)
            if force_label is None:  # <OD>: a box with no category name is noise, as in the processor
                keep = [i for i, label in enumerate(lab) if label]
                lab, boxes = [lab[i] for i in keep], boxes[keep]
            else:
                lab = [force_label] * len(boxes)
            frames.extend([row] * len(boxes))
            xyxy.append(boxes)
            labels.extend(lab)
        if not frames:
            return Detections.empty()
        return Detections(np.asarray(frames, np.int64), np.concatenate(xyxy), np.full(len(frames), math.nan),
                          np.asarray(labels, np.str_))

    def _queries(self, feats: Any, batch: FrameBatch) -> QueryAnswers:
        """Phrase grounding of each standing query on each frame; matched = at least one box."""
        qs = list(self.queries)
        texts = self._generate(feats, ["<CAPTION_TO_PHRASE_GROUNDING>"] * len(qs), qs, self.max_new_tokens["query"])
        n = len(batch)
        per_query = [self._boxes(texts[qi], batch, force_label=q) for qi, q in enumerate(qs)]
        matched = np.zeros((len(qs), n), bool)
        for qi, d in enumerate(per_query):
            matched[qi, d.frame] = True
        return QueryAnswers(qs, matched, np.full((len(qs), n), np.nan, np.float32), Detections.concat(per_query))

    @staticmethod
    def segments(texts: list[str], batch: FrameBatch, phrase: str) -> Detections:
        """One box + polygon mask per frame where ``phrase`` was segmented (``<REFERRING_EXPRESSION_SEGMENTATION>``).

        Polygons are parsed in model-input pixels and mapped to source pixels with the source's resize mode
        (``batch.meta[source]["resize"]``, default stretch); the box is the polygons' bounds.
        """
        frames, xyxy, masks = [], [], []
        in_w, in_h = batch.width, batch.height
        for row, text in enumerate(texts):
            polys = parse_polygons(text, in_w, in_h)
            if not polys:
                continue
            sw, sh = int(batch.orig_width[row]), int(batch.orig_height[row])
            mode = batch.meta.get(str(batch.source_id[row]), {}).get("resize", "stretch")
            src = [to_source_xyxy(np.repeat(p.reshape(-1, 2), 2, axis=0).reshape(-1, 4), sw, sh, in_w, in_h,
                                  mode)[:, :2].reshape(-1).astype(np.float64) for p in polys]
            pts = np.concatenate([p.reshape(-1, 2) for p in src])
            frames.append(row)
            xyxy.append([*pts.min(0), *pts.max(0)])
            rle = compress_counts(encode_rle(polygon_mask(src, sh, sw)))
            masks.append(Segment((sh, sw), rle, "polygon", tuple(tuple(round(float(v), 2) for v in p) for p in src)))
        if not frames:
            return Detections.empty()
        return Detections(np.asarray(frames, np.int64), np.asarray(xyxy, np.float32), np.full(len(frames), math.nan),
                          np.array([phrase] * len(frames), np.str_), tuple(masks))
