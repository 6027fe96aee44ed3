"""Image-text embedding models (SigLIP, SigLIP 2, CLIP): frame embeddings and zero-shot standing queries.

Each batch runs the vision tower once and every frame becomes an L2-normalised image
embedding. Standing queries are embedded once (cached by text) and scored against every
frame in one matrix product. SigLIP was trained with a sigmoid loss, so
``sigmoid(scale * cos + bias)`` is already a probability. CLIP was trained with a softmax
over candidate texts, so a query's score is the two-way softmax of the query against a
background prompt, ``sigmoid(scale * (cos(query) - cos(background)))``: 0.5 means "fits the
frame as well as a generic photo caption does".
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from operators.frames import FrameBatch
from operators.models.base import VisionModel
from operators.models.device import frames_to_device, select_device
from operators.models.weights import resolve_weights
from operators.results import Embeddings, ModelOutput, QueryAnswers

__all__ = ["DEFAULT_THRESHOLDS", "EmbeddingModel", "calibrate"]

log = logging.getLogger(__name__)

DTYPES = ("auto", "float32", "bfloat16", "float16")
# model_type -> how a query becomes a probability (see the module docstring)
KINDS = {"siglip": "sigmoid", "siglip2": "sigmoid", "clip": "background"}
# SigLIP gives even fitting captions modest probabilities (0.32 for "a photo of 2 cats" in the model
# card's example) and unrelated texts far less, so 0.1; CLIP's background score is a 50/50 softmax at 0.5.
DEFAULT_THRESHOLDS = {"siglip": 0.1, "siglip2": 0.1, "clip": 0.5}
DEFAULT_BACKGROUND = "a photo"
OPTIONS = ("threads", "thresholds", "default_threshold", "prompt_template", "background_prompt",
           "attn_implementation")
_SUPPORTED = ("SigLIP (e.g. google/siglip-base-patch16-224, google/siglip2-base-patch16-224), SigLIP 2 NaFlex "
              "(google/siglip2-base-patch16-naflex) and CLIP (openai/clip-vit-base-patch32)")


def calibrate(positive: Sequence[float] | np.ndarray, negative: Sequence[float] | np.ndarray) -> float:
    """The threshold that best separates scores of frames that should match from those that should not.

    Picks the cut with the highest F1 (``matched = score >= threshold``) and returns the
    midpoint between it and the next lower score, so the margin is split evenly.

    >>> calibrate([0.9, 0.7, 0.6], [0.1, 0.3, 0.2])
    0.45
    """
    pos = np.asarray(positive, np.float64).ravel()
    neg = np.asarray(negative, np.float64).ravel()
    if not len(pos) or not np.isfinite(pos).all() or not np.isfinite(neg).all():
        raise ValueError("calibrate needs at least one positive score and only finite scores")
    cuts = np.unique(np.concatenate([pos, neg]))  # ascending; each is a candidate threshold
    tp = (pos[None, :] >= cuts[:, None]).sum(1)
    fp = (neg[None, :] >= cuts[:, None]).sum(1)
    f1 = 2 * tp / (2 * tp + fp + (len(pos) - tp))
    best = int(np.argmax(f1[::-1]))  # the highest cut among equals: fewest false matches
    i = len(cuts) - 1 - best
    return float(cuts[i] if i == 0 else round((cuts[i] + cuts[i - 1]) / 2, 12))


def _field(size: Any, key: str) -> Any:
    """A key of an image processor's size (a dict or a SizeDict), None when absent."""
    return size.get(key) if isinstance(size, dict) else getattr(size, key, None)


def _mode(resample: Any) -> str:
    """torch interpolation mode of an image processor's resample (a PIL code, enum or InterpolationMode)."""
    name = str(getattr(resample, "name", resample)).lower()
    return "bilinear" if name in ("2", "bilinear") else "bicubic"


class EmbeddingModel(VisionModel):
    """A dual-encoder image-text model loaded with ``AutoModel`` (SigLIP, SigLIP 2, CLIP).

    Tasks: ``embed`` (one unit-norm float32 vector a frame) and ``query`` (every standing
    query scored on every frame; ``matched = score >= threshold``). Options: ``threads``
    (CPU torch threads), ``thresholds`` ({query text: threshold}), ``default_threshold``
    (SigLIP 0.1, CLIP 0.5), ``prompt_template`` (e.g. ``"a photo of {}"``; default the query as
    written), ``background_prompt`` (CLIP only, default ``"a photo"``), ``attn_implementation``
    (default sdpa). Use :func:`calibrate` on scores of example frames to pick a threshold.
    """

    family: ClassVar[str] = "embedding"
    default_id: ClassVar[str] = "google/siglip-base-patch16-224"
    supported_tasks: ClassVar[tuple[str, ...]] = ("query", "embed")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        bad = sorted(set(self.options) - set(OPTIONS))
        if bad:
            raise ValueError(f"unknown embedding option(s) {bad}; known options: {list(OPTIONS)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"embedding dtype {self.dtype!r}; use one of {list(DTYPES)}")
        thresholds = self.options.get("thresholds") or {}
        if not isinstance(thresholds, dict):
            raise ValueError(f"embedding option thresholds must map query text to a threshold, got {thresholds!r}")
        self.thresholds = {str(q): self._check_threshold(f"thresholds[{q!r}]", t) for q, t in thresholds.items()}
        dt = self.options.get("default_threshold")
        self._default_threshold = None if dt is None else self._check_threshold("default_threshold", dt)
        self.prompt_template = str(self.options.get("prompt_template") or "{}")
        try:
            ok = ("{}" in self.prompt_template or "{query}" in self.prompt_template) and bool(self.prompt("x"))
        except (KeyError, IndexError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"embedding option prompt_template={self.prompt_template!r} must contain {{}} (the "
                             "query) and no other {...} field, e.g. 'a photo of {}'")
        self.background_prompt = str(self.options.get("background_prompt") or DEFAULT_BACKGROUND)
        self._model: Any = None
        self._kind = ""
        self._size = (224, 224)
        self._text_cache: dict[str, Any] = {}  # prompt -> unit float32 vector on the device
        self._qkey: tuple[str, ...] | None = None
        self._qmat: Any = None  # [Q (+1 background row for CLIP), D] for the current queries

    @staticmethod
    def _check_threshold(name: str, value: Any) -> float:
        try:
            t = float(value)
        except (TypeError, ValueError):
            t = math.nan
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"embedding option {name}={value!r}: scores are probabilities, give a number in [0, 1]")
        return t

    def prompt(self, query: str) -> str:
        """The text embedded for ``query``: the prompt template filled in."""
        return self.prompt_template.format(query, query=query)

    @property
    def model_type(self) -> str:
        """``siglip``, ``siglip2`` or ``clip`` (known after setup)."""
        return self._kind

    @property
    def default_threshold(self) -> float:
        """The threshold of a query with none of its own: the option, else the family's default."""
        if self._default_threshold is not None:
            return self._default_threshold
        return DEFAULT_THRESHOLDS.get(self._kind, 0.5)

    def threshold(self, query: str) -> float:
        return self.thresholds.get(query, self.default_threshold)

    # ---- lifecycle ---------------------------------------------------------------------
    def setup(self) -> None:
        from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoTokenizer

        local = resolve_weights(self.model_id, self.path)
        device, dtype = select_device("embedding", self.device, self.dtype, self.options.get("threads"))
        kind = getattr(AutoConfig.from_pretrained(local), "model_type", "")
        if kind not in KINDS:
            raise OSError(f"{local} holds a {kind or 'unknown'!r} model; the embedding family runs {_SUPPORTED}")
        try:
            tok = AutoTokenizer.from_pretrained(local)
            ip = AutoImageProcessor.from_pretrained(local)
        except Exception as exc:  # noqa: BLE001 - any failure here means "cannot read this tokenizer/processor"
            hint = " (SigLIP's sentencepiece tokenizer needs `pip install sentencepiece`)" if kind == "siglip" else ""
            raise OSError(f"cannot load the tokenizer or image processor in {local}: "
                          f"{type(exc).__name__}: {exc}{hint}") from exc
        loaded: Any = AutoModel.from_pretrained(
            local, dtype=dtype, attn_implementation=self.options.get("attn_implementation", "sdpa"),
            output_loading_info=True)
        model, info = loaded
        bad = sorted(set(info.get("missing_keys", ())) | {str(k) for k in info.get("mismatched_keys", ())})
        if bad:  # transformers fills these with random weights and only logs it; refuse instead
            raise OSError(f"the checkpoint in {local} does not fit {type(model).__name__}: {len(bad)} weights "
                          f"missing or mis-shaped (e.g. {', '.join(bad[:3])})")
        self._model = model.to(device).eval()
        self._tok, self._ip, self._kind = tok, ip, kind
        self._device, self._dtype = device, dtype
        cfg = model.config
        self._dim = int(getattr(cfg, "projection_dim", None) or cfg.vision_config.hidden_size)
        self._scale = float(model.logit_scale.detach().float().exp().item())
        bias = getattr(model, "logit_bias", None)
        self._bias = 0.0 if bias is None else float(bias.detach().float().item())
        self._max_text = int(cfg.text_config.max_position_embeddings)
        self._configure_images(ip)
        self._text_cache.clear()
        self._qkey = None
        if self.queries and "query" in self.tasks:
            self._query_matrix()

    def _configure_images(self, ip: Any) -> None:
        """Decode size, resampling and normalisation read from the checkpoint's image processor."""
        import torch

        if self._kind == "siglip2":  # NaFlex: the largest square grid of patches that fits max_num_patches
            self._patch = int(ip.patch_size)
            self._max_patches = int(ip.max_num_patches)
            side = math.isqrt(self._max_patches) * self._patch
            h = w = side
        else:
            size = ip.crop_size if getattr(ip, "do_center_crop", False) else ip.size
            h, w = _field(size, "height"), _field(size, "width")
            if not (h and w):
                h = w = _field(size, "shortest_edge") or 224
        self._size = (int(h), int(w))
        self._resample = _mode(getattr(ip, "resample", None))
        norm = getattr(ip, "do_normalize", True)
        self._rescale = float(ip.rescale_factor) if getattr(ip, "do_rescale", True) else 1.0
        self._mean = torch.tensor(ip.image_mean if norm else [0.0] * 3, dtype=torch.float32,
                                  device=self._device).view(1, 3, 1, 1)
        self._std = torch.tensor(ip.image_std if norm else [1.0] * 3, dtype=torch.float32,
                                 device=self._device).view(1, 3, 1, 1)

    def teardown(self) -> None:
        import torch

        self._model = None
        self._text_cache.clear()
        self._qkey, self._qmat = None, None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    @property
    def hf_model(self) -> Any:
        """The loaded ``SiglipModel`` / ``Siglip2Model`` / ``CLIPModel`` (None before ``setup()``)."""
        return self._model

    @property
    def tokenizer(self) -> Any:
        return self._tok

    def input_size(self) -> tuple[int, int]:
        """(height, width) the image processor resizes to (CLIP: its crop size; known after setup)."""
        return self._size

    def set_queries(self, queries: Sequence[str]) -> None:
        """Replace the standing queries; their text embeddings are computed now (new texts only)."""
        super().set_queries(queries)
        if self._model is not None and "query" in self.tasks:
            self._query_matrix()

    # ---- per batch ---------------------------------------------------------------------
    def __call__(self, batch: FrameBatch) -> ModelOutput:
        import torch

        if self._model is None:
            raise RuntimeError("EmbeddingModel.setup() must run before the model is called")
        n = len(batch)
        out = ModelOutput(n_frames=n, models=dict.fromkeys(self.tasks, self.model_id or str(self.path)))
        with torch.inference_mode():
            img = self.image_embeddings(batch.pixels)
            if "embed" in self.tasks:
                out.embeddings = Embeddings(img.cpu().numpy())
            if "query" in self.tasks:
                out.queries = self._answer(img)
        return out

    def pixel_inputs(self, pixels: np.ndarray) -> dict[str, Any]:
        """The image processor's work on uint8 ``[N, H, W, 3]`` frames, batched in torch on the device.

        uint8 frames cross to the GPU (pinned, 4x smaller than float), are resized there only if
        the decoder did not already, then rescaled and normalised; SigLIP 2 cuts them into patches.
        """
        import torch
        import torch.nn.functional as F

        x = frames_to_device(pixels, self._device)
        if tuple(x.shape[-2:]) != self._size:
            x = F.interpolate(x, size=self._size, mode=self._resample, align_corners=False, antialias=True)
            x = x.clamp_(0, 255)
        x = (x * self._rescale - self._mean) / self._std
        if self._kind != "siglip2":
            return {"pixel_values": x.to(self._dtype)}
        n, p = x.shape[0], self._patch
        gh, gw = self._size[0] // p, self._size[1] // p
        # as Siglip2ImageProcessor: patches row by row, each flattened as (patch row, patch column, channel)
        patches = x.reshape(n, 3, gh, p, gw, p).permute(0, 2, 4, 3, 5, 1).reshape(n, gh * gw, p * p * 3)
        pad = self._max_patches - gh * gw
        mask = torch.ones(n, self._max_patches, dtype=torch.int32, device=self._device)
        if pad:
            patches = F.pad(patches, (0, 0, 0, pad))
            mask[:, gh * gw:] = 0
        shapes = torch.tensor([[gh, gw]] * n, dtype=torch.long, device=self._device)
        return {"pixel_values": patches.to(self._dtype), "pixel_attention_mask": mask, "spatial_shapes": shapes}

    def image_embeddings(self, pixels: np.ndarray) -> Any:
        """Unit-norm float32 image embeddings ``[N, D]`` (a torch tensor on the device): one vision pass."""
        import torch

        if len(pixels) == 0:
            return torch.zeros(0, self._dim, dtype=torch.float32, device=self._device)
        feats = self._model.get_image_features(**self.pixel_inputs(pixels))
        feats = getattr(feats, "pooler_output", feats)
        return torch.nn.functional.normalize(feats.float(), dim=-1)

    def text_embeddings(self, texts: Sequence[str]) -> Any:
        """Unit-norm float32 embeddings ``[T, D]`` of ``texts`` as given (no template), cached by text."""
        import torch

        todo = list(dict.fromkeys(t for t in texts if t not in self._text_cache))
        if todo:
            if len(self._text_cache) + len(todo) > 4096:  # queries change now and then; keep memory bounded
                self._text_cache.clear()
                todo = list(dict.fromkeys(texts))
            if self._kind == "clip":  # causal text tower pooled at the end token: padding to the longest is exact
                enc = self._tok(todo, padding=True, truncation=True, max_length=self._max_text, return_tensors="pt")
                keys: tuple[str, ...] = ("input_ids", "attention_mask")
            else:  # SigLIP pools the last position, so texts are padded to max length as in training
                enc = self._tok(todo, padding="max_length", truncation=True, max_length=self._max_text,
                                return_tensors="pt")
                keys = ("input_ids",) if self._kind == "siglip" else ("input_ids", "attention_mask")
            with torch.inference_mode():
                feats = self._model.get_text_features(**{k: enc[k].to(self._device) for k in keys if k in enc})
                feats = torch.nn.functional.normalize(getattr(feats, "pooler_output", feats).float(), dim=-1)
            self._text_cache.update(zip(todo, feats, strict=True))
        if not texts:
            return torch.zeros(0, self._dim, dtype=torch.float32, device=self._device)
        return torch.stack([self._text_cache[t] for t in texts])

    def _query_matrix(self) -> Any:
        """Text embeddings of the standing queries (and CLIP's background prompt last), recomputed on change."""
        key = tuple(self.queries)
        if key != self._qkey:
            texts = [self.prompt(q) for q in key]
            if KINDS[self._kind] == "background":
                texts.append(self.background_prompt)
            self._qmat, self._qkey = self.text_embeddings(texts), key
        return self._qmat

    def scores(self, image: Any) -> Any:
        """Scores ``[Q, N]`` (float32 tensor) of the standing queries on unit image embeddings ``[N, D]``."""
        import torch

        cos = self._query_matrix() @ image.T  # every query against every frame: one matrix product
        if KINDS[self._kind] == "background":
            return torch.sigmoid(self._scale * (cos[:-1] - cos[-1:]))
        return torch.sigmoid(self._scale * cos + self._bias)

    def _answer(self, image: Any) -> QueryAnswers:
        qs = list(self.queries)
        score = self.scores(image).cpu().numpy().astype(np.float32, copy=False).reshape(len(qs), len(image))
        thr = np.array([self.threshold(q) for q in qs], np.float32).reshape(len(qs), 1)
        return QueryAnswers(qs, score >= thr, score, None)
