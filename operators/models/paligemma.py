"""PaliGemma (``PaliGemmaForConditionalGeneration``): captions, yes/no queries, answers, detection, segmentation.

Built on the vlm family's path (one SigLIP pass per batch shared by every prompt, left-padded greedy
generation); only the prompts and the output parsing are PaliGemma's: ``caption en``, ``answer en Q``,
``detect a ; b`` and ``segment a``. Detection output is ``<locYYYY>`` x4 (y1 x1 y2 x2 on a 1024 grid
over the model input) then the label, objects separated by `` ; ``; segmentation puts 16 ``<segNNN>``
codebook indices after the box. Boxes go to source pixels through ``operators.geometry`` with the
source's resize mode (``batch.meta[source]["resize"]``, default stretch). Masks come from the VQ-VAE
decoder (``operators.models.paligemma_masks``) when option ``mask_decoder`` names its checkpoint, and
are the box itself otherwise, marked ``source="box"``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from operators.frames import FrameBatch
from operators.geometry import to_source_xyxy
from operators.masks import box_mask, compress_counts, encode_rle
from operators.models.vlm import OPTIONS as VLM_OPTIONS
from operators.models.vlm import VLMModel
from operators.results import Detections, ModelOutput, Segment

__all__ = ["LOC_BINS", "PaliGemmaModel", "PaliObject", "parse_objects", "paste_mask"]

LOC_BINS = 1024
SEG_TOKENS = 16
_OBJECT = re.compile(r"((?:<loc\d{4}>){4})((?:<seg\d{3}>){16})?\s*([^<;]*)")
_NUM = re.compile(r"\d+")
_SPECIAL = re.compile(r"<loc\d{4}>|<seg\d{3}>")


@dataclass(frozen=True)
class PaliObject:
    """One parsed object: ``label``, box ``yxyx`` in 1024-grid bins, and its 16 mask codes (or None)."""

    label: str
    yxyx: tuple[int, int, int, int]
    codes: tuple[int, ...] | None = None

    def xyxy(self, width: float, height: float) -> npt.NDArray[np.float64]:
        """The box in pixels of a ``width`` x ``height`` model input (bin / 1024, as big_vision)."""
        y1, x1, y2, x2 = (min(v, LOC_BINS) / LOC_BINS for v in self.yxyx)
        return np.array([min(x1, x2) * width, min(y1, y2) * height, max(x1, x2) * width, max(y1, y2) * height])


def parse_objects(text: str) -> list[PaliObject]:
    """Objects in PaliGemma ``detect`` / ``segment`` output; a run with fewer than 4 locations is dropped.

    >>> parse_objects("<loc0100><loc0200><loc0300><loc0400> car ; <loc0000><loc0000><loc1023><loc1023> dog")
    [PaliObject(label='car', yxyx=(100, 200, 300, 400), codes=None), \
PaliObject(label='dog', yxyx=(0, 0, 1023, 1023), codes=None)]
    """
    out = []
    for m in _OBJECT.finditer(text):
        locs = tuple(int(v) for v in _NUM.findall(m.group(1)))
        codes = tuple(int(v) for v in _NUM.findall(m.group(2))) if m.group(2) else None
        out.append(PaliObject(" ".join(m.group(3).split()), locs, codes))  # type: ignore[arg-type]
    return out


def paste_mask(logits: npt.NDArray[np.floating], xyxy: npt.ArrayLike, height: int, width: int) -> npt.NDArray[np.bool_]:
    """A decoded box-local mask (logits, inside > 0) resized onto its box in a ``height`` x ``width`` frame."""
    import cv2

    x1, y1, x2, y2 = (float(v) for v in np.asarray(xyxy).reshape(4))
    c0, r0 = max(0, int(round(x1))), max(0, int(round(y1)))
    c1, r1 = min(width, int(round(x2))), min(height, int(round(y2)))
    out = np.zeros((height, width), bool)
    if c1 <= c0 or r1 <= r0:
        return out
    local = cv2.resize(np.asarray(logits, np.float32), (c1 - c0, r1 - r0), interpolation=cv2.INTER_LINEAR)
    out[r0:r1, c0:c1] = local > 0
    return out


class PaliGemmaModel(VLMModel):
    """A PaliGemma / PaliGemma 2 checkpoint (e.g. ``google/paligemma2-3b-mix-448``).

    Options (besides the vlm ones): ``language`` (prompt language, default ``en``), ``detect_classes``
    (list: task ``detect`` runs ``detect a ; b ; ...``), ``segment_classes`` (list: task ``detect`` also
    runs ``segment CLASS`` per class, boxes with masks), ``mask_decoder`` (path to the VQ-VAE checkpoint,
    ``vae-oid.npz``; without it masks are the boxes, ``source="box"``).
    """

    family: ClassVar[str] = "paligemma"
    default_id: ClassVar[str] = "google/paligemma2-3b-mix-224"
    supported_tasks: ClassVar[tuple[str, ...]] = ("caption", "detect", "query", "ask")
    known_options: ClassVar[tuple[str, ...]] = (*VLM_OPTIONS, "language", "detect_classes", "segment_classes",
                                                "mask_decoder")
    default_max_new_tokens: ClassVar[dict[str, int]] = {"caption": 32, "query": 4, "ask": 16, "detect": 64}

    def __init__(self, **kwargs: Any) -> None:
        lang = str(kwargs.get("language", "en"))
        if not re.fullmatch(r"[a-z]{2,3}", lang):
            raise ValueError(f"paligemma option language={lang!r}: use a language code such as en, de, fr")
        self.default_caption_prompt = f"caption {lang}"  # type: ignore[misc]  # per instance: the language
        self.default_query_template = f"answer {lang} {{query}}"  # type: ignore[misc]
        self.default_question_template = f"answer {lang} {{question}}"  # type: ignore[misc]
        super().__init__(**kwargs)
        self.detect_classes = [str(c) for c in self.options.get("detect_classes", ())]
        self.segment_classes = [str(c) for c in self.options.get("segment_classes", ())]
        if "detect" in self.tasks and not (self.detect_classes or self.segment_classes):
            raise ValueError("paligemma task detect needs option detect_classes and/or segment_classes "
                             "(PaliGemma detects the classes it is asked for), e.g. detect_classes: [person, car]")
        bad = [c for c in self.detect_classes + self.segment_classes if ";" in c or not c.strip()]
        if bad:
            raise ValueError(f"paligemma class names {bad}: each must be non-empty and hold no ';'")
        self.mask_decoder_path = self.options.get("mask_decoder")
        self._mask_decoder: Any = None

    def setup(self) -> None:
        super().setup()
        if self._model_type != "paligemma":
            raise OSError(f"{self.path or self.model_id} is a {self._model_type!r} checkpoint, not PaliGemma; "
                          "use family vlm for other chat VLMs")
        if self.mask_decoder_path and self.segment_classes:
            from operators.models.paligemma_masks import load_mask_decoder

            self._mask_decoder = load_mask_decoder(self.mask_decoder_path, self._device)

    def prompt_text(self, prompt: str) -> str:
        """PaliGemma takes the task prefix as it is after one image placeholder; its processor expands that
        to the image tokens and adds BOS before and a newline after the prefix."""
        return f"{self._processor.image_token}{prompt}"

    def _decode(self, seqs: Any, raw: bool = False) -> list[str]:
        """Text of captions and answers without the location / mask tokens (ordinary tokens in PaliGemma)."""
        texts = super()._decode(seqs, raw)
        return texts if raw else [" ".join(_SPECIAL.sub(" ", t).split()) for t in texts]

    def run_tasks(self, batch: FrameBatch, feats: dict[str, Any] | None, out: ModelOutput) -> None:
        super().run_tasks(batch, feats, out)  # caption, query, ask
        if "detect" in self.tasks:
            out.detections = self.detect(batch, feats)

    def detect(self, batch: FrameBatch, feats: dict[str, Any] | None) -> Detections:
        """``detect`` over detect_classes and ``segment`` per segment class, boxes (and masks) in source pixels."""
        if feats is None or len(batch) == 0:
            return Detections.empty()
        prompts = ([f"detect {' ; '.join(self.detect_classes)}"] if self.detect_classes else []) + [
            f"segment {c}" for c in self.segment_classes]
        texts, _ = self.generate(feats, prompts, self.max_new_tokens["detect"],
                                 frame_size=(batch.height, batch.width), raw=True)
        # the label a prompt's objects get: the one class it asked for, else the model's own (empty: dropped)
        forced = ([self.detect_classes[0] if len(self.detect_classes) == 1 else None] if self.detect_classes
                  else []) + list(self.segment_classes)
        parts = []
        for pi, rows in enumerate(texts):
            segment = pi >= (1 if self.detect_classes else 0)
            for row, text in enumerate(rows):
                objs = [PaliObject(forced[pi] or o.label, o.yxyx, o.codes) for o in parse_objects(text)]
                objs = [o for o in objs if o.label]
                if objs:
                    parts.append(self._frame_objects(batch, row, objs, segment))
        return Detections.concat(parts)

    def _frame_objects(self, batch: FrameBatch, row: int, objs: list[PaliObject], segment: bool) -> Detections:
        in_h, in_w = batch.height, batch.width
        src_w, src_h = int(batch.orig_width[row]), int(batch.orig_height[row])
        mode = batch.meta.get(str(batch.source_id[row]), {}).get("resize", "stretch")
        xyxy = to_source_xyxy(np.stack([o.xyxy(in_w, in_h) for o in objs]), src_w, src_h, in_w, in_h, mode)
        masks: tuple[Segment | None, ...] | None = None
        if segment:
            masks = tuple(self._mask(o, box, src_h, src_w) for o, box in zip(objs, xyxy, strict=True))
        return Detections(np.full(len(objs), row, np.int64), xyxy, np.full(len(objs), math.nan),
                          np.array([o.label for o in objs], np.str_), masks)

    def _mask(self, obj: PaliObject, box: npt.NDArray[np.float32], h: int, w: int) -> Segment:
        """The decoder's mask where configured and the object has its 16 codes; the box itself otherwise."""
        if self._mask_decoder is not None and obj.codes is not None:
            from operators.models.paligemma_masks import decode_masks

            mask, source = paste_mask(decode_masks(self._mask_decoder, [obj.codes])[0], box, h, w), "decoder"
        else:
            mask, source = box_mask(box, h, w), "box"
        return Segment((h, w), compress_counts(encode_rle(mask)), source)  # type: ignore[arg-type]
