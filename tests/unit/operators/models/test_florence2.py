"""Florence-2 operator on a tiny random-weight checkpoint: plumbing, batching, parsing.

The checkpoint is built once per session and loaded through ``setup()`` like a real one.
Random weights say nothing meaningful, so no test looks at the words they produce.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from operators.frames import FrameBatch  # noqa: E402
from operators.models.florence2 import Florence2Model, clean_text, parse_locations, parse_polygons  # noqa: E402
from operators.models.registry import get  # noqa: E402
from operators.models.weights import ModelNotFoundError  # noqa: E402
from operators.results import Captions, Detections, ModelOutput, QueryAnswers  # noqa: E402
from tests.support.tiny_models import TINY_FLORENCE2_SIZE, build_tiny_florence2  # noqa: E402

S = TINY_FLORENCE2_SIZE
QUERIES = ["a person riding a bicycle", "a red car", "dog"]
FAST = {"max_new_tokens": 24}  # random weights rarely stop early; keep decoding short


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_florence2(tmp_path_factory.mktemp("tiny-florence2"))


def load(tiny_dir: Path, **kwargs) -> Florence2Model:  # type: ignore[no-untyped-def]
    kwargs = {"model_id": "tiny/florence2", "path": str(tiny_dir), "device": "cpu", "queries": QUERIES,
              **FAST, **kwargs}
    model = Florence2Model(**kwargs)
    model.setup()
    return model


@pytest.fixture(scope="module")
def model(tiny_dir: Path) -> Iterator[Florence2Model]:
    m = load(tiny_dir)
    yield m
    m.teardown()


def frames(n: int, h: int = S, w: int = S, seed: int = 0) -> np.ndarray:
    """Distinct synthetic frames: coarse random colour blocks over a gradient, uint8 RGB."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (n, 4, 4, 3)).astype(np.float32)
    up = blocks.repeat(math.ceil(h / 4), axis=1).repeat(math.ceil(w / 4), axis=2)[:, :h, :w]
    ramp = np.linspace(0, 64, w, dtype=np.float32)[None, None, :, None]
    return np.clip(up * 0.75 + ramp, 0, 255).astype(np.uint8)


def batch(pixels: np.ndarray, orig: tuple[int, int] = (640, 480)) -> FrameBatch:
    n = len(pixels)
    return FrameBatch(pixels=pixels, source_id=np.array(["cam"] * n), frame_index=np.arange(n),
                      pts=np.arange(n, dtype=np.float64) * 0.5, wall_time=np.zeros(n), orig_width=np.full(n, orig[0]),
                      orig_height=np.full(n, orig[1]))


# ---- loading -------------------------------------------------------------------------
def test_registry_names_the_class() -> None:
    assert get("florence2") is Florence2Model


def test_round_trip_through_setup(model: Florence2Model) -> None:
    from transformers import Florence2ForConditionalGeneration

    assert isinstance(model.hf_model, Florence2ForConditionalGeneration)
    assert model.input_size() == (S, S)
    tok = model.processor.tokenizer
    assert tok.convert_tokens_to_ids("<loc_999>") != tok.unk_token_id
    feats = model.image_features(frames(2))
    d_model = model.hf_model.get_input_embeddings().embedding_dim
    assert tuple(feats.shape) == (2, model.processor.num_image_tokens, d_model)


def test_cpu_runs_float32(model: Florence2Model) -> None:
    assert model.hf_model.dtype == torch.float32
    assert model.image_features(frames(1)).dtype == torch.float32
    assert next(model.hf_model.parameters()).device.type == "cpu"


def test_threads_option_sets_torch_threads(tiny_dir: Path) -> None:
    before = torch.get_num_threads()
    try:
        load(tiny_dir, threads=1, tasks=["caption"])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_missing_model_names_id_and_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    m = Florence2Model(model_id="someorg/Florence-2-missing", path=str(tmp_path / "nowhere"))
    with pytest.raises(ModelNotFoundError) as ei:
        m.setup()
    assert isinstance(ei.value, OSError)
    assert "someorg/Florence-2-missing" in str(ei.value)
    assert "framewire models fetch" in str(ei.value)


def test_checkpoint_with_missing_weights_is_refused(tiny_dir: Path, tmp_path: Path) -> None:
    """transformers would fill missing weights randomly and only log it; setup refuses instead."""
    import shutil

    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(tiny_dir, broken)
    weights = load_file(broken / "model.safetensors")
    save_file({k: v for k, v in weights.items() if ".vision_tower." not in k}, broken / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(OSError, match="does not fit transformers' Florence-2 layout.*florence-community"):
        Florence2Model(model_id="tiny/broken", path=str(broken), device="cpu").setup()


def test_bad_configuration_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="unknown florence2 option"):
        Florence2Model(model_id="x", score_threshold=0.5)
    with pytest.raises(ValueError, match="caption_detail"):
        Florence2Model(model_id="x", caption_detail="verbose")
    with pytest.raises(ValueError, match="dtype"):
        Florence2Model(model_id="x", dtype="int8")
    with pytest.raises(ValueError, match="max_new_tokens"):
        Florence2Model(model_id="x", max_new_tokens={"captions": 5})
    with pytest.raises(ValueError, match="cannot run task"):
        Florence2Model(model_id="x", tasks=["segment"])


def test_call_before_setup_is_refused() -> None:
    m = Florence2Model(model_id="x")
    assert m.input_size() == (768, 768)  # the released checkpoints' size until setup reads the processor
    with pytest.raises(RuntimeError, match="setup"):
        m(batch(frames(1)))


# ---- outputs -------------------------------------------------------------------------
def test_all_tasks_shapes_and_types(model: Florence2Model) -> None:
    b = batch(frames(3))
    out = model(b)
    assert isinstance(out, ModelOutput) and out.n_frames == 3
    assert out.models == dict.fromkeys(("caption", "detect", "query"), "tiny/florence2")
    assert isinstance(out.captions, Captions) and out.captions.kind == "model"
    assert len(out.captions.text) == 3 and all(isinstance(t, str) for t in out.captions.text)
    assert not any("<loc_" in t or "</s>" in t for t in out.captions.text)
    d = out.detections
    assert isinstance(d, Detections)
    assert d.xyxy.dtype == np.float32 and d.xyxy.shape == (len(d), 4)
    assert set(d.frame.tolist()) <= {0, 1, 2}
    assert np.isnan(d.score).all() and all(d.label)
    q = out.queries
    assert isinstance(q, QueryAnswers) and q.queries == QUERIES
    assert q.matched.shape == (3, 3) and q.matched.dtype == bool
    assert q.score.shape == (3, 3) and np.isnan(q.score).all()
    assert q.boxes is not None and set(q.boxes.label.tolist()) <= set(QUERIES)
    for qi, text in enumerate(QUERIES):  # matched exactly where the query grounded a box
        grounded = set(q.boxes.frame[q.boxes.label == text].tolist())
        assert set(np.flatnonzero(q.matched[qi]).tolist()) == grounded
    for boxes in (d, q.boxes):  # inside the source frame, x1 <= x2, y1 <= y2
        assert (boxes.xyxy[:, :2] <= boxes.xyxy[:, 2:]).all()
        assert (boxes.xyxy >= 0).all() and (boxes.xyxy[:, [0, 2]] <= 640).all() and (boxes.xyxy[:, [1, 3]] <= 480).all()


def test_only_requested_tasks_run(tiny_dir: Path) -> None:
    m = load(tiny_dir, tasks=["caption"])
    out = m(batch(frames(2)))
    assert out.captions is not None and len(out.captions.text) == 2
    assert out.detections is None and out.queries is None
    assert out.models == {"caption": "tiny/florence2"}


def test_empty_batch_and_no_queries(tiny_dir: Path) -> None:
    m = load(tiny_dir, queries=[])
    out = m(FrameBatch.empty(S, S))
    assert out.n_frames == 0 and out.captions is not None and out.captions.text == []
    assert out.detections is not None and len(out.detections) == 0
    assert out.queries is not None and out.queries.matched.shape == (0, 0)
    out = m(batch(frames(2)))
    assert out.queries is not None and out.queries.matched.shape == (0, 2)


def test_batch_equals_frames_one_by_one(model: Florence2Model) -> None:
    px = frames(3, seed=1)
    whole = model(batch(px))
    assert whole.captions is not None and whole.detections is not None and whole.queries is not None
    assert len(set(whole.captions.text)) > 1  # the tiny model's outputs depend on the frame
    for i in range(3):
        one = model(batch(px[i:i + 1]))
        assert one.captions is not None and one.detections is not None and one.queries is not None
        assert one.captions.text == [whole.captions.text[i]]
        mine = whole.detections.for_frame(i)
        np.testing.assert_array_equal(one.detections.xyxy, mine.xyxy)
        assert one.detections.label.tolist() == mine.label.tolist()
        np.testing.assert_array_equal(one.queries.matched[:, 0], whole.queries.matched[:, i])
        assert one.queries.boxes is not None and whole.queries.boxes is not None
        np.testing.assert_array_equal(one.queries.boxes.xyxy, whole.queries.boxes.for_frame(i).xyxy)


def test_query_answer_does_not_depend_on_other_queries(model: Florence2Model) -> None:
    """Prompts of different lengths are padded together; the padding must not leak into answers."""
    b = batch(frames(2, seed=2))
    together = model(b).queries
    assert together is not None and together.boxes is not None
    for qi, text in enumerate(QUERIES):
        model.set_queries([text])
        try:
            alone = model(b).queries
        finally:
            model.set_queries(QUERIES)
        assert alone is not None and alone.boxes is not None
        np.testing.assert_array_equal(alone.matched[0], together.matched[qi])
        np.testing.assert_array_equal(alone.boxes.xyxy, together.boxes.xyxy[together.boxes.label == text])


def test_same_answers_as_the_processor_and_generate_path(model: Florence2Model) -> None:
    """The feature-reuse path decodes the same tokens as transformers' own processor + generate."""
    px = frames(2, seed=3)
    out = model(batch(px, orig=(S, S)))
    assert out.captions is not None and out.detections is not None
    proc, hf = model.processor, model.hf_model
    for i in range(2):
        for task in ("<CAPTION>", "<OD>"):
            inputs = proc(text=[task], images=[px[i]], return_tensors="pt")
            with torch.inference_mode():
                ids = hf.generate(**inputs, max_new_tokens=24, num_beams=1, do_sample=False)
            if task == "<CAPTION>":
                ref = clean_text(proc.batch_decode(ids, skip_special_tokens=True)[0])
                assert out.captions.text[i] == ref
            else:
                labels, boxes = parse_locations(proc.batch_decode(ids, skip_special_tokens=False)[0], S, S)
                keep = [j for j, label in enumerate(labels) if label]
                np.testing.assert_array_equal(out.detections.for_frame(i).xyxy, boxes[keep])


def test_vision_tower_runs_once_per_batch(tiny_dir: Path) -> None:
    m = load(tiny_dir, detect_classes=["car", "person"], max_rows=2)  # many prompts, several generate calls
    calls: list[int] = []
    handle = m.hf_model.model.vision_tower.register_forward_hook(lambda mod, args, out: calls.append(args[0].shape[0]))
    try:
        out = m(batch(frames(3)))
    finally:
        handle.remove()
    assert calls == [3]  # one pass over the 3 frames, shared by caption, 2 classes and 3 queries
    assert out.detections is not None and set(out.detections.label.tolist()) <= {"car", "person"}


def test_share_vision_off_reencodes_per_task_with_the_same_answers(tiny_dir: Path, model: Florence2Model) -> None:
    m = load(tiny_dir, share_vision=False)
    calls: list[int] = []
    handle = m.hf_model.model.vision_tower.register_forward_hook(lambda mod, args, out: calls.append(args[0].shape[0]))
    b = batch(frames(2, seed=3))
    try:
        off = m(b)
    finally:
        handle.remove()
    on = model(b)
    assert calls == [2, 2, 2]  # caption's pass, then detect and query encode the frames again
    assert off.captions == on.captions and off.queries is not None and on.queries is not None
    np.testing.assert_array_equal(off.detections.xyxy, on.detections.xyxy)  # type: ignore[union-attr]
    np.testing.assert_array_equal(off.queries.matched, on.queries.matched)


def test_boxes_scale_to_source_pixels(model: Florence2Model) -> None:
    px = frames(2, seed=4)
    small = model(batch(px, orig=(320, 240)))
    large = model(batch(px, orig=(1280, 720)))
    assert small.detections is not None and large.detections is not None
    assert small.detections.frame.tolist() == large.detections.frame.tolist()
    scale = np.array([4.0, 3.0, 4.0, 3.0], np.float32)
    np.testing.assert_allclose(large.detections.xyxy, small.detections.xyxy * scale, rtol=1e-5)


def test_boxes_map_back_through_a_letterbox(model: Florence2Model) -> None:
    """Frames the decoder letterboxed: location bins are fractions of the padded frame, mapped back exactly."""
    from operators.geometry import to_source_xyxy

    px = frames(2, seed=6)
    plain = batch(px, orig=(640, 272))
    boxed = FrameBatch(px, plain.source_id, plain.frame_index, plain.pts, plain.wall_time, plain.orig_width,
                       plain.orig_height, meta={"cam": {"resize": "letterbox"}})
    stretched, letterboxed = model(plain).detections, model(boxed).detections
    assert stretched is not None and letterboxed is not None and len(stretched) > 0
    in_model = stretched.xyxy * np.array([S / 640, S / 272, S / 640, S / 272], np.float32)  # back to bins' pixels
    np.testing.assert_allclose(letterboxed.xyxy, to_source_xyxy(in_model, 640, 272, S, S, "letterbox"), atol=1e-3)
    assert (letterboxed.xyxy[:, [1, 3]] <= 272).all()


def test_frames_of_another_size_are_resized(model: Florence2Model) -> None:
    px = frames(2, h=40, w=72, seed=5)
    out = model(batch(px, orig=(720, 400)))
    assert out.captions is not None and len(out.captions.text) == 2
    assert out.detections is not None and (out.detections.xyxy[:, [0, 2]] <= 720).all()


def test_caption_detail_ocr_runs(tiny_dir: Path) -> None:
    m = load(tiny_dir, tasks=["caption"], caption_detail="ocr")
    assert m.caption_task == "<OCR>"
    out = m(batch(frames(2)))
    assert out.captions is not None and len(out.captions.text) == 2


# ---- parsing (hand-written model outputs) ----------------------------------------------
def test_parse_labels_and_boxes_at_bin_centres() -> None:
    labels, xyxy = parse_locations("</s><s>car<loc_0><loc_0><loc_999><loc_499>person<loc_100><loc_200>"
                                   "<loc_300><loc_400></s>", 1000, 500)
    assert labels == ["car", "person"]
    assert xyxy.dtype == np.float32
    np.testing.assert_allclose(xyxy, [[0.5, 0.25, 999.5, 249.75], [100.5, 100.25, 300.5, 200.25]])


def test_parse_scales_to_source_frame() -> None:
    _, a = parse_locations("x<loc_250><loc_500><loc_750><loc_999>", 640, 480)
    np.testing.assert_allclose(a, [[160.32, 240.24, 480.32, 479.76]], rtol=1e-6)


def test_parse_several_boxes_share_a_label() -> None:
    labels, xyxy = parse_locations("car<loc_1><loc_2><loc_3><loc_4><loc_5><loc_6><loc_7><loc_8> dog<loc_9>"
                                   "<loc_9><loc_20><loc_20>", 1000, 1000)
    assert labels == ["car", "car", "dog"] and xyxy.shape == (3, 4)


def test_parse_orders_corners_and_clips_bins() -> None:
    _, xyxy = parse_locations("a<loc_900><loc_800><loc_100><loc_5000>", 1000, 1000)
    np.testing.assert_allclose(xyxy, [[100.5, 800.5, 900.5, 999.5]])


@pytest.mark.parametrize("text", [
    "", "a cat sitting on a mat", "car<loc_1><loc_2><loc_3>", "car<loc_1><loc_2", "car<loc_", "<loc_>",
    "<loc_x><loc_1><loc_2><loc_3>", "<<<>>>", "car<loc_1><loc_2>dog<loc_3><loc_4>", "</s><pad><pad>",
])
def test_parse_malformed_yields_no_box(text: str) -> None:
    labels, xyxy = parse_locations(text, 640, 480)
    assert labels == [] and xyxy.shape == (0, 4) and xyxy.dtype == np.float32


def test_parse_drops_partial_box_but_keeps_complete_ones() -> None:
    labels, xyxy = parse_locations("car<loc_1><loc_2><loc_3><loc_4><loc_5><loc_6>dog<loc_7>", 1000, 1000)
    assert labels == ["car"] and xyxy.shape == (1, 4)
    labels, _ = parse_locations("car<loc_1><loc_2>dog<loc_3><loc_4><loc_5><loc_6>", 1000, 1000)
    assert labels == ["dog"]  # text interrupting a box discards its partial coordinates


def test_parse_box_without_text_has_empty_label_and_tags_are_skipped() -> None:
    labels, _ = parse_locations("<s><loc_1><loc_2><loc_3><loc_4>", 100, 100)
    assert labels == [""]
    labels, _ = parse_locations("<od>car</od><loc_1><loc_2><loc_3><loc_4>", 100, 100)
    assert labels == ["car"]


def test_parse_never_raises_on_random_token_soup() -> None:
    rng = np.random.default_rng(0)
    pieces = ["<loc_", "<loc_12>", "<loc_999999>", "car", " ", "<", ">", "</s>", "<s>", "<pad>", "_1>", "é"]
    for _ in range(300):
        text = "".join(rng.choice(pieces, size=int(rng.integers(0, 30))).tolist())
        labels, xyxy = parse_locations(text, 640, 480)
        assert len(labels) == len(xyxy) and np.isfinite(xyxy).all()
        assert (xyxy >= 0).all() and (xyxy[:, [0, 2]] <= 640).all() and (xyxy[:, [1, 3]] <= 480).all()


def test_clean_text() -> None:
    assert clean_text("</s><s>a  car <loc_5>parked</s><pad><pad>") == "a car parked"


# ---- referring-expression segmentation (polygons) ------------------------------------------
def test_parse_polygons_known_answer() -> None:
    text = ("<s><poly><loc_0><loc_0><loc_499><loc_0><loc_499><loc_499></poly><sep>"
            "<loc_500><loc_500><loc_999><loc_500><loc_999><loc_999><loc_7></s>")
    polys = parse_polygons(text, 1000, 2000)
    assert len(polys) == 2
    np.testing.assert_allclose(polys[0], [0.5, 1.0, 499.5, 1.0, 499.5, 999.0])
    np.testing.assert_allclose(polys[1], [500.5, 1001.0, 999.5, 1001.0, 999.5, 1999.0])  # odd trailing bin dropped
    assert parse_polygons("<loc_1><loc_2><loc_3><loc_4>", 10, 10) == []  # two points: no polygon
    assert parse_polygons("no locations", 10, 10) == []


@pytest.mark.parametrize("mode", ["stretch", "letterbox"])
def test_segments_map_polygons_to_source_pixels(mode: str) -> None:
    from operators.geometry import to_source_xyxy
    from operators.masks import decode_rle, polygon_mask

    b = FrameBatch(pixels=frames(1), source_id=np.array(["cam"]), frame_index=np.arange(1), pts=np.zeros(1),
                   wall_time=np.zeros(1), orig_width=np.full(1, 640), orig_height=np.full(1, 272),
                   meta={"cam": {"resize": mode}})
    text = "<loc_250><loc_400><loc_750><loc_400><loc_750><loc_600><loc_250><loc_600>"
    d = Florence2Model.segments([text], b, "the bike")
    seg = d.masks[0]  # type: ignore[index]
    assert d.label.tolist() == ["the bike"] and seg is not None and seg.source == "polygon" and seg.size == (272, 640)
    corners = np.array([[250.5, 400.5, 750.5, 600.5]]) / 1000 * S  # input pixels
    want = to_source_xyxy(corners, 640, 272, S, S, mode)[0]
    np.testing.assert_allclose(d.xyxy[0], want, atol=0.01)
    np.testing.assert_allclose(seg.polygons[0][:2], want[:2], atol=0.01)
    mask = decode_rle(seg.counts, seg.size)
    assert (mask == polygon_mask(seg.polygons, 272, 640)).all()
    area = (want[2] - want[0]) * (want[3] - want[1])
    assert abs(int(mask.sum()) - area) / area < 0.05  # the rectangle, rasterised


def test_segment_phrases_run_in_detect_on_the_shared_encoding(tiny_dir: Path) -> None:
    m = load(tiny_dir, tasks=["detect"], segment_phrases=["a red car"], max_new_tokens=8)
    out = m(batch(frames(2, seed=4)))
    assert out.detections is not None
    masks = out.detections.masks
    if masks is not None:  # random weights may or may not draw a polygon
        assert all(mk is None or mk.source == "polygon" for mk in masks)
        assert all(lab == "a red car" for lab, mk in zip(out.detections.label, masks, strict=True) if mk is not None)
    with pytest.raises(ValueError, match="unknown florence2 option"):
        Florence2Model(model_id="x", segment_phrase=["a"])
