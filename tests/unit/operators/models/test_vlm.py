"""VLM operator (SmolVLM/Idefics3, Qwen2-VL) on tiny random-weight checkpoints: plumbing and batching.

Checkpoints are built once per session and loaded through ``setup()`` like real ones.
Random weights say nothing meaningful, so no test looks at what the model answers; the
Qwen2-VL cases need torchvision (transformers will not build Qwen2VLProcessor without it).
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from operators.frames import FrameBatch  # noqa: E402
from operators.models.registry import create, get  # noqa: E402
from operators.models.vlm import VLMModel, parse_yes_no  # noqa: E402
from operators.models.weights import ModelNotFoundError  # noqa: E402
from operators.results import Captions, ModelOutput, QueryAnswers  # noqa: E402
from tests.support.tiny_vlm import (  # noqa: E402
    TINY_IDEFICS3_SIZE,
    TINY_QWEN2VL_SIZE,
    build_tiny_idefics3,
    build_tiny_qwen2vl,
)

HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None
QUERIES = ["Is anyone lying on the floor?", "a red car", "dog"]
FAST = {"max_new_tokens": 6}  # random weights rarely stop early; keep decoding short
FAMILIES = [
    pytest.param("idefics3", id="idefics3"),
    pytest.param("qwen2vl", id="qwen2vl", marks=pytest.mark.skipif(
        not HAS_TORCHVISION, reason="transformers builds Qwen2VLProcessor only with torchvision installed")),
]
SIZE = {"idefics3": TINY_IDEFICS3_SIZE, "qwen2vl": TINY_QWEN2VL_SIZE}
EXTRA = {"idefics3": {}, "qwen2vl": {"image_size": TINY_QWEN2VL_SIZE}}  # Qwen2-VL's default 448 is not tiny


@pytest.fixture(scope="session")
def tiny_dirs() -> dict[str, Path]:
    """Family -> checkpoint dir, built on first use."""
    return {}


def tiny_dir(dirs: dict[str, Path], family: str, factory: pytest.TempPathFactory) -> Path:
    if family not in dirs:
        build = build_tiny_idefics3 if family == "idefics3" else build_tiny_qwen2vl
        dirs[family] = build(factory.mktemp(f"tiny-{family}"))
    return dirs[family]


@pytest.fixture(scope="module")
def ckpt(request: pytest.FixtureRequest, tiny_dirs: dict[str, Path],
         tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    family = request.param
    return family, tiny_dir(tiny_dirs, family, tmp_path_factory)


def load(ckpt: tuple[str, Path], **kwargs) -> VLMModel:  # type: ignore[no-untyped-def]
    family, path = ckpt
    kwargs = {"model_id": f"tiny/{family}", "path": str(path), "device": "cpu", "queries": QUERIES,
              **FAST, **EXTRA[family], **kwargs}
    model = VLMModel(**kwargs)
    model.setup()
    return model


@pytest.fixture(scope="module")
def model(ckpt: tuple[str, Path]) -> Iterator[VLMModel]:
    m = load(ckpt)
    yield m
    m.teardown()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "ckpt" in metafunc.fixturenames:
        metafunc.parametrize("ckpt", FAMILIES, indirect=True, scope="module")


def frames(n: int, size: int, w: int | None = None, seed: int = 0) -> np.ndarray:
    """Distinct synthetic frames: coarse random colour blocks over a gradient, uint8 RGB."""
    h, w = size, w or size
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (n, 4, 4, 3)).astype(np.float32)
    up = blocks.repeat(math.ceil(h / 4), axis=1).repeat(math.ceil(w / 4), axis=2)[:, :h, :w]
    ramp = np.linspace(0, 64, w, dtype=np.float32)[None, None, :, None]
    return np.clip(up * 0.75 + ramp, 0, 255).astype(np.uint8)


def batch(pixels: np.ndarray) -> FrameBatch:
    n = len(pixels)
    return FrameBatch(pixels=pixels, source_id=np.array(["cam"] * n), frame_index=np.arange(n),
                      pts=np.arange(n, dtype=np.float64), wall_time=np.zeros(n), orig_width=np.full(n, 640),
                      orig_height=np.full(n, 480))


def px(model: VLMModel, n: int, seed: int = 0) -> np.ndarray:
    return frames(n, model.input_size()[0], seed=seed)


# ---- configuration (no weights) -------------------------------------------------------
def test_registry_names_the_class() -> None:
    assert get("vlm") is VLMModel
    assert create("vlm", model_id="x").tasks == ("caption", "query")  # default: what the family can run


def test_bad_configuration_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="unknown vlm option"):
        VLMModel(model_id="x", score_threshold=0.5)
    with pytest.raises(ValueError, match="dtype"):
        VLMModel(model_id="x", dtype="int8")
    with pytest.raises(ValueError, match="max_new_tokens"):
        VLMModel(model_id="x", max_new_tokens={"detect": 5})
    with pytest.raises(ValueError, match=r"\{query\}"):
        VLMModel(model_id="x", query_template="Answer yes or no.")
    with pytest.raises(ValueError, match="query_template"):
        VLMModel(model_id="x", query_template="{query} at {place}?")
    with pytest.raises(ValueError, match="max_rows"):
        VLMModel(model_id="x", max_rows=0)
    with pytest.raises(ValueError, match="cannot run task"):
        VLMModel(model_id="x", tasks=["caption", "detect"])


def test_call_before_setup_is_refused() -> None:
    m = VLMModel(model_id="x")
    assert m.input_size() == (512, 512)  # until setup reads the checkpoint
    assert VLMModel(model_id="x", image_size=336).input_size() == (336, 336)
    with pytest.raises(RuntimeError, match="setup"):
        m(batch(frames(1, 32)))


def test_missing_model_names_id_and_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    m = VLMModel(model_id="someorg/SmolVLM-missing", path=str(tmp_path / "nowhere"))
    with pytest.raises(ModelNotFoundError) as ei:
        m.setup()
    msg = str(ei.value)
    assert isinstance(ei.value, OSError)
    assert "someorg/SmolVLM-missing" in msg and "framewire models fetch" in msg
    assert str(tmp_path / "nowhere") in msg and "Hugging Face cache" in msg  # the places searched


@pytest.mark.parametrize(("text", "answer"), [
    ("Yes.", True), ("yes", True), ("Yes, there is a person lying on the floor.", True), ("  yes", True),
    ("**Yes**", True), ("YES!", True), ("- yes", True), ("Answer: yes", True), ("The answer is yes.", True),
    ("Yeah", True), ("No", False), ("no.", False), ("Answer: no", False), ("No, nobody is there.", False),
    ("\n\nNo", False), ("Assistant: No", False), ("nope", False),
    ("", None), ("   ", None), ("...", None), ("Maybe", None), ("Not sure", None), ("Nobody", None),
    ("I think yes", None), ("There is no one", None), ("yesterday", None), ("a dog", None),
])
def test_parse_yes_no(text: str, answer: bool | None) -> None:
    assert parse_yes_no(text) is answer


# ---- loading -------------------------------------------------------------------------
def test_round_trip_through_setup(model: VLMModel, ckpt: tuple[str, Path]) -> None:
    family, _ = ckpt
    expected = {"idefics3": ("Idefics3ForConditionalGeneration", "Idefics3Processor"),
                "qwen2vl": ("Qwen2VLForConditionalGeneration", "Qwen2VLProcessor")}[family]
    assert (type(model.hf_model).__name__, type(model.processor).__name__) == expected
    assert model.input_size() == (SIZE[family], SIZE[family])
    assert model.processor.tokenizer.padding_side == "left"
    assert model.hf_model.dtype == torch.float32 and next(model.hf_model.parameters()).device.type == "cpu"
    if model.shared_vision:  # transformers >= 5.18
        feats = model.image_features(px(model, 2))
        assert feats["features"] is not None and len(feats["features"]) == 2  # one set of image tokens a frame
        assert feats["features"][0].shape[-1] == model.hf_model.get_input_embeddings().embedding_dim


def test_torch_preprocessing_matches_the_image_processor(model: VLMModel) -> None:
    """Frames already at input_size: batched torch preprocessing gives the image processor's own tensors."""
    pixels = px(model, 3, seed=7)
    mine = model.pixel_inputs(pixels)
    ref = model.processor.image_processor(images=[[im] for im in pixels], return_tensors="pt",
                                          **model._image_kwargs)
    torch.testing.assert_close(mine["pixel_values"], ref["pixel_values"].float(), atol=1e-5, rtol=1e-5)
    if "image_grid_thw" in ref:
        torch.testing.assert_close(mine["image_grid_thw"], ref["image_grid_thw"])


def test_threads_option_sets_torch_threads(ckpt: tuple[str, Path]) -> None:
    before = torch.get_num_threads()
    try:
        load(ckpt, threads=1, tasks=["caption"])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_idefics3_size_is_fixed_by_the_checkpoint(tiny_dirs: dict[str, Path],
                                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tiny_dir(tiny_dirs, "idefics3", tmp_path_factory)
    with pytest.raises(ValueError, match=f"takes {TINY_IDEFICS3_SIZE}x{TINY_IDEFICS3_SIZE}"):
        VLMModel(model_id="tiny", path=str(path), device="cpu", image_size=64).setup()


# ---- outputs -------------------------------------------------------------------------
def test_output_shapes_and_types(model: VLMModel, ckpt: tuple[str, Path]) -> None:
    out = model(batch(px(model, 3)))
    assert isinstance(out, ModelOutput) and out.n_frames == 3
    assert out.models == {"caption": f"tiny/{ckpt[0]}", "query": f"tiny/{ckpt[0]}"}
    assert isinstance(out.captions, Captions) and out.captions.kind == "model"
    assert len(out.captions.text) == 3 and all(isinstance(t, str) for t in out.captions.text)
    assert not any("<image>" in t or "<|im_end|>" in t or "<|image_pad|>" in t for t in out.captions.text)
    q = out.queries
    assert isinstance(q, QueryAnswers) and q.queries == QUERIES and q.boxes is None
    assert q.matched.shape == (3, 3) and q.matched.dtype == bool
    assert q.score.shape == (3, 3) and q.score.dtype == np.float32
    assert np.isfinite(q.score).all() and ((q.score >= 0) & (q.score <= 1)).all()
    assert out.detections is None


def test_batch_equals_frames_one_by_one(model: VLMModel) -> None:
    pixels = px(model, 3, seed=1)
    whole = model(batch(pixels))
    assert whole.captions is not None and whole.queries is not None
    assert len(set(whole.captions.text)) > 1  # the tiny model's outputs depend on the frame
    for i in range(3):
        one = model(batch(pixels[i:i + 1]))
        assert one.captions is not None and one.queries is not None
        assert one.captions.text == [whole.captions.text[i]]
        np.testing.assert_array_equal(one.queries.matched[:, 0], whole.queries.matched[:, i])
        np.testing.assert_allclose(one.queries.score[:, 0], whole.queries.score[:, i], atol=1e-5)


def test_answer_does_not_depend_on_other_queries(model: VLMModel) -> None:
    """Prompts of different lengths are left-padded together; the padding must not leak into answers."""
    pixels = px(model, 2, seed=2)
    feats = model.image_features(pixels)
    prompts = [model.query_template.format(query=q) for q in QUERIES]
    together, scores = model.generate(feats, prompts, 6, frame_size=pixels.shape[1:3], score=True)
    for qi, prompt in enumerate(prompts):
        alone, alone_scores = model.generate(feats, [prompt], 6, frame_size=pixels.shape[1:3], score=True)
        assert alone[0] == together[qi]
        np.testing.assert_allclose(alone_scores[0], scores[qi], atol=1e-5)


def test_prompts_are_left_padded(model: VLMModel) -> None:
    prompts = [model.query_template.format(query=q) for q in QUERIES]
    enc = model.encode_prompts(prompts, model.input_size())
    mask = enc["attention_mask"]
    assert mask.shape[0] == len(QUERIES)
    assert bool(mask[:, -1].all())  # every prompt ends at the right edge, where generation continues
    assert not bool(mask[:, 0].all())  # the shorter prompts are padded on the left
    pad = model.processor.tokenizer.pad_token_id
    assert bool((enc["input_ids"][mask == 0] == pad).all())


def test_same_answers_as_the_processor_and_generate_path(model: VLMModel) -> None:
    """Shared image features + batched rows decode what transformers' processor + generate decode per row."""
    pixels = px(model, 2, seed=3)
    out = model(batch(pixels))
    assert out.captions is not None
    proc, hf = model.processor, model.hf_model
    for i in range(2):
        chat = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": model.caption_prompt}]}]
        text = proc.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        inputs = proc(text=[text], images=[[pixels[i]]], return_tensors="pt", **model._image_kwargs)
        with torch.inference_mode():
            ids = hf.generate(**inputs, max_new_tokens=6, do_sample=False)
        ref = proc.tokenizer.decode(ids[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        assert out.captions.text[i] == " ".join(ref.split())


def test_vision_tower_runs_once_per_batch(ckpt: tuple[str, Path]) -> None:
    m = load(ckpt, max_rows=2)  # 1 caption + 3 queries on 3 frames: 12 rows, 6 generate calls
    if not m.shared_vision:
        pytest.skip("transformers < 5.18 takes no precomputed image features")
    base = m.hf_model.model
    tower = getattr(base, "vision_model", None) or base.visual
    calls: list[int] = []
    handle = tower.register_forward_hook(lambda mod, args, out: calls.append(1))
    try:
        shared = m(batch(px(m, 3, seed=4)))
        assert calls == [1]
        m._shared_vision = False  # what transformers < 5.18 gets: each row brings its frame's pixels
        per_row = m(batch(px(m, 3, seed=4)))
    finally:
        handle.remove()
    assert len(calls) > 1
    assert shared.captions is not None and per_row.captions is not None
    assert shared.captions.text == per_row.captions.text
    assert shared.queries is not None and per_row.queries is not None
    np.testing.assert_allclose(shared.queries.score, per_row.queries.score, atol=1e-5)


def test_max_new_tokens_respected(ckpt: tuple[str, Path]) -> None:
    m = load(ckpt, max_new_tokens={"caption": 3, "query": 2}, max_rows=64)
    steps: list[int] = []
    handle = m.hf_model.lm_head.register_forward_hook(lambda mod, args, out: steps.append(1))
    try:
        m.set_queries([])
        m(batch(px(m, 2)))
        caption_steps, steps[:] = len(steps), []
        m.set_queries(QUERIES)
        m.tasks = ("query",)
        m(batch(px(m, 2)))
    finally:
        handle.remove()
    assert 1 <= caption_steps <= 3  # one forward a generated token, one generate call
    assert 1 <= len(steps) <= 2


def test_set_queries_changes_prompts(model: VLMModel) -> None:
    b = batch(px(model, 2, seed=5))
    try:
        model.set_queries(["a red car", "dog"])
        two = model(b).queries
        model.set_queries(["dog"])
        one = model(b).queries
    finally:
        model.set_queries(QUERIES)
    assert two is not None and one is not None
    assert two.queries == ["a red car", "dog"] and two.matched.shape == (2, 2)
    assert one.queries == ["dog"] and one.matched.shape == (1, 2)
    np.testing.assert_allclose(one.score[0], two.score[1], atol=1e-5)
    assert not np.allclose(two.score[0], two.score[1])  # the question reaches the model


def test_query_template_option(ckpt: tuple[str, Path]) -> None:
    m = load(ckpt, query_template="Question: {query}? Reply yes or no.", queries=["dog"], tasks=["query"])
    ids = m.encode_prompts(["Question: dog? Reply yes or no."], m.input_size())["input_ids"][0]
    assert "Question: dog? Reply yes or no." in m.processor.tokenizer.decode(ids)
    out = m(batch(px(m, 2)))
    assert out.captions is None and out.queries is not None and out.queries.matched.shape == (1, 2)


def test_score_is_nan_without_single_yes_no_tokens(ckpt: tuple[str, Path]) -> None:
    m = load(ckpt, tasks=["query"])
    m._yes = []  # as for a tokenizer that splits "yes" into pieces
    out = m(batch(px(m, 2)))
    assert out.queries is not None and np.isnan(out.queries.score).all()
    assert out.queries.matched.dtype == bool


def test_empty_batch_and_no_queries(ckpt: tuple[str, Path]) -> None:
    m = load(ckpt, queries=[])
    side = m.input_size()[0]
    out = m(FrameBatch.empty(side, side))
    assert out.n_frames == 0 and out.captions is not None and out.captions.text == []
    assert out.queries is not None and out.queries.matched.shape == (0, 0)
    out = m(batch(px(m, 2)))
    assert out.queries is not None and out.queries.matched.shape == (0, 2) and out.queries.score.shape == (0, 2)


def test_frames_of_another_size(model: VLMModel) -> None:
    pixels = frames(2, 40, w=72, seed=6)  # not what input_size asked for: the processor resizes
    out = model(batch(pixels))
    assert out.captions is not None and len(out.captions.text) == 2
    assert out.queries is not None and out.queries.score.shape == (len(QUERIES), 2)


# ---- GPU -----------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_runs_bfloat16(ckpt: tuple[str, Path]) -> None:
    m = load(ckpt, device="cuda")
    assert m.hf_model.dtype == torch.bfloat16 and next(m.hf_model.parameters()).device.type == "cuda"
    if m.shared_vision:
        assert m.image_features(px(m, 2))["features"][0].dtype == torch.bfloat16
    out = m(batch(px(m, 3)))
    assert out.captions is not None and len(out.captions.text) == 3
    assert out.queries is not None and out.queries.score.shape == (len(QUERIES), 3)
    assert np.isfinite(out.queries.score).all()
    m.teardown()


# ---- free-form questions (task ask) -------------------------------------------------------
QUESTIONS = ["how many people are waiting?", "what is the weather?"]


def test_question_template_is_checked() -> None:
    with pytest.raises(ValueError, match=r"\{question\}"):
        VLMModel(model_id="x", question_template="Answer briefly.")
    assert VLMModel(model_id="x", tasks=["ask"], questions=QUESTIONS).questions == QUESTIONS


def test_ask_answers_every_question_on_every_frame(ckpt: tuple[str, Path]) -> None:
    m = load(ckpt, tasks=["ask"], questions=QUESTIONS)
    pixels = px(m, 3, seed=11)
    whole = m(batch(pixels))
    assert whole.answers is not None and whole.answers.questions == QUESTIONS
    assert [len(r) for r in whole.answers.text] == [3, 3] and whole.models == {"ask": f"tiny/{ckpt[0]}"}
    assert whole.captions is None and whole.queries is None
    for i in range(3):
        one = m(batch(pixels[i:i + 1]))
        assert [r[0] for r in one.answers.text] == [r[i] for r in whole.answers.text]  # type: ignore[union-attr]
    m.set_questions(["is it sunny?"])
    assert m(batch(pixels[:1])).answers.questions == ["is it sunny?"]  # type: ignore[union-attr]
