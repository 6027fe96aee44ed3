"""zero_shot on tiny random OWLv2 and Grounding DINO checkpoints loaded back from a local path."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from operators.frames import FrameBatch
from operators.models.registry import create, family_names, get
from operators.models.zero_shot import ZeroShotDetectModel
from tests.support.tiny_detectors import build_tiny_rtdetr_v2
from tests.support.tiny_zero_shot import TINY_ZERO_SHOT_SIZE, build_tiny_grounding_dino, build_tiny_owlv2

BUILDERS = {"owlv2": build_tiny_owlv2, "grounding-dino": build_tiny_grounding_dino}
CLASSES = {"owlv2": "Owlv2ForObjectDetection", "grounding-dino": "GroundingDinoForObjectDetection"}
QUERIES = ["a person riding a bicycle", "a red car", "a dog"]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("zero_shot")
    return {name: build(root / name) for name, build in BUILDERS.items()}


@pytest.fixture(scope="module")
def real_frames(bikes: Path) -> np.ndarray:
    """Three real bikes.mp4 frames stretched to 64x64, as the decoder gives them to a 64x64 model."""
    out = []
    with av.open(str(bikes)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % 40 == 0:
                out.append(cv2.resize(f.to_ndarray(format="rgb24"), (TINY_ZERO_SHOT_SIZE, TINY_ZERO_SHOT_SIZE),
                                      interpolation=cv2.INTER_AREA))
            if len(out) == 3:
                break
    return np.stack(out)


def batch(px: np.ndarray) -> FrameBatch:
    n = len(px)
    return FrameBatch(px, ["bikes"] * n, np.arange(n), np.arange(n) / 2, np.zeros(n), [640] * n, [272] * n)


def load(path: Path, **kw) -> ZeroShotDetectModel:  # type: ignore[no-untyped-def]
    kw.setdefault("queries", QUERIES)
    m = ZeroShotDetectModel(path=str(path), threads=1, **kw)
    m.setup()
    return m


@pytest.mark.parametrize("arch", list(BUILDERS))
def test_round_trip_queries_grounded_to_boxes(ckpts, real_frames, arch: str) -> None:  # type: ignore[no-untyped-def]
    m = load(ckpts[arch], tasks=["query"], thresholds={"a dog": 0.99})
    assert type(m.hf_model).__name__ == CLASSES[arch] and m.model_type == arch
    assert m.input_size() == (TINY_ZERO_SHOT_SIZE, TINY_ZERO_SHOT_SIZE) and m.hf_model.dtype == torch.float32
    out = m(batch(real_frames))
    qa = out.queries
    assert qa is not None and out.detections is None and qa.queries == QUERIES
    assert qa.matched.shape == qa.score.shape == (3, 3) and qa.score.dtype == np.float32
    assert ((qa.score >= 0) & (qa.score <= 1)).all()
    for qi, q in enumerate(QUERIES):  # matched = a box of that query above its threshold
        thr = m.threshold_for(q)
        np.testing.assert_array_equal(qa.matched[qi], qa.score[qi] >= thr)
        boxes = qa.boxes.score[qa.boxes.label == q]
        assert (boxes >= thr).all() and len(boxes) <= 3 * m.max_boxes
        for row in range(3):
            assert bool(qa.matched[qi, row]) == bool(((qa.boxes.frame == row) & (qa.boxes.label == q)).any())
    b = qa.boxes.xyxy
    assert (b[:, [0, 2]] <= 640).all() and (b[:, [1, 3]] <= 272).all() and (b >= 0).all()
    assert out.models == {"query": str(ckpts[arch])}


@pytest.mark.parametrize("arch", list(BUILDERS))
def test_batch_equals_frame_by_frame(ckpts, real_frames, arch: str) -> None:  # type: ignore[no-untyped-def]
    m = load(ckpts[arch])
    probs, xyxy = m.ground(real_frames, QUERIES)
    assert probs.shape[0] == 3 and probs.shape[2] == 3 and xyxy.shape == (*probs.shape[:2], 4)
    for i in range(3):
        p1, x1 = m.ground(real_frames[i:i + 1], QUERIES)
        np.testing.assert_allclose(p1[0], probs[i], atol=1e-4)
        np.testing.assert_allclose(x1[0], xyxy[i], atol=1e-3)
    assert not np.allclose(probs[0], probs[2]), "outputs should depend on the frame"
    whole = m(batch(real_frames)).queries
    for i in range(3):
        one = m(batch(real_frames[i:i + 1])).queries
        np.testing.assert_allclose(one.score[:, 0], whole.score[:, i], atol=1e-4)
        np.testing.assert_allclose(one.boxes.xyxy, whole.boxes.xyxy[whole.boxes.frame == i], atol=1e-2)


def test_owlv2_boxes_and_scores_match_its_processor(ckpts, real_frames) -> None:  # type: ignore[no-untyped-def]
    """Non-square frames: padded to a square bottom/right like the processor, boxes scaled by the long side."""
    m = load(ckpts["owlv2"])
    px = np.ascontiguousarray(real_frames[:, :48])  # 48x64 frames
    proc = m._processor
    enc = proc(text=[QUERIES] * 3, images=list(px), return_tensors="pt")
    with torch.inference_mode():
        ref = proc.post_process_grounded_object_detection(m.hf_model(**enc), threshold=0.0,
                                                          target_sizes=[(48, 64)] * 3)
    probs, xyxy = m.ground(px, QUERIES)
    for i, r in enumerate(ref):
        np.testing.assert_allclose(probs[i].max(1), r["scores"].numpy(), atol=2e-3)
        np.testing.assert_array_equal(probs[i].argmax(1), r["labels"].numpy())
        np.testing.assert_allclose(xyxy[i], r["boxes"].numpy(), atol=0.3)


def test_grounding_dino_boxes_match_its_processor_and_prompt_spans(ckpts, real_frames) -> None:  # type: ignore[no-untyped-def]
    m = load(ckpts["grounding-dino"])
    proc = m._processor
    enc = proc(text=["a red car. a dog."] * 3, images=list(real_frames), return_tensors="pt")
    with torch.inference_mode():
        raw = m.hf_model(**enc)
        ref = proc.post_process_grounded_object_detection(raw, enc["input_ids"], threshold=0.0, text_threshold=0.0,
                                                          target_sizes=[(64, 64)] * 3)
    probs, xyxy = m.ground(real_frames, ["a red car", "a dog"])
    tok = raw.logits.sigmoid()  # [N, 30, 256]; tokens 1..3 = "a red car", 5..6 = "a dog" after [CLS]
    np.testing.assert_allclose(probs[..., 0], tok[..., 1:4].amax(-1).numpy(), atol=2e-3)
    np.testing.assert_allclose(probs[..., 1], tok[..., 5:7].amax(-1).numpy(), atol=2e-3)
    for i, r in enumerate(ref):
        np.testing.assert_allclose(xyxy[i], r["boxes"].numpy(), atol=0.3)


@pytest.mark.parametrize("arch", list(BUILDERS))
def test_detect_classes(ckpts, real_frames, arch: str) -> None:  # type: ignore[no-untyped-def]
    m = load(ckpts[arch], tasks=["query", "detect"], detect_classes=["person", "car"], threshold=0.0, max_boxes=4)
    out = m(batch(real_frames))
    d = out.detections
    assert d is not None and set(d.label.tolist()) <= {"person", "car"} and len(d) > 0
    assert max(((d.frame == r) & (d.label == c)).sum() for r in range(3) for c in ("person", "car")) <= 4
    assert set(out.models) == {"query", "detect"}
    probs, _ = m.ground(real_frames, [*QUERIES, "person", "car"])  # each box counted for its best class only
    assert len(d.for_frame(0)) <= probs.shape[1]


def test_queries_change_and_empty(ckpts, real_frames) -> None:  # type: ignore[no-untyped-def]
    m = load(ckpts["owlv2"], queries=[])
    qa = m(batch(real_frames)).queries
    assert qa.matched.shape == (0, 3) and len(qa.boxes) == 0
    m.set_queries(["a bus"])
    qa = m(batch(real_frames)).queries
    assert qa.queries == ["a bus"] and qa.score.shape == (1, 3)
    assert m(batch(real_frames[:0])).queries.score.shape == (1, 0)


def test_bad_options_and_checkpoints_fail_clearly(ckpts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="detect_classes"):
        ZeroShotDetectModel(tasks=["detect"])
    with pytest.raises(ValueError, match="unknown zero_shot option"):
        ZeroShotDetectModel(prompt="x")
    with pytest.raises(ValueError, match="probability"):
        ZeroShotDetectModel(thresholds={"a": 3})
    with pytest.raises(OSError, match="zero-shot object-detection checkpoint"):
        ZeroShotDetectModel(path=str(build_tiny_rtdetr_v2(tmp_path / "rtdetr"))).setup()
    m = load(ckpts["grounding-dino"])
    with pytest.raises(ValueError, match="at most 256"):
        m.ground(np.zeros((1, 64, 64, 3), np.uint8), [f"a person riding a bicycle {i}" for i in range(60)])


def test_registered_with_its_tasks() -> None:
    assert "zero_shot" in family_names() and get("zero_shot") is ZeroShotDetectModel
    assert isinstance(create("zero_shot", tasks=["query"]), ZeroShotDetectModel)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("arch", list(BUILDERS))
def test_cuda_bfloat16(ckpts, real_frames, arch: str) -> None:  # type: ignore[no-untyped-def]
    m = load(ckpts[arch], device="cuda")
    assert m.hf_model.dtype == torch.bfloat16
    qa = m(batch(real_frames)).queries
    assert qa.score.dtype == np.float32 and np.isfinite(qa.score).all()
