"""BLIP on tiny random captioning and VQA checkpoints: loading, batching, one ViT pass, yes/no scores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from operators.frames import FrameBatch  # noqa: E402
from operators.models.blip import BlipModel  # noqa: E402
from operators.models.registry import get  # noqa: E402
from tests.support.tiny_blip import TINY_BLIP_SIZE, build_tiny_blip  # noqa: E402

QUERIES = ["is there a car?", "is it raining?"]
QUESTIONS = ["what is the weather?", "how many people are waiting?"]


def frames(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 4, 4, 3)).repeat(TINY_BLIP_SIZE // 4, 1).repeat(TINY_BLIP_SIZE // 4, 2).astype(
        np.uint8)


def batch(pixels: np.ndarray) -> FrameBatch:
    n = len(pixels)
    return FrameBatch(pixels=pixels, source_id=np.array(["cam"] * n), frame_index=np.arange(n),
                      pts=np.arange(n, dtype=np.float64), wall_time=np.zeros(n), orig_width=np.full(n, 640),
                      orig_height=np.full(n, 480))


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {k: build_tiny_blip(tmp_path_factory.mktemp(f"blip-{k}"), k) for k in ("caption", "vqa")}


@pytest.fixture(scope="module")
def captioner(dirs: dict[str, Path]) -> Iterator[BlipModel]:
    m = BlipModel(model_id="tiny/blip", path=str(dirs["caption"]), device="cpu", tasks=["caption"], max_new_tokens=5)
    m.setup()
    yield m


@pytest.fixture(scope="module")
def vqa(dirs: dict[str, Path]) -> Iterator[BlipModel]:
    m = BlipModel(model_id="tiny/blip-vqa", path=str(dirs["vqa"]), device="cpu", tasks=["query", "ask"],
                  queries=QUERIES, questions=QUESTIONS, max_new_tokens=5)
    m.setup()
    yield m


def test_registry_and_configuration() -> None:
    assert get("blip") is BlipModel
    with pytest.raises(ValueError, match="unknown blip option"):
        BlipModel(model_id="x", prompt="a")
    with pytest.raises(ValueError, match="cannot run task"):
        BlipModel(model_id="x", tasks=["detect"])
    with pytest.raises(RuntimeError, match="setup"):
        BlipModel(model_id="x")(batch(frames(1)))


def test_round_trip_through_setup(captioner: BlipModel, vqa: BlipModel) -> None:
    assert type(captioner.hf_model).__name__ == "BlipForConditionalGeneration"
    assert type(vqa.hf_model).__name__ == "BlipForQuestionAnswering"
    assert captioner.input_size() == vqa.input_size() == (TINY_BLIP_SIZE, TINY_BLIP_SIZE)
    assert captioner.hf_model.dtype == torch.float32 and vqa._yes and vqa._no  # yes/no are single tokens


def test_checkpoint_kind_decides_the_tasks(dirs: dict[str, Path]) -> None:
    m = BlipModel(model_id="x", path=str(dirs["caption"]), device="cpu", tasks=["caption", "ask"])
    with pytest.raises(ValueError, match="BlipForConditionalGeneration checkpoint"):
        m.setup()
    for kind, tasks in (("caption", ("caption",)), ("vqa", ("query", "ask"))):
        m = BlipModel(model_id="x", path=str(dirs[kind]), device="cpu")  # no tasks: what the checkpoint runs
        m.setup()
        assert m.tasks == tasks


def test_torch_preprocessing_matches_the_image_processor(captioner: BlipModel) -> None:
    px = frames(2, seed=4)
    ref = captioner.processor.image_processor(images=list(px), return_tensors="pt")["pixel_values"]
    mine = captioner.hf_model.vision_model(pixel_values=ref).last_hidden_state
    torch.testing.assert_close(captioner.image_features(px), mine, atol=1e-4, rtol=1e-4)


def test_caption_batched_equals_per_frame_and_matches_upstream_generate(captioner: BlipModel) -> None:
    px = frames(3, seed=1)
    whole = captioner(batch(px)).captions
    assert whole is not None and whole.kind == "model" and len(whole.text) == 3
    assert [captioner(batch(px[i:i + 1])).captions.text[0] for i in range(3)] == whole.text  # type: ignore[union-attr]
    pv = captioner.processor.image_processor(images=list(px), return_tensors="pt")["pixel_values"]
    seqs = captioner.hf_model.generate(pixel_values=pv, max_new_tokens=5, do_sample=False, num_beams=1)
    assert captioner._decode(seqs) == whole.text  # the shared-vision path is what BLIP's own generate does


def test_vqa_batched_equals_per_frame(vqa: BlipModel, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = vqa.hf_model.vision_model.forward
    monkeypatch.setattr(vqa.hf_model.vision_model, "forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    px = frames(3, seed=2)
    out = vqa(batch(px))
    assert len(calls) == 1  # queries and questions share one ViT pass
    assert out.queries is not None and out.queries.matched.shape == (2, 3)
    assert ((out.queries.score > 0) & (out.queries.score < 1)).all()
    assert out.answers is not None and out.answers.questions == QUESTIONS
    assert set(out.models) == {"query", "ask"}
    for i in range(3):
        one = vqa(batch(px[i:i + 1]))
        assert [r[0] for r in one.answers.text] == [r[i] for r in out.answers.text]  # type: ignore[union-attr]
        np.testing.assert_allclose(one.queries.score[:, 0], out.queries.score[:, i], atol=1e-5)  # type: ignore[union-attr]


def test_vqa_answer_matches_upstream_generate(vqa: BlipModel) -> None:
    px = frames(1, seed=6)
    mine = vqa(batch(px)).answers.text[0][0]  # type: ignore[union-attr]
    enc = vqa.processor(images=list(px), text=QUESTIONS[0], return_tensors="pt")
    seqs = vqa.hf_model.generate(**enc, max_new_tokens=5, do_sample=False, num_beams=1)
    assert vqa._decode(seqs) == [mine]


def test_empty_batch(vqa: BlipModel) -> None:
    out = vqa(batch(frames(0)))
    assert out.answers is not None and out.answers.text == [[], []] and out.queries.matched.shape == (2, 0)  # type: ignore[union-attr]
