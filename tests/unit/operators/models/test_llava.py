"""LLaVA 1.5 / NeXT / OneVision through the vlm chat path, on tiny random checkpoints built from the real configs.

OneVision's processor cannot be built without torchvision (its video processor), like Qwen2-VL's: skipped then.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from operators.frames import FrameBatch  # noqa: E402
from operators.models.llava import LlavaModel  # noqa: E402
from operators.models.registry import get  # noqa: E402
from operators.models.vlm import VLMModel  # noqa: E402
from tests.support.tiny_llava import TINY_LLAVA_SIZE, build_tiny_llava  # noqa: E402

HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None
KINDS = [pytest.param("llava", id="llava"), pytest.param("llava_next", id="llava_next"),
         pytest.param("llava_onevision", id="llava_onevision", marks=pytest.mark.skipif(
             not HAS_TORCHVISION, reason="LlavaOnevisionProcessor needs torchvision (its video processor)"))]
CLASSES = {"llava": "LlavaForConditionalGeneration", "llava_next": "LlavaNextForConditionalGeneration",
           "llava_onevision": "LlavaOnevisionForConditionalGeneration"}
QUERIES = ["a red car", "dog"]
QUESTIONS = ["how many people are waiting?", "what is the weather?"]


def frames(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    s = TINY_LLAVA_SIZE
    return rng.integers(0, 256, (n, 4, 4, 3)).repeat(s // 4, 1).repeat(s // 4, 2).astype(np.uint8)


def batch(pixels: np.ndarray) -> FrameBatch:
    n = len(pixels)
    return FrameBatch(pixels=pixels, source_id=np.array(["cam"] * n), frame_index=np.arange(n),
                      pts=np.arange(n, dtype=np.float64), wall_time=np.zeros(n), orig_width=np.full(n, 640),
                      orig_height=np.full(n, 480))


@pytest.fixture(scope="module", params=KINDS)
def model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, LlavaModel]]:
    kind = request.param
    path = build_tiny_llava(tmp_path_factory.mktemp(f"tiny-{kind}"), kind)
    m = LlavaModel(model_id=f"tiny/{kind}", path=str(path), device="cpu", tasks=["caption", "query", "ask"],
                   queries=QUERIES, questions=QUESTIONS, max_new_tokens=5)
    m.setup()
    yield kind, m
    m.teardown()


def test_registry() -> None:
    assert get("llava") is LlavaModel and issubclass(LlavaModel, VLMModel)
    assert "ask" in LlavaModel.supported_tasks


def test_round_trip_through_setup(model: tuple[str, LlavaModel]) -> None:
    kind, m = model
    assert type(m.hf_model).__name__ == CLASSES[kind]
    assert m.input_size() == (TINY_LLAVA_SIZE, TINY_LLAVA_SIZE)
    assert m.hf_model.dtype == torch.float32 and m.shared_vision
    feats = m.image_features(frames(2))
    assert len(feats["features"]) == 2


def test_llava15_torch_preprocessing_matches_the_image_processor(model: tuple[str, LlavaModel]) -> None:
    kind, m = model
    if kind != "llava":
        pytest.skip("NeXT / OneVision frames go through the image processor itself (tiles)")
    px = frames(2, seed=3)
    ref = m.processor.image_processor(images=list(px), return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(m.pixel_inputs(px)["pixel_values"], ref.float(), atol=1e-5, rtol=1e-5)


def test_one_vision_pass_and_batched_equals_per_frame(model: tuple[str, LlavaModel],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _, m = model
    calls = []
    real = m.hf_model.get_image_features
    monkeypatch.setattr(m.hf_model, "get_image_features", lambda *a, **k: calls.append(1) or real(*a, **k))
    px = frames(3, seed=1)
    whole = m(batch(px))
    assert len(calls) == 1  # caption, 2 queries and 2 questions on one vision pass
    assert whole.answers is not None and whole.answers.questions == QUESTIONS
    assert whole.queries is not None and ((whole.queries.score > 0) & (whole.queries.score < 1)).all()
    for i in range(3):
        one = m(batch(px[i:i + 1]))
        assert one.captions.text[0] == whole.captions.text[i]  # type: ignore[union-attr]
        assert [r[0] for r in one.answers.text] == [r[i] for r in whole.answers.text]  # type: ignore[union-attr]
        np.testing.assert_allclose(one.queries.score[:, 0], whole.queries.score[:, i], atol=1e-4)  # type: ignore[union-attr]


def test_llava_family_refuses_other_checkpoints(tmp_path: Path) -> None:
    from tests.support.tiny_vlm import build_tiny_idefics3

    m = LlavaModel(path=str(build_tiny_idefics3(tmp_path / "idefics3")), device="cpu")
    with pytest.raises(OSError, match="not LLaVA"):
        m.setup()
