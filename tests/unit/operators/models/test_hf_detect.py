"""hf_detect on tiny random RT-DETR v2, D-FINE and DETR checkpoints loaded back from a local path."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

from operators.frames import FrameBatch
from operators.geometry import letterbox, to_source_xyxy
from operators.models.hf_detect import HFDetectModel
from operators.models.registry import create, family_names, get
from tests.support.tiny_detectors import (
    TINY_DETECTOR_SIZE,
    TINY_LABELS,
    build_tiny_detr,
    build_tiny_dfine,
    build_tiny_rtdetr_v2,
)

BUILDERS = {"rt_detr_v2": build_tiny_rtdetr_v2, "d_fine": build_tiny_dfine, "detr": build_tiny_detr}
CLASSES = {"rt_detr_v2": "RTDetrV2ForObjectDetection", "d_fine": "DFineForObjectDetection",
           "detr": "DetrForObjectDetection"}


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("hf_detect")
    return {name: build(root / name) for name, build in BUILDERS.items()}


@pytest.fixture(scope="module")
def real_frames(bikes: Path) -> np.ndarray:
    """Four real 640x272 frames of bikes.mp4, stretched to the tiny models' 64x64 input like the decoder would."""
    import cv2

    out = []
    with av.open(str(bikes)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % 30 == 0:
                out.append(cv2.resize(f.to_ndarray(format="rgb24"), (TINY_DETECTOR_SIZE, TINY_DETECTOR_SIZE),
                                      interpolation=cv2.INTER_AREA))
            if len(out) == 4:
                break
    return np.stack(out)


def batch(px: np.ndarray, meta: dict | None = None) -> FrameBatch:  # type: ignore[type-arg]
    n = len(px)
    return FrameBatch(px, ["bikes"] * n, np.arange(n), np.arange(n) / 2, np.zeros(n), [640] * n, [272] * n,
                      meta=meta or {})


def load(path: Path, **kw) -> HFDetectModel:  # type: ignore[no-untyped-def]
    m = HFDetectModel(path=str(path), threads=1, score_threshold=kw.pop("score_threshold", 0.0), **kw)
    m.setup()
    return m


@pytest.mark.parametrize("arch", list(BUILDERS))
def test_round_trip_labels_from_config_and_boxes_in_source_pixels(ckpts, real_frames, arch: str) -> None:  # type: ignore[no-untyped-def]
    m = load(ckpts[arch], tasks=["detect", "caption"])
    assert type(m.hf_model).__name__ == CLASSES[arch]
    assert m.labels == TINY_LABELS and m.input_size() == (TINY_DETECTOR_SIZE, TINY_DETECTOR_SIZE)
    assert m.hf_model.dtype == torch.float32  # CPU: float32 whatever dtype: auto would pick on a GPU
    out = m(batch(real_frames))
    d = out.detections
    assert d is not None and len(d) > 0 and set(d.frame.tolist()) <= set(range(4))
    assert set(d.label.tolist()) <= set(TINY_LABELS.values())
    assert d.xyxy.dtype == np.float32 and d.score.dtype == np.float32
    assert (d.xyxy[:, [0, 2]] <= 640).all() and (d.xyxy[:, [1, 3]] <= 272).all() and (d.xyxy >= 0).all()
    assert (d.xyxy[:, 2] > d.xyxy[:, 0]).all() and (d.xyxy[:, 3] > d.xyxy[:, 1]).all()
    assert out.models == {"detect": str(ckpts[arch]), "caption": f"composed:{ckpts[arch]}"}
    assert out.captions is not None and out.captions.kind == "composed" and len(out.captions.text) == 4


@pytest.mark.parametrize("arch", list(BUILDERS))
def test_batch_equals_frame_by_frame(ckpts, real_frames, arch: str) -> None:  # type: ignore[no-untyped-def]
    m = load(ckpts[arch])
    whole = m(batch(real_frames)).detections
    per = [m(batch(real_frames[i:i + 1])).detections for i in range(len(real_frames))]
    for i, one in enumerate(per):
        part = whole.for_frame(i)
        assert one.label.tolist() == part.label.tolist()
        np.testing.assert_allclose(one.xyxy, part.xyxy, atol=1e-2)
        np.testing.assert_allclose(one.score, part.score, atol=1e-4)
    assert not np.allclose(per[0].xyxy[:3], per[2].xyxy[:3]), "outputs should depend on the frame"


@pytest.mark.parametrize("arch", list(BUILDERS))
def test_same_boxes_as_the_processors_own_pipeline(ckpts, real_frames, arch: str) -> None:  # type: ignore[no-untyped-def]
    """Frames at the input size: our on-device normalisation == the processor's, and its post-processing too."""
    m = load(ckpts[arch])
    proc = m._processor
    inputs = proc(images=list(real_frames), return_tensors="pt")
    with torch.inference_mode():
        ref = proc.post_process_object_detection(m.hf_model(pixel_values=inputs["pixel_values"]), threshold=0.0,
                                                 target_sizes=[(272, 640)] * 4)
    ours = m(batch(real_frames)).detections
    for i, r in enumerate(ref):
        order = np.argsort(-r["scores"].numpy(), kind="stable")[:100]
        np.testing.assert_allclose(ours.for_frame(i).score, r["scores"].numpy()[order], atol=1e-3)
        np.testing.assert_allclose(ours.for_frame(i).xyxy, r["boxes"].numpy()[order], atol=0.5)


def test_letterboxed_frames_map_through_geometry(ckpts, real_frames) -> None:  # type: ignore[no-untyped-def]
    m = load(ckpts["rt_detr_v2"])
    raw = m.raw_detections(real_frames[:1])[0]
    out = m(batch(real_frames[:1], meta={"bikes": {"resize": "letterbox"}})).detections
    order = np.argsort(-raw["scores"].numpy(), kind="stable")
    want = to_source_xyxy(raw["boxes"].numpy()[order], 640, 272, 64, 64, "letterbox")
    keep = (want[:, 2] > want[:, 0]) & (want[:, 3] > want[:, 1])  # boxes wholly in the padding are dropped
    np.testing.assert_allclose(out.xyxy, want[keep], atol=1e-3)
    lb = letterbox(640, 272, 64, 64)
    assert lb.h < 64 and len(out) <= len(want)


def test_threshold_and_max_detections(ckpts, real_frames) -> None:  # type: ignore[no-untyped-def]
    m = load(ckpts["d_fine"], max_detections=5)
    d = m(batch(real_frames)).detections
    assert max(len(d.for_frame(i)) for i in range(4)) == 5
    strict = load(ckpts["d_fine"], score_threshold=0.99)
    assert (strict(batch(real_frames)).detections.score >= 0.99).all()
    assert len(m(batch(real_frames[:0])).detections) == 0


def test_options_and_bad_checkpoints_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown hf_detect option"):
        HFDetectModel(detect_classes=["car"])
    with pytest.raises(ValueError, match="input_size"):
        HFDetectModel(input_size=[8])
    with pytest.raises(ValueError, match="cannot run task"):
        HFDetectModel(tasks=["query"])
    from transformers import ResNetConfig

    ResNetConfig().save_pretrained(tmp_path)  # a config, but not of a detector
    with pytest.raises(OSError, match="object-detection checkpoint"):
        HFDetectModel(path=str(tmp_path)).setup()
    with pytest.raises(RuntimeError, match="setup"):
        HFDetectModel().raw_detections(np.zeros((1, 8, 8, 3), np.uint8))


def test_registered_with_its_tasks() -> None:
    assert "hf_detect" in family_names() and get("hf_detect") is HFDetectModel
    assert get("hf_detect").supported_tasks == ("detect", "caption")
    assert isinstance(create("hf_detect", tasks=["detect"]), HFDetectModel)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("arch", list(BUILDERS))
def test_cuda_bfloat16(ckpts, real_frames, arch: str) -> None:  # type: ignore[no-untyped-def]
    m = load(ckpts[arch], device="cuda")
    assert m.hf_model.dtype == torch.bfloat16
    d = m(batch(real_frames)).detections
    assert d.xyxy.dtype == np.float32 and np.isfinite(d.xyxy).all() and len(d) > 0
