"""PaliGemma: <loc>/<seg> parsing on hand-written strings, boxes and masks to source pixels, the VQ-VAE
decoder on random weights, and the tiny random checkpoint through setup() (plumbing, batching, one vision pass).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from operators.frames import FrameBatch  # noqa: E402
from operators.masks import box_mask, decode_rle  # noqa: E402
from operators.models.paligemma import PaliGemmaModel, PaliObject, parse_objects, paste_mask  # noqa: E402
from operators.models.paligemma_masks import MASK_SIDE, decode_masks, load_mask_decoder  # noqa: E402
from operators.models.registry import get  # noqa: E402
from pipeline.events import DetectionsEvent, build_frame_events  # noqa: E402
from tests.support.tiny_paligemma import (  # noqa: E402
    TINY_PALIGEMMA_SIZE,
    build_random_mask_decoder,
    build_tiny_paligemma,
)

SEG = "".join(f"<seg{i:03d}>" for i in (5, 17, 0, 127, 64, 3, 3, 3, 99, 100, 101, 1, 2, 8, 9, 10))
CODES = (5, 17, 0, 127, 64, 3, 3, 3, 99, 100, 101, 1, 2, 8, 9, 10)


def frames(n: int, size: int = TINY_PALIGEMMA_SIZE, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 4, 4, 3)).repeat(size // 4, 1).repeat(size // 4, 2).astype(np.uint8)


def batch(pixels: np.ndarray, w: int = 640, h: int = 480, meta: dict | None = None) -> FrameBatch:  # type: ignore[type-arg]
    n = len(pixels)
    return FrameBatch(pixels=pixels, source_id=np.array(["cam"] * n), frame_index=np.arange(n),
                      pts=np.arange(n, dtype=np.float64), wall_time=np.zeros(n), orig_width=np.full(n, w),
                      orig_height=np.full(n, h), meta=meta or {})


# ---- parsing (no weights) --------------------------------------------------------------
def test_parse_detect_output_with_several_objects() -> None:
    text = "<loc0100><loc0200><loc0300><loc0400> car ; <loc0000><loc0000><loc1023><loc1023> red dog<eos>"
    assert parse_objects(text) == [PaliObject("car", (100, 200, 300, 400)), PaliObject("red dog", (0, 0, 1023, 1023))]


def test_parse_segment_output_keeps_the_16_codes() -> None:
    objs = parse_objects(f"<loc0256><loc0128><loc0768><loc0512>{SEG} person")
    assert objs == [PaliObject("person", (256, 128, 768, 512), CODES)]


def test_parse_drops_malformed_runs() -> None:
    assert parse_objects("<loc0100><loc0200><loc0300> car") == []  # 3 locations
    assert parse_objects("a cat sitting") == [] and parse_objects("") == []
    short_seg = "<loc0001><loc0002><loc0003><loc0004><seg001><seg002> cat"  # 2 codes: a box, no mask
    assert parse_objects(short_seg) == [PaliObject("", (1, 2, 3, 4))]


def test_bins_to_model_input_pixels() -> None:
    """y1 x1 y2 x2 on a 1024 grid; bin / 1024 * size (as big_vision), xyxy out, swapped corners sorted."""
    obj = PaliObject("x", (256, 128, 768, 512))
    np.testing.assert_allclose(obj.xyxy(448, 224), [56.0, 56.0, 224.0, 168.0])
    np.testing.assert_allclose(PaliObject("x", (768, 512, 256, 128)).xyxy(448, 224), [56.0, 56.0, 224.0, 168.0])


def unloaded(**kw) -> PaliGemmaModel:  # type: ignore[no-untyped-def]
    return PaliGemmaModel(model_id="x", tasks=["detect"], segment_classes=["person"], **kw)


@pytest.mark.parametrize(("mode", "expect"), [
    ("stretch", [160.0, 120.0, 480.0, 360.0]),
    # 640x272 letterboxed into 32x32: scaled 0.05 to 32x14 at y offset 9; bins 256..768 of 32 = 8..24 px
    ("letterbox", None),
])
def test_boxes_land_in_source_pixels(mode: str, expect: list[float] | None) -> None:
    m = unloaded()
    w, h = (640, 480) if mode == "stretch" else (640, 272)
    b = batch(frames(1), w, h, meta={"cam": {"resize": mode}})
    d = m._frame_objects(b, 0, [PaliObject("person", (256, 256, 768, 768))], segment=False)
    if expect is None:
        from operators.geometry import to_source_xyxy

        expect = to_source_xyxy([[8, 8, 24, 24]], 640, 272, 32, 32, "letterbox")[0].tolist()
        assert expect[1] == 0.0 and expect[3] == 272.0  # the box reaches past the picture into the padding: clipped
    np.testing.assert_allclose(d.xyxy[0], expect, atol=1e-3)
    assert d.masks is None and d.label.tolist() == ["person"]


def test_without_a_decoder_the_mask_is_the_box_and_says_so() -> None:
    m = unloaded()
    d = m._frame_objects(batch(frames(1)), 0, [PaliObject("person", (256, 128, 768, 512), CODES)], segment=True)
    seg = d.masks[0]  # type: ignore[index]
    assert seg is not None and seg.source == "box" and seg.size == (480, 640)
    mask = decode_rle(seg.counts, seg.size)
    assert (mask == box_mask(d.xyxy[0], 480, 640)).all() and mask.sum() == 240 * 240  # x 80..320, y 120..360


# ---- the VQ-VAE decoder on random weights -------------------------------------------------
@pytest.fixture(scope="module")
def vae(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_random_mask_decoder(tmp_path_factory.mktemp("vae") / "vae-oid.npz")


def test_decoder_loads_the_published_layout_and_decodes_64x64(vae: Path) -> None:
    dec = load_mask_decoder(vae)
    logits = decode_masks(dec, [CODES, tuple(reversed(CODES))])
    assert logits.shape == (2, MASK_SIDE, MASK_SIDE) and logits.dtype == np.float32
    assert not np.allclose(logits[0], logits[1])  # the codes matter
    again = decode_masks(load_mask_decoder(vae), [CODES])
    np.testing.assert_allclose(again[0], logits[0], rtol=1e-5, atol=1e-5)  # weights really came from the file
    assert decode_masks(dec, np.zeros((0, 16))).shape == (0, MASK_SIDE, MASK_SIDE)


def test_decoder_file_errors_name_the_problem(tmp_path: Path, vae: Path) -> None:
    with pytest.raises(FileNotFoundError, match="mask_decoder"):
        load_mask_decoder(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", weight=np.zeros(3))
    with pytest.raises(ValueError, match="_vq_vae._embedding"):
        load_mask_decoder(tmp_path / "other.npz")
    with np.load(vae) as z:
        state = {k: z[k] for k in z.files}
    state["decoder.12.weight"] = np.zeros((1, 8, 1, 1), np.float32)
    np.savez(tmp_path / "bent.npz", **state)
    with pytest.raises(ValueError, match="mis-shaped"):
        load_mask_decoder(tmp_path / "bent.npz")


def test_decoded_mask_is_pasted_inside_its_box(vae: Path) -> None:
    m = unloaded(mask_decoder=str(vae))
    m._mask_decoder = load_mask_decoder(vae)
    d = m._frame_objects(batch(frames(1)), 0, [PaliObject("person", (256, 128, 768, 512), CODES)], segment=True)
    seg = d.masks[0]  # type: ignore[index]
    assert seg is not None and seg.source == "decoder"
    mask = decode_rle(seg.counts, seg.size)
    assert not (mask & ~box_mask(d.xyxy[0], 480, 640)).any()  # nothing outside the box
    logits = decode_masks(m._mask_decoder, [CODES])[0]
    assert (mask == paste_mask(logits, d.xyxy[0], 480, 640)).all()


def test_configuration_errors() -> None:
    with pytest.raises(ValueError, match="detect_classes"):
        PaliGemmaModel(model_id="x", tasks=["detect"])
    with pytest.raises(ValueError, match="';'"):
        PaliGemmaModel(model_id="x", tasks=["detect"], detect_classes=["a ; b"])
    with pytest.raises(ValueError, match="language"):
        PaliGemmaModel(model_id="x", language="English")
    with pytest.raises(ValueError, match="unknown paligemma option"):
        PaliGemmaModel(model_id="x", detect_class=["a"])
    assert PaliGemmaModel(model_id="x", language="de").caption_prompt == "caption de"
    assert get("paligemma") is PaliGemmaModel


# ---- the tiny checkpoint ---------------------------------------------------------------
@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_paligemma(tmp_path_factory.mktemp("tiny-paligemma"))


@pytest.fixture(scope="module")
def model(ckpt: Path) -> Iterator[PaliGemmaModel]:
    m = PaliGemmaModel(model_id="tiny/paligemma", path=str(ckpt), device="cpu",
                       tasks=["caption", "query", "ask", "detect"], queries=["is there a car?"],
                       questions=["what is the weather?", "how many people are waiting?"], max_new_tokens=5,
                       detect_classes=["car", "dog"], segment_classes=["person"])
    m.setup()
    yield m
    m.teardown()


def test_round_trip_through_setup(model: PaliGemmaModel) -> None:
    assert type(model.hf_model).__name__ == "PaliGemmaForConditionalGeneration"
    assert type(model.processor).__name__ == "PaliGemmaProcessor"
    assert model.input_size() == (TINY_PALIGEMMA_SIZE, TINY_PALIGEMMA_SIZE)
    assert model.hf_model.dtype == torch.float32  # CPU runs float32 whatever dtype says
    enc = model.encode_prompts(["caption en"], model.input_size())
    ids = enc["input_ids"][0].tolist()
    tok = model.processor.tokenizer
    assert ids.count(model.processor.image_token_id) == 16 and tok.bos_token_id in ids
    assert "token_type_ids" in enc  # prefix-LM attention over image + prompt


def test_one_vision_pass_per_batch_for_every_task(model: PaliGemmaModel, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = model.hf_model.get_image_features
    monkeypatch.setattr(model.hf_model, "get_image_features", lambda *a, **k: calls.append(1) or real(*a, **k))
    out = model(batch(frames(2)))
    assert len(calls) == 1
    assert out.captions is not None and len(out.captions.text) == 2
    assert out.queries is not None and out.queries.score.shape == (1, 2)
    assert np.isfinite(out.queries.score).all() and ((out.queries.score > 0) & (out.queries.score < 1)).all()
    assert out.answers is not None and out.answers.questions == model.questions and len(out.answers.text[1]) == 2
    assert out.detections is not None and set(out.models) == {"caption", "query", "ask", "detect"}


def test_batched_equals_per_frame(model: PaliGemmaModel) -> None:
    px = frames(3, seed=3)
    whole = model(batch(px))
    for i in range(3):
        one = model(batch(px[i:i + 1]))
        assert one.captions.text[0] == whole.captions.text[i]  # type: ignore[union-attr]
        assert [r[0] for r in one.answers.text] == [r[i] for r in whole.answers.text]  # type: ignore[union-attr]
        np.testing.assert_allclose(one.queries.score[:, 0], whole.queries.score[:, i], atol=1e-4)  # type: ignore[union-attr]
        np.testing.assert_allclose(one.detections.xyxy, whole.detections.for_frame(i).xyxy)  # type: ignore[union-attr]


def test_answers_hold_no_location_tokens(model: PaliGemmaModel) -> None:
    out = model(batch(frames(2, seed=5)))
    texts = out.captions.text + [t for row in out.answers.text for t in row]  # type: ignore[union-attr]
    assert not any("<loc" in t or "<seg" in t for t in texts)


def test_detect_and_segment_prompts_parse_into_events(model: PaliGemmaModel, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the model says is replaced with known text; prompts, parsing, labels, masks and events are real."""
    seen: list[list[str]] = []

    def fake(feats, prompts, max_new_tokens, *, frame_size, score=False, raw=False):  # type: ignore[no-untyped-def]
        seen.append(list(prompts))
        assert raw
        texts = [["<loc0000><loc0000><loc0512><loc0512> car ; <loc0512><loc0512><loc1023><loc1023> dog"],
                 [f"<loc0256><loc0256><loc0768><loc0768>{SEG} whatever"]]
        return texts, np.full((2, 1), np.nan)

    monkeypatch.setattr(model, "generate", fake)
    d = model.detect(batch(frames(1)), model.image_features(frames(1)))
    assert seen == [["detect car ; dog", "segment person"]]
    assert d.label.tolist() == ["car", "dog", "person"]  # segment's label is the class asked for
    np.testing.assert_allclose(d.xyxy[0], [0, 0, 320, 240])
    assert d.masks is not None and d.masks[:2] == (None, None) and d.masks[2].source == "box"  # type: ignore[union-attr]
    from operators.results import ModelOutput

    ev = build_frame_events(batch(frames(1)), ModelOutput(1, detections=d, models={"detect": "m"}), run_id="r",
                            uris={}, now=1.0)
    det = next(e for e in ev if isinstance(e, DetectionsEvent))
    assert [m.box for m in det.masks] == [2] and det.masks[0].size == (480, 640)
    assert (decode_rle(det.masks[0].counts, det.masks[0].size) == box_mask(d.xyxy[2], 480, 640)).all()
