"""RapidOCR (real PP-OCRv4 weights from the rapidocr-onnxruntime wheel) on real frames with text drawn on them."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from operators.decode import DecodeOptions, decode
from operators.frames import FrameBatch
from operators.geometry import letterbox
from operators.models.composite import CompositeModel
from operators.models.ocr import RapidOcrModel
from operators.models.registry import create
from tests.support.text_clip import draw_sign, make_text_clip


@pytest.fixture(scope="module")
def ocr() -> RapidOcrModel:
    m = RapidOcrModel(threads=1)
    m.setup()
    return m


@pytest.fixture(scope="module")
def signed_frames(bikes: Path) -> tuple[np.ndarray, list[tuple[str, tuple[int, int, int, int]]]]:
    """Three real 640x272 bikes.mp4 frames, each with two signs; returns frames and (text, plate box) per frame."""
    words = [("PIZZA HOUSE", "EXIT 12"), ("OPEN 24H", "MAIN ST"), ("FRAMEWIRE", "BUS 7")]
    out, truth = [], []
    with av.open(str(bikes)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i in (10, 60, 110):
                img = np.ascontiguousarray(f.to_ndarray(format="rgb24"))
                a, b = words[len(out)]
                truth.append([(a, draw_sign(img, a, (20, 16))), (b, draw_sign(img, b, (360, 200), scale=0.8))])
                out.append(img)
            if len(out) == 3:
                break
    return np.stack(out), truth  # type: ignore[return-value]


def _batch(pixels: np.ndarray, src_w: int = 640, src_h: int = 272, meta: dict | None = None) -> FrameBatch:  # type: ignore[type-arg]
    n = len(pixels)
    return FrameBatch(pixels, ["bikes"] * n, np.arange(n), np.arange(n) * 0.5, np.zeros(n), [src_w] * n,
                      [src_h] * n, meta=meta or {})


def _stretch(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    return np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) for f in frames])


def _inside(xyxy: np.ndarray, plate: tuple[int, int, int, int], slack: float = 6.0) -> bool:
    x1, y1, x2, y2 = plate
    return bool(xyxy[0] >= x1 - slack and xyxy[1] >= y1 - slack and xyxy[2] <= x2 + slack and xyxy[3] <= y2 + slack)


def test_reads_the_words_on_real_frames_with_boxes_in_source_pixels(ocr, signed_frames) -> None:  # type: ignore[no-untyped-def]
    frames, truth = signed_frames
    out = ocr(_batch(_stretch(frames, ocr.input_size())))
    assert out.models["ocr"].startswith("rapidocr-onnxruntime:ch_PP-OCRv4@")
    lines = out.text
    assert lines is not None and lines.polygon.shape == (len(lines), 4, 2)
    for row, signs in enumerate(truth):
        got = lines.for_frame(row)
        for text, plate in signs:
            hits = [i for i, t in enumerate(got.text.tolist()) if t.replace(" ", "") == text.replace(" ", "")]
            assert hits, f"frame {row}: {text!r} not read; read {got.text.tolist()}"
            assert _inside(got.xyxy[hits[0]], plate), (text, got.xyxy[hits[0]], plate)
            assert got.score[hits[0]] > 0.8
    assert (lines.xyxy[:, 2] <= 640).all() and (lines.xyxy[:, 3] <= 272).all()


def test_batch_equals_frame_by_frame(ocr, signed_frames) -> None:  # type: ignore[no-untyped-def]
    frames, _ = signed_frames
    px = _stretch(frames, ocr.input_size())
    whole = ocr(_batch(px)).text
    for row in range(len(px)):
        one = ocr(_batch(px[row:row + 1])).text
        part = whole.for_frame(row)
        assert one.text.tolist() == part.text.tolist()
        np.testing.assert_allclose(one.polygon, part.polygon, atol=0.5)
        np.testing.assert_allclose(one.score, part.score, atol=1e-3)


def test_letterboxed_frames_map_back_to_the_same_place(ocr, signed_frames) -> None:  # type: ignore[no-untyped-def]
    frames, truth = signed_frames
    h, w = ocr.input_size()
    lb = letterbox(640, 272, w, h)
    canvas = np.zeros((len(frames), h, w, 3), np.uint8)
    for i, f in enumerate(frames):
        canvas[i, lb.y:lb.y + lb.h, lb.x:lb.x + lb.w] = cv2.resize(f, (lb.w, lb.h))
    lines = ocr(_batch(canvas, meta={"bikes": {"resize": "letterbox"}})).text
    text, plate = truth[0][0]
    got = lines.for_frame(0)
    i = got.text.tolist().index(text)
    assert _inside(got.xyxy[i], plate)


def test_no_text_no_lines(ocr) -> None:  # type: ignore[no-untyped-def]
    h, w = ocr.input_size()
    out = ocr(_batch(np.full((2, h, w, 3), 90, np.uint8)))
    assert len(out.text) == 0 and out.n_frames == 2
    assert len(ocr(_batch(np.zeros((0, h, w, 3), np.uint8))).text) == 0


def test_text_clip_words_are_found_when_they_are_on_screen(ocr, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    clip, spans = make_text_clip(tmp_path / "signs.mp4", fps=4, seconds_per_word=1.0)
    found: dict[str, list[float]] = {}
    for b in decode(str(clip), "signs", DecodeOptions(fps=2, size=ocr.input_size(), chunk=8)):
        lines = ocr(b).text
        for row in range(len(b)):
            for t in lines.for_frame(row).text.tolist():
                found.setdefault(t, []).append(float(b.pts[row]))
    for span in spans:
        assert span.text in found, f"{span.text!r} never read; read {sorted(found)}"
        assert all(span.start - 1e-6 <= t < span.end for t in found[span.text]), (span, found[span.text])


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown rapidocr option"):
        RapidOcrModel(languages=["en"])
    with pytest.raises(ValueError, match="input_size"):
        RapidOcrModel(input_size="big")
    with pytest.raises(ValueError, match="score_threshold"):
        RapidOcrModel(score_threshold=2)
    assert RapidOcrModel(input_size=[270, 500]).input_size() == (256, 512)  # multiples of 32
    with pytest.raises(RuntimeError, match="setup"):
        RapidOcrModel().detect_text(np.zeros((1, 64, 64, 3), np.uint8))


def test_registry_composes_centernet_with_ocr(signed_frames) -> None:  # type: ignore[no-untyped-def]
    model = create("centernet", tasks=["detect", "ocr"], threads=1, score_threshold=0.3,
                   ocr={"input_size": [544, 960], "score_threshold": 0.6})
    assert isinstance(model, CompositeModel)
    assert [m.family for m in model.members] == ["centernet", "rapidocr"]
    assert model.input_size() == (544, 960)  # the larger input: CenterNet resizes down to its 512x512
    assert model.members[1].score_threshold == 0.6
    model.setup()
    frames, truth = signed_frames
    out = model(_batch(_stretch(frames[:1], model.input_size())))
    assert out.detections is not None and out.text is not None and out.captions is None
    assert set(out.models) == {"detect", "ocr"}
    assert truth[0][0][0] in out.text.text.tolist()
    assert (out.detections.xyxy[:, 2] <= 640).all()


def test_registry_without_a_companion_task_is_the_plain_family() -> None:
    m = create("centernet", tasks=["detect"], ocr={"input_size": [64, 64]})
    assert type(m).__name__ == "CenterNetModel"
    with pytest.raises(ValueError, match="cannot run task"):
        create("centernet", tasks=["embed"])
    with pytest.raises(ValueError, match="mapping"):
        create("centernet", tasks=["detect", "ocr"], ocr=5)
    assert type(create("rapidocr", tasks=["ocr"])).__name__ == "RapidOcrModel"
