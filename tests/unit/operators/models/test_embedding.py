"""Embedding family (SigLIP, SigLIP 2, CLIP) on tiny random-weight checkpoints: plumbing, batching, scores.

Each checkpoint is built once per session and loaded through ``setup()`` like a real one.
Random weights say nothing meaningful, so no test asserts which query matches which frame:
scores are checked against the transformers model's own forward pass and against a plain
per-query, per-frame computation.
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
from operators.models.embedding import DEFAULT_THRESHOLDS, EmbeddingModel, calibrate  # noqa: E402
from operators.models.registry import get  # noqa: E402
from operators.models.weights import ModelNotFoundError  # noqa: E402
from operators.results import Embeddings, ModelOutput  # noqa: E402
from tests.support.tiny_embedding import (  # noqa: E402
    TINY_EMBEDDING_SIZE,
    build_tiny_clip,
    build_tiny_siglip,
    build_tiny_siglip2,
)

S = TINY_EMBEDDING_SIZE
QUERIES = ["a person riding a bicycle", "a red car", "dog"]
BUILDERS = {"siglip": build_tiny_siglip, "siglip2": build_tiny_siglip2, "clip": build_tiny_clip}
DIMS = {"siglip": 32, "siglip2": 32, "clip": 16}  # CLIP's projection is narrower than its towers


@pytest.fixture(scope="session")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-embedding")
    return {name: build(root / name) for name, build in BUILDERS.items()}


def load(path: Path, **kwargs) -> EmbeddingModel:  # type: ignore[no-untyped-def]
    kwargs = {"model_id": f"tiny/{path.name}", "path": str(path), "device": "cpu", "queries": QUERIES,
              "tasks": ["query", "embed"], **kwargs}
    model = EmbeddingModel(**kwargs)
    model.setup()
    return model


@pytest.fixture(scope="module", params=list(BUILDERS))
def model(request: pytest.FixtureRequest, ckpts: dict[str, Path]) -> Iterator[EmbeddingModel]:
    m = load(ckpts[request.param])
    yield m
    m.teardown()


def frames(n: int, h: int = S, w: int = S, seed: int = 0) -> np.ndarray:
    """Distinct synthetic frames: coarse random colour blocks over a gradient, uint8 RGB."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (n, 4, 4, 3)).astype(np.float32)
    up = blocks.repeat(math.ceil(h / 4), axis=1).repeat(math.ceil(w / 4), axis=2)[:, :h, :w]
    ramp = np.linspace(0, 64, w, dtype=np.float32)[None, None, :, None]
    return np.clip(up * 0.75 + ramp, 0, 255).astype(np.uint8)


def batch(pixels: np.ndarray) -> FrameBatch:
    n = len(pixels)
    return FrameBatch(pixels=pixels, source_id=np.array(["cam"] * n), frame_index=np.arange(n),
                      pts=np.arange(n, dtype=np.float64) * 0.5, wall_time=np.full(n, 1000.0),
                      orig_width=np.full(n, 640), orig_height=np.full(n, 480))


def processor_inputs(m: EmbeddingModel, pixels: np.ndarray) -> dict[str, torch.Tensor]:
    """What the checkpoint's own image processor makes of the frames (the reference for pixel_inputs)."""
    from transformers import AutoImageProcessor

    enc = AutoImageProcessor.from_pretrained(m.path)(images=list(pixels), return_tensors="pt")
    return {k: enc[k] for k in ("pixel_values", "pixel_attention_mask", "spatial_shapes") if k in enc}


def text_inputs(m: EmbeddingModel, texts: list[str]) -> dict[str, torch.Tensor]:
    """Tokenized as the family's reference code does (SigLIP: padded to max length, no attention mask)."""
    max_len = m.hf_model.config.text_config.max_position_embeddings
    if m.model_type == "clip":
        return dict(m.tokenizer(texts, padding=True, return_tensors="pt"))
    enc = m.tokenizer(texts, padding="max_length", max_length=max_len, return_tensors="pt")
    return {"input_ids": enc["input_ids"]} if m.model_type == "siglip" else dict(enc)


# ---- loading -------------------------------------------------------------------------
def test_registry_names_the_class() -> None:
    assert get("embedding") is EmbeddingModel
    assert EmbeddingModel.supported_tasks == ("query", "embed")


def test_round_trip_through_setup(model: EmbeddingModel) -> None:
    from transformers import CLIPModel, Siglip2Model, SiglipModel

    cls = {"siglip": SiglipModel, "siglip2": Siglip2Model, "clip": CLIPModel}[model.model_type]
    assert isinstance(model.hf_model, cls)
    assert model.input_size() == (S, S)  # read from the saved image processor
    assert model.hf_model.dtype == torch.float32 and next(model.hf_model.parameters()).device.type == "cpu"
    assert model.default_threshold == DEFAULT_THRESHOLDS[model.model_type]


def test_pixel_inputs_match_the_image_processor(model: EmbeddingModel) -> None:
    """Frames at the model's size: the batched torch path equals the processor's (rescale, normalise, patches)."""
    px = frames(3)
    ours = model.pixel_inputs(px)
    ref = processor_inputs(model, px)
    assert set(ours) == set(ref)
    for key, want in ref.items():
        got = ours[key]
        assert tuple(got.shape) == tuple(want.shape), key
        assert torch.allclose(got.float(), want.float(), atol=1e-5), key


def test_embeddings_shape_dtype_and_unit_norm(model: EmbeddingModel) -> None:
    out = model(batch(frames(4)))
    assert isinstance(out, ModelOutput) and out.n_frames == 4
    emb = out.embeddings
    assert isinstance(emb, Embeddings) and emb.normalized
    assert emb.vectors.dtype == np.float32 and emb.vectors.shape == (4, DIMS[model.model_type])
    np.testing.assert_allclose(np.linalg.norm(emb.vectors, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(emb.vectors[0], emb.vectors[1], atol=1e-3)  # frames are told apart
    assert out.models == {"query": model.model_id, "embed": model.model_id}


def test_embeddings_equal_the_transformers_model(model: EmbeddingModel) -> None:
    px = frames(3)
    with torch.inference_mode():
        ref = model.hf_model.get_image_features(**processor_inputs(model, px)).pooler_output
    ref = torch.nn.functional.normalize(ref, dim=-1).numpy()
    np.testing.assert_allclose(model(batch(px)).embeddings.vectors, ref, atol=1e-5)


def test_batched_equals_frame_by_frame(model: EmbeddingModel) -> None:
    px = frames(5, seed=3)
    whole = model(batch(px))
    for i in range(len(px)):
        one = model(batch(px[i:i + 1]))
        np.testing.assert_allclose(one.embeddings.vectors[0], whole.embeddings.vectors[i], atol=1e-5)
        np.testing.assert_allclose(one.queries.score[:, 0], whole.queries.score[:, i], atol=1e-5)


def test_frames_of_another_size_are_resized_on_the_device(model: EmbeddingModel) -> None:
    out = model(batch(frames(2, h=48, w=80)))
    assert out.embeddings.vectors.shape == (2, DIMS[model.model_type])
    assert out.queries.score.shape == (len(QUERIES), 2)


def test_query_scores_equal_the_transformers_forward(model: EmbeddingModel) -> None:
    """SigLIP: sigmoid of the model's own logits; CLIP: the 2-way softmax of query vs background logits."""
    px = frames(3, seed=5)
    texts = list(QUERIES) + ([model.background_prompt] if model.model_type == "clip" else [])
    with torch.inference_mode():
        logits = model.hf_model(**text_inputs(model, texts), **processor_inputs(model, px)).logits_per_text
    if model.model_type == "clip":
        want = torch.sigmoid(logits[:-1] - logits[-1:]).numpy()
    else:
        want = torch.sigmoid(logits).numpy()
    q = model(batch(px)).queries
    assert q.queries == QUERIES and q.boxes is None
    assert q.score.dtype == np.float32 and q.score.shape == (len(QUERIES), 3)
    np.testing.assert_allclose(q.score, want, atol=1e-5)


def test_query_scores_equal_a_per_query_per_frame_computation(model: EmbeddingModel) -> None:
    out = model(batch(frames(3, seed=7)))
    hf = model.hf_model
    scale = float(hf.logit_scale.detach().exp())
    bias = float(hf.logit_bias.detach()) if model.model_type != "clip" else 0.0

    def text_vec(text: str) -> np.ndarray:
        with torch.inference_mode():
            v = hf.get_text_features(**text_inputs(model, [text])).pooler_output[0]
        return (v / v.norm()).numpy()

    bg = text_vec(model.background_prompt)
    for qi, query in enumerate(QUERIES):
        t = text_vec(query)
        for n, img in enumerate(out.embeddings.vectors):
            cos = float(t @ img)
            if model.model_type == "clip":
                want = 1 / (1 + math.exp(-scale * (cos - float(bg @ img))))
            else:
                want = 1 / (1 + math.exp(-(scale * cos + bias)))
            assert out.queries.score[qi, n] == pytest.approx(want, abs=1e-5)


# ---- thresholds, templates, changing queries --------------------------------------------
def test_thresholds_per_query(ckpts: dict[str, Path]) -> None:
    px = frames(6, seed=11)
    probe = load(ckpts["siglip"])
    mid = float(np.median(probe(batch(px)).queries.score[1]))
    m = load(ckpts["siglip"], thresholds={"a person riding a bicycle": 0.0, "a red car": mid},
             default_threshold=1.0)
    q = m(batch(px)).queries
    assert q.matched.dtype == np.bool_ and q.matched.shape == (3, 6)
    assert q.matched[0].all()  # threshold 0: every frame
    np.testing.assert_array_equal(q.matched[1], q.score[1] >= mid)
    assert 0 < q.matched[1].sum() < 6
    assert not q.matched[2].any()  # "dog" falls back to default_threshold 1.0
    assert [m.threshold(t) for t in QUERIES] == [0.0, mid, 1.0]


def test_prompt_template_is_applied_to_queries(ckpts: dict[str, Path]) -> None:
    px = frames(3)
    templated = load(ckpts["clip"], prompt_template="a photo of {}", queries=["dog"])
    spelled = load(ckpts["clip"], queries=["a photo of dog"])
    assert templated.prompt("dog") == "a photo of dog"
    np.testing.assert_allclose(templated(batch(px)).queries.score, spelled(batch(px)).queries.score, atol=1e-6)
    assert templated(batch(px)).queries.queries == ["dog"]  # answers name the query as written


def test_set_queries_recomputes_text_embeddings(ckpts: dict[str, Path]) -> None:
    m = load(ckpts["siglip"], queries=["dog"])
    calls: list[int] = []
    original = m.hf_model.get_text_features

    def counting(**kw):  # type: ignore[no-untyped-def]
        calls.append(int(kw["input_ids"].shape[0]))
        return original(**kw)

    m.hf_model.get_text_features = counting
    px = frames(2)
    m(batch(px))
    m(batch(px))
    assert calls == []  # standing queries were embedded in setup, not per batch
    m.set_queries(["dog", "a red car"])
    assert calls == [1]  # only the new text, right away
    out = m(batch(px))
    assert calls == [1] and out.queries.queries == ["dog", "a red car"]
    fresh = load(ckpts["siglip"], queries=["dog", "a red car"])
    np.testing.assert_allclose(out.queries.score, fresh(batch(px)).queries.score, atol=1e-6)
    m.set_queries([])
    empty = m(batch(px)).queries
    assert empty.queries == [] and empty.score.shape == (0, 2) and empty.matched.shape == (0, 2)


def test_tasks_select_outputs(ckpts: dict[str, Path]) -> None:
    px = frames(2)
    only_embed = load(ckpts["clip"], tasks=["embed"])(batch(px))
    assert only_embed.queries is None and only_embed.embeddings is not None
    only_query = load(ckpts["clip"], tasks=["query"])(batch(px))
    assert only_query.embeddings is None and only_query.queries is not None
    assert EmbeddingModel(path="x").tasks == ("query", "embed")  # default: every supported task


def test_empty_batch(ckpts: dict[str, Path]) -> None:
    out = load(ckpts["clip"])(batch(np.zeros((0, S, S, 3), np.uint8)))
    assert out.embeddings.vectors.shape == (0, DIMS["clip"])
    assert out.queries.score.shape == (len(QUERIES), 0)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"tasks": ["caption"]}, "cannot run task"),
    ({"score_threshold": 0.3}, "unknown embedding option"),
    ({"thresholds": {"dog": 1.5}}, r"in \[0, 1\]"),
    ({"default_threshold": "high"}, r"in \[0, 1\]"),
    ({"thresholds": ["dog"]}, "map query text"),
    ({"prompt_template": "a photo of {thing}"}, "must contain"),
    ({"prompt_template": "a photo"}, "must contain"),
    ({"dtype": "int8"}, "dtype"),
])
def test_bad_arguments_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EmbeddingModel(model_id="x", **kwargs)


# ---- calibration -----------------------------------------------------------------------
def test_calibrate_splits_separable_scores_in_the_middle() -> None:
    assert calibrate([0.8, 0.6, 0.9], [0.1, 0.2, 0.4]) == pytest.approx(0.5)
    pos, neg = np.array([0.8, 0.6, 0.9]), np.array([0.1, 0.2, 0.4])
    t = calibrate(pos, neg)
    assert (pos >= t).all() and not (neg >= t).any()


def test_calibrate_maximises_f1_when_scores_overlap() -> None:
    pos = [0.9, 0.8, 0.7, 0.3]
    neg = [0.75, 0.2, 0.1, 0.05]
    t = calibrate(pos, neg)  # cut between 0.3 and 0.2: 4 TP + 1 FP (F1 0.89) beats 0.7: 3 TP + 1 FP (0.75)
    assert t == pytest.approx(0.25)
    assert calibrate([0.4], []) == pytest.approx(0.4)  # no negatives: the lowest positive
    with pytest.raises(ValueError):
        calibrate([], [0.1])
    with pytest.raises(ValueError):
        calibrate([0.5, math.nan], [0.1])


def test_calibrated_threshold_on_model_scores(ckpts: dict[str, Path]) -> None:
    """Picked from the model's scores of example frames, the threshold reproduces the split it was given."""
    m = load(ckpts["siglip"], queries=["dog"])
    score = m(batch(frames(8, seed=13))).queries.score[0]
    order = np.argsort(score)
    pos, neg = score[order[4:]], score[order[:4]]
    m.thresholds["dog"] = calibrate(pos, neg)
    matched = m(batch(frames(8, seed=13))).queries.matched[0]
    assert set(np.flatnonzero(matched)) == set(order[4:].tolist())


# ---- events ----------------------------------------------------------------------------
def test_embedding_events_round_trip(ckpts: dict[str, Path]) -> None:
    from pipeline.events import EmbeddingEvent, Topics, build_frame_events, parse_event, to_record

    m = load(ckpts["clip"], tasks=["embed"])
    fb = batch(frames(2))
    out = m(fb)
    evs = build_frame_events(fb, out, run_id="r", uris={"cam": "cam.mp4"}, now=1001.0)
    assert [type(e) for e in evs] == [EmbeddingEvent, EmbeddingEvent]
    ev = evs[1]
    assert ev.type == "embedding" and ev.dim == DIMS["clip"] and ev.normalized and ev.model == "tiny/clip"
    np.testing.assert_allclose(ev.vector, out.embeddings.vectors[1], atol=1e-6)
    topic, key, value, headers = to_record(ev, Topics())
    assert topic == "framewire.embeddings" and key == b"cam" and "framewire.embeddings" in Topics().all()
    assert dict(headers)["ce_type"] == b"io.framewire.embedding.v1"
    assert parse_event(value) == ev
    assert evs[0].event_id != evs[1].event_id
    with pytest.raises(ValueError, match="dim"):
        EmbeddingEvent(**{**ev.model_dump(), "dim": 3})


def test_no_embedding_events_without_the_embed_task(ckpts: dict[str, Path]) -> None:
    from pipeline.events import build_frame_events

    fb = batch(frames(2))
    evs = build_frame_events(fb, load(ckpts["siglip"], tasks=["query"])(fb), run_id="r", uris={})
    assert {e.type for e in evs} == {"query"} and len(evs) == 2 * len(QUERIES)


def test_overlay_config_loads_and_builds_the_model() -> None:
    from pipeline.spec import CONFIG_DIR, load_spec

    spec = load_spec([CONFIG_DIR / "embedding-gpu.yaml"], environ={})
    assert spec.model.name == "embedding" and spec.model.tasks == ["query", "embed"]
    m = get(spec.model.name)(model_id=spec.model.id, tasks=spec.model.tasks, queries=spec.queries,
                             **spec.model.options)
    assert m.threshold("a person riding a bicycle") == 0.2 and m.threshold("other") == 0.1
    assert m.prompt("a dog") == "a photo of a dog"


# ---- errors and devices ----------------------------------------------------------------
def test_missing_model_names_id_places_and_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    m = EmbeddingModel(model_id="someorg/siglip-missing", path=str(tmp_path / "nowhere"))
    with pytest.raises(ModelNotFoundError) as ei:
        m.setup()
    msg = str(ei.value)
    assert isinstance(ei.value, OSError)
    assert "someorg/siglip-missing" in msg and str(tmp_path / "nowhere") in msg and "Hugging Face cache" in msg
    assert "framewire models fetch" in msg


def test_other_architectures_are_refused(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(OSError, match="'bert' model; the embedding family runs SigLIP"):
        EmbeddingModel(path=str(tmp_path)).setup()


def test_checkpoint_with_missing_weights_is_refused(ckpts: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(ckpts["siglip"], broken)
    weights = load_file(broken / "model.safetensors")
    save_file({k: v for k, v in weights.items() if not k.startswith("vision_model.head")},
              broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(OSError, match="missing or mis-shaped"):
        EmbeddingModel(path=str(broken), device="cpu").setup()


def test_threads_option_sets_torch_threads(ckpts: dict[str, Path]) -> None:
    before = torch.get_num_threads()
    try:
        load(ckpts["clip"], threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("family", list(BUILDERS))
def test_cuda_runs_bfloat16(ckpts: dict[str, Path], family: str) -> None:
    m = load(ckpts[family], device="cuda")
    assert m.hf_model.dtype == torch.bfloat16 and next(m.hf_model.parameters()).device.type == "cuda"
    assert m.pixel_inputs(frames(2))["pixel_values"].dtype == torch.bfloat16
    px = frames(4, h=48, w=80)
    out = m(batch(px))
    assert out.embeddings.vectors.dtype == np.float32 and out.embeddings.vectors.shape == (4, DIMS[family])
    np.testing.assert_allclose(np.linalg.norm(out.embeddings.vectors, axis=1), 1.0, atol=1e-5)
    assert np.isfinite(out.queries.score).all()
    cpu = load(ckpts[family])(batch(px))  # bf16 towers stay close to the float32 reference
    assert (out.embeddings.vectors * cpu.embeddings.vectors).sum(1).min() > 0.98
    m.teardown()
