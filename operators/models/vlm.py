"""Image-text-to-text VLMs (SmolVLM/Idefics3, Qwen2-VL, LLaVA 1.5/NeXT/OneVision): captions, yes/no
standing queries and free-form answers to standing questions.

Each batch runs the vision tower once (``get_image_features``); every (prompt, frame) pair
then generates greedily from its chat-templated prompt with that frame's image features
passed as ``mm_encoder_outputs``, left-padded, up to ``max_rows`` sequences a ``generate``
call. transformers before 5.18 has no ``mm_encoder_outputs``: there each sequence gets its
frame's pixels and the vision tower runs once per (prompt, frame). A query asks
``"{query} Answer yes or no."``; ``parse_yes_no`` reads the answer and the score is
P(yes) / (P(yes) + P(no)) over the first generated token. A question (task ``ask``) asks
``question_template`` (default the question as it is) and its answer is the generated text.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import math
import re
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from operators.frames import FrameBatch
from operators.models.base import VisionModel
from operators.models.device import frames_to_device, select_device
from operators.models.weights import resolve_weights
from operators.results import Answers, Captions, ModelOutput, QueryAnswers

__all__ = ["VLMModel", "parse_yes_no"]

log = logging.getLogger(__name__)

DTYPES = ("auto", "float32", "bfloat16", "float16")
DEFAULT_MAX_NEW_TOKENS = {"caption": 48, "query": 8, "ask": 24}
DEFAULT_CAPTION_PROMPT = "Describe this image in one sentence."
DEFAULT_QUERY_TEMPLATE = "{query} Answer yes or no."
DEFAULT_QUESTION_TEMPLATE = "{question} Answer in a few words."
QWEN_DEFAULT_SIZE = 448  # 32x32 patches of 14 px, merged 2x2 -> 256 image tokens a frame
OPTIONS = ("threads", "caption_prompt", "query_template", "question_template", "max_new_tokens", "max_rows",
           "image_size", "attn_implementation")

_YES = frozenset({"yes", "yeah", "yep", "true"})
_NO = frozenset({"no", "nope", "false"})
_LEAD = frozenset({"answer", "assistant", "final", "the", "is", "my"})  # "Answer: no", "The answer is yes"
_WORD = re.compile(r"[a-z]+")
_YES_FORMS = ("yes", "Yes", "YES", " yes", " Yes", " YES")
_NO_FORMS = ("no", "No", "NO", " no", " No", " NO")
_SUPPORTED = ("SmolVLM/Idefics3 (e.g. HuggingFaceTB/SmolVLM-256M-Instruct), Qwen2-VL (e.g. Qwen/Qwen2-VL-2B-Instruct) "
              "and LLaVA 1.5 / NeXT / OneVision (e.g. llava-hf/llava-1.5-7b-hf, llava-hf/llava-v1.6-mistral-7b-hf, "
              "llava-hf/llava-onevision-qwen2-0.5b-ov-hf)")
_LLAVA_ANYRES = ("llava_next", "llava_onevision")  # tiles chosen by the processor from image_grid_pinpoints


def parse_yes_no(text: str) -> bool | None:
    """True for a yes, False for a no, None when the answer is neither.

    Only the first word counts, after punctuation, markup and lead-ins like ``Answer:``.

    >>> [parse_yes_no(t) for t in ["Yes.", " yes, there is", "No", "Answer: no", "**YES**", "Not sure", ""]]
    [True, True, False, False, True, None, None]
    """
    for word in _WORD.findall(text.lower()):
        if word in _YES:
            return True
        if word in _NO:
            return False
        if word not in _LEAD:
            return None
    return None


def _single_token_ids(tok: Any, forms: Sequence[str]) -> list[int]:
    """Ids of the forms that the tokenizer encodes as exactly one token."""
    ids = {enc[0] for f in forms if len(enc := tok.encode(f, add_special_tokens=False)) == 1}
    return sorted(ids)


class VLMModel(VisionModel):
    """A chat VLM loaded with ``AutoModelForImageTextToText`` + ``AutoProcessor``.

    Options: ``threads`` (CPU torch threads), ``caption_prompt``, ``query_template`` (must
    hold ``{query}``), ``max_new_tokens`` (int, or per task {caption, query}), ``max_rows``
    (sequences per generate call, default 32), ``image_size`` (square side frames are decoded
    to; Qwen2-VL only, default 448: SmolVLM/Idefics3 take their vision tower's fixed size),
    ``attn_implementation`` (default sdpa), ``question_template`` (task ``ask``; must hold ``{question}``).
    LLaVA-NeXT / OneVision frames go through the checkpoint's own (PIL) image processor, tiles and all.
    """

    family: ClassVar[str] = "vlm"
    known_options: ClassVar[tuple[str, ...]] = OPTIONS  # a subclass family adds its own
    default_caption_prompt: ClassVar[str] = DEFAULT_CAPTION_PROMPT
    default_query_template: ClassVar[str] = DEFAULT_QUERY_TEMPLATE
    default_question_template: ClassVar[str] = DEFAULT_QUESTION_TEMPLATE
    default_max_new_tokens: ClassVar[dict[str, int]] = DEFAULT_MAX_NEW_TOKENS
    default_id: ClassVar[str] = "HuggingFaceTB/SmolVLM-256M-Instruct"
    supported_tasks: ClassVar[tuple[str, ...]] = ("caption", "query", "ask")

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("tasks", ("caption", "query"))
        super().__init__(**kwargs)
        bad = sorted(set(self.options) - set(self.known_options))
        if bad:
            raise ValueError(f"unknown {self.family} option(s) {bad}; known options: {list(self.known_options)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"vlm dtype {self.dtype!r}; use one of {list(DTYPES)}")
        self.caption_prompt = str(self.options.get("caption_prompt", self.default_caption_prompt))
        self.query_template = str(self.options.get("query_template", self.default_query_template))
        try:
            ok = "{query}" in self.query_template and bool(self.query_template.format(query="x"))
        except (KeyError, IndexError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"vlm option query_template={self.query_template!r} must contain {{query}} and no "
                             f"other {{...}} field, e.g. {self.default_query_template!r}")
        self.question_template = str(self.options.get("question_template", self.default_question_template))
        try:
            ok = "{question}" in self.question_template and bool(self.question_template.format(question="x"))
        except (KeyError, IndexError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"vlm option question_template={self.question_template!r} must contain {{question}} "
                             f"and no other {{...}} field, e.g. {self.default_question_template!r}")
        mnt = self.options.get("max_new_tokens", {})
        per_task = mnt if isinstance(mnt, dict) else dict.fromkeys(self.default_max_new_tokens, mnt)
        if set(per_task) - set(self.default_max_new_tokens):
            raise ValueError(f"{self.family} option max_new_tokens: keys {sorted(per_task)}; "
                             f"use {list(self.default_max_new_tokens)}")
        self.max_new_tokens = {**self.default_max_new_tokens, **{k: int(v) for k, v in per_task.items()}}
        if min(self.max_new_tokens.values()) < 1:
            raise ValueError(f"vlm option max_new_tokens must be >= 1, got {self.max_new_tokens}")
        self.max_rows = int(self.options.get("max_rows", 32))
        if self.max_rows < 1:
            raise ValueError(f"vlm option max_rows must be >= 1, got {self.max_rows}")
        size = self.options.get("image_size")
        self.image_size = None if size is None else int(size)
        if self.image_size is not None and self.image_size < 28:
            raise ValueError(f"vlm option image_size must be >= 28 pixels, got {self.image_size}")
        self._model: Any = None
        self._processor: Any = None
        self._size = (self.image_size or 512,) * 2
        self._image_kwargs: dict[str, Any] = {}
        self._shared_vision = False
        self._prompts: dict[tuple[Any, ...], dict[str, Any]] = {}  # encoded prompts by (prompts, frame size)

    # ---- lifecycle ---------------------------------------------------------------------
    def setup(self) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        local = resolve_weights(self.model_id, self.path)
        device, dtype = select_device(self.family, self.device, self.dtype, self.options.get("threads"))
        try:
            processor = AutoProcessor.from_pretrained(local)
        except Exception as exc:  # noqa: BLE001 - any failure here means "cannot read this processor"
            hint = "" if importlib.util.find_spec("torchvision") else (
                " (the processors of Qwen2-VL and LLaVA-OneVision need torchvision, for their video processor)")
            raise OSError(f"cannot load the processor in {local}: {type(exc).__name__}: {exc}{hint}") from exc
        try:
            loaded: Any = AutoModelForImageTextToText.from_pretrained(
                local, dtype=dtype, attn_implementation=self.options.get("attn_implementation", "sdpa"),
                output_loading_info=True)
            model, info = loaded
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise OSError(f"{local} does not hold an image-text-to-text checkpoint transformers can load "
                          f"({type(exc).__name__}: {exc}); use {_SUPPORTED}") from exc
        bad = sorted(set(info.get("missing_keys", ())) | {str(k) for k in info.get("mismatched_keys", ())})
        if bad:  # transformers fills these with random weights and only logs it; refuse instead
            raise OSError(f"the checkpoint in {local} does not fit {type(model).__name__}: {len(bad)} weights "
                          f"missing or mis-shaped (e.g. {', '.join(bad[:3])})")
        self._shared_vision = "mm_encoder_outputs" in inspect.signature(model.forward).parameters
        if not self._shared_vision:
            log.warning("vlm: %s takes no precomputed image features (transformers < 5.18?); each prompt "
                        "re-encodes its frame", type(model).__name__)
        self._processor, self._tok = processor, processor.tokenizer
        self._tok.padding_side = "left"  # decoder-only batched generation continues from the right edge
        self._model = model.to(device).eval()
        self._device, self._dtype = device, dtype
        self._model_type = str(getattr(model.config, "model_type", ""))
        self._configure_images(processor.image_processor)  # needs self._device
        gen = self._model.generation_config
        eos = gen.eos_token_id if gen.eos_token_id is not None else self._tok.eos_token_id
        self._eos = set(eos if isinstance(eos, list) else [eos]) - {None}
        self._pad = self._tok.pad_token_id if self._tok.pad_token_id is not None else min(self._eos, default=0)
        vocab = self._model.get_output_embeddings().weight.shape[0]
        self._yes = [i for i in _single_token_ids(self._tok, _YES_FORMS) if i < vocab]
        self._no = [i for i in _single_token_ids(self._tok, _NO_FORMS) if i < vocab]
        self._prompts.clear()

    def _configure_images(self, ip: Any) -> None:
        """Image-processor kwargs, pixel layout, normalisation and decode size for this checkpoint's family."""
        import torch

        if hasattr(ip, "do_image_splitting") and hasattr(ip, "max_image_size"):  # Idefics3 / SmolVLM
            side = int(ip.max_image_size["longest_edge"])
            if self.image_size not in (None, side):
                raise ValueError(f"vlm option image_size={self.image_size}: this checkpoint's vision tower takes "
                                 f"{side}x{side} frames; drop image_size or set it to {side}")
            # one square image per frame: no tiling into sub-images (each would cost as much again)
            self._image_kwargs = {"do_image_splitting": False, "size": {"longest_edge": side},
                                  "max_image_size": {"longest_edge": side}}
            self._layout: str | None = "square"
        elif hasattr(ip, "merge_size") and hasattr(ip, "patch_size"):  # Qwen2-VL, Qwen2.5-VL
            factor = int(ip.patch_size) * int(ip.merge_size)
            side = max(factor, round((self.image_size or QWEN_DEFAULT_SIZE) / factor) * factor)
            # cap the pixels at the decoded square so frames are never resized up (more tokens, no detail)
            self._image_kwargs = {"size": {"shortest_edge": min(factor * factor * 4, side * side),
                                           "longest_edge": side * side}}
            self._layout = "patches"
        elif self._model_type in ("llava", "paligemma"):  # one CLIP / SigLIP crop a frame, [N, 3, S, S]
            crop = getattr(ip, "crop_size", None) if getattr(ip, "do_center_crop", False) else None
            side = int((crop or ip.size).get("height") or ip.size.get("shortest_edge"))
            if self.image_size not in (None, side):
                raise ValueError(f"vlm option image_size={self.image_size}: this checkpoint's vision tower takes "
                                 f"{side}x{side} frames; drop image_size or set it to {side}")
            self._image_kwargs, self._layout = {}, "plain"
        elif self._model_type in _LLAVA_ANYRES:  # tiles from image_grid_pinpoints: the processor's own layout
            size = getattr(ip, "crop_size", None) or ip.size
            side = self.image_size or int(size.get("height") or size.get("shortest_edge"))
            self._image_kwargs, self._layout = {}, None
        else:  # pixels go through the processor as it is
            side = self.image_size or 512
            self._image_kwargs, self._layout = {}, None
            log.warning("vlm: %s is not a family this operator was tested with (%s)", type(ip).__name__, _SUPPORTED)
        self._size = (side, side)
        self._targets: dict[tuple[int, int], tuple[int, int]] = {}
        norm = getattr(ip, "do_normalize", True)
        self._scale = float(ip.rescale_factor) if getattr(ip, "do_rescale", True) else 1.0
        self._mean = torch.tensor(ip.image_mean if norm else [0.0] * 3, dtype=torch.float32,
                                  device=self._device).view(1, 3, 1, 1)
        self._std = torch.tensor(ip.image_std if norm else [1.0] * 3, dtype=torch.float32,
                                 device=self._device).view(1, 3, 1, 1)

    def teardown(self) -> None:
        import torch

        self._model = None
        self._prompts.clear()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    @property
    def hf_model(self) -> Any:
        """The loaded ``*ForConditionalGeneration`` model (None before ``setup()``)."""
        return self._model

    @property
    def processor(self) -> Any:
        """The loaded processor (tokenizer, image processor, chat template)."""
        return self._processor

    @property
    def shared_vision(self) -> bool:
        """True when each frame is encoded once per batch (transformers >= 5.18 takes ``mm_encoder_outputs``)."""
        return self._shared_vision

    def input_size(self) -> tuple[int, int]:
        """(height, width) frames are decoded to: the checkpoint's square vision input (known after setup)."""
        return self._size

    # ---- per batch ---------------------------------------------------------------------
    def __call__(self, batch: FrameBatch) -> ModelOutput:
        import torch

        if self._model is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before the model is called")
        n = len(batch)
        out = ModelOutput(n_frames=n, models=dict.fromkeys(self.tasks, self.model_id or str(self.path)))
        with torch.inference_mode():
            self.run_tasks(batch, self.image_features(batch.pixels) if n else None, out)
        return out

    def run_tasks(self, batch: FrameBatch, feats: dict[str, Any] | None, out: ModelOutput) -> None:
        """Fill ``out`` with every task's results from the batch's one vision pass ``feats``."""
        n = len(batch)
        qs = list(self.queries)
        if "caption" in self.tasks:
            texts, _ = self.generate(feats, [self.caption_prompt], self.max_new_tokens["caption"],
                                     frame_size=(batch.height, batch.width))
            out.captions = Captions(texts[0], kind="model")
        if "query" in self.tasks:
            prompts = [self.query_template.format(query=q) for q in qs]
            texts, scores = self.generate(feats, prompts, self.max_new_tokens["query"],
                                          frame_size=(batch.height, batch.width), score=True)
            matched = np.array([[parse_yes_no(t) is True for t in row] for row in texts], bool).reshape(len(qs), n)
            out.queries = QueryAnswers(qs, matched, scores.reshape(len(qs), n), None)
        if "ask" in self.tasks:
            asks = list(self.questions)
            texts, _ = self.generate(feats, [self.question_template.format(question=q) for q in asks],
                                     self.max_new_tokens["ask"], frame_size=(batch.height, batch.width))
            out.answers = Answers(asks, [list(row) if n else [] for row in texts])

    def image_features(self, pixels: np.ndarray) -> dict[str, Any]:
        """Image inputs of uint8 ``[N, H, W, 3]`` frames, and their image tokens from one vision pass.

        Returns ``{"n", "inputs": pixel tensors on the device, "features": N tensors of image
        tokens, or None where the model cannot take them precomputed}``.
        """
        inputs = self.pixel_inputs(pixels) if self._layout else self._processor_pixels(pixels)
        feats = None
        if self._shared_vision:
            feats = list(self._model.get_image_features(**inputs, return_dict=True).pooler_output)
            if len(feats) != len(pixels):
                raise RuntimeError(f"vision tower gave {len(feats)} feature sets for {len(pixels)} frames")
        return {"n": len(pixels), "inputs": inputs, "features": feats}

    def pixel_inputs(self, pixels: np.ndarray) -> dict[str, Any]:
        """What the image processor makes of the frames, in batched torch on the model's device.

        uint8 frames cross to the GPU (pinned, 4x smaller than float), are resized there only if
        the decoder did not already, then normalised; Qwen2-VL's are cut into merged patch rows.
        """
        import torch
        import torch.nn.functional as F

        n, h, w = pixels.shape[:3]
        th, tw = self._target_size(h, w)
        x = frames_to_device(pixels, self._device)
        if (h, w) != (th, tw):
            x = F.interpolate(x, size=(th, tw), mode="bicubic", align_corners=False, antialias=True).clamp_(0, 255)
        x = (x * self._scale - self._mean) / self._std
        if self._layout == "square":  # Idefics3: [N, images per frame = 1, 3, S, S]
            return {"pixel_values": x.unsqueeze(1).to(self._dtype)}
        if self._layout == "plain":  # LLaVA 1.5: [N, 3, S, S]
            return {"pixel_values": x.to(self._dtype)}
        ip = self._processor.image_processor
        p, m, t = int(ip.patch_size), int(ip.merge_size), int(ip.temporal_patch_size)
        gh, gw = th // p, tw // p
        # as Qwen2VLImageProcessor.patchify: rows in merge-window order, each (channel, time, patch, patch)
        x = x.reshape(n, 3, gh // m, m, p, gw // m, m, p).permute(0, 2, 5, 3, 6, 1, 4, 7)
        x = x.unsqueeze(6).expand(-1, -1, -1, -1, -1, -1, t, -1, -1).reshape(n * gh * gw, 3 * t * p * p)
        grid = torch.tensor([[1, gh, gw]] * n, dtype=torch.long, device=self._device)
        return {"pixel_values": x.to(self._dtype), "image_grid_thw": grid}

    def _target_size(self, h: int, w: int) -> tuple[int, int]:
        """(height, width) the image processor resizes an ``h`` x ``w`` frame to (asked of it once per size)."""
        if (h, w) not in self._targets:
            enc = self._processor.image_processor(images=[[np.zeros((h, w, 3), np.uint8)]], return_tensors="pt",
                                                  **self._image_kwargs)
            if "image_grid_thw" in enc:
                p = int(self._processor.image_processor.patch_size)
                _, gh, gw = enc["image_grid_thw"][0].tolist()
                self._targets[(h, w)] = (gh * p, gw * p)
            else:
                th, tw = enc["pixel_values"].shape[-2:]
                self._targets[(h, w)] = (int(th), int(tw))
        return self._targets[(h, w)]

    def _processor_pixels(self, pixels: np.ndarray) -> dict[str, Any]:
        """The image processor's own output for frames of a family without a torch path here."""
        enc = self._processor.image_processor(images=[[im] for im in pixels], return_tensors="pt",
                                              **self._image_kwargs)
        inputs = {}
        for key in ("pixel_values", "pixel_attention_mask", "image_grid_thw", "image_sizes"):
            if key in enc:
                v = enc[key].pin_memory() if self._device.type == "cuda" else enc[key]
                v = v.to(self._device, non_blocking=True)
                inputs[key] = v.to(self._dtype) if v.is_floating_point() else v
        return inputs

    @staticmethod
    def _rows(inputs: dict[str, Any], n: int, fi: Any) -> dict[str, Any]:
        """Per-frame image inputs picked for rows ``fi``; Qwen2-VL's flat patch list is cut per frame."""
        out = {}
        for key, v in inputs.items():
            if v.shape[0] == n:  # one entry a frame: Idefics3 pixels and masks, grids
                out[key] = v[fi.to(v.device)]
            else:  # Qwen2-VL pixel_values: [N * patches, dim]; frames of one size have equal patch counts
                out[key] = v.view(n, -1, *v.shape[1:])[fi.to(v.device)].flatten(0, 1)
        return out

    def prompt_text(self, prompt: str) -> str:
        """The model's input text for ``prompt`` about one image: the checkpoint's chat template, one user turn."""
        return str(self._processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}],
            add_generation_prompt=True, tokenize=False))

    def encode_prompts(self, prompts: Sequence[str], frame_size: tuple[int, int]) -> dict[str, Any]:
        """Chat-templated prompts with an image of ``frame_size``, tokenized and left-padded together (cached)."""
        key = (tuple(prompts), *frame_size)
        if key not in self._prompts:
            if len(self._prompts) >= 8:  # standing queries change now and then; keep the recent few
                self._prompts.clear()
            texts = [self.prompt_text(p) for p in prompts]
            blank = np.zeros((*frame_size, 3), np.uint8)  # image tokens depend only on the frame size
            enc = self._processor(text=texts, images=[[blank] for _ in texts], padding=True, padding_side="left",
                                  return_tensors="pt", **self._image_kwargs)
            self._prompts[key] = {k: enc[k].to(self._device)
                                  for k in ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")
                                  if k in enc}
        return self._prompts[key]

    def generate(self, feats: dict[str, Any] | None, prompts: Sequence[str], max_new_tokens: int, *,
                 frame_size: tuple[int, int], score: bool = False,
                 raw: bool = False) -> tuple[list[list[str]], np.ndarray]:
        """Texts ``[P][N]`` (prompt p on frame n) and, with ``score``, P(yes) ``[P, N]`` (NaN otherwise).

        ``raw`` keeps special tokens (a family's location or mask tokens) in the text."""
        import torch
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        n = 0 if feats is None else int(feats["n"])
        p = len(prompts)
        scores = np.full((p, n), math.nan, np.float32)
        if feats is None or n == 0 or p == 0:
            return [[] for _ in prompts], scores
        enc = self.encode_prompts(prompts, frame_size)
        width = enc["input_ids"].shape[1]
        texts: list[str] = []
        yes_no = score and bool(self._yes) and bool(self._no)
        rows = torch.arange(p * n)  # row r = prompt r // n on frame r % n
        for chunk in rows.split(self.max_rows):
            pi, fi = (chunk // n).to(self._device), chunk % n
            kwargs = {k: v[pi] for k, v in enc.items()}
            if feats["features"] is None:  # no precomputed features: each row brings its frame's pixels
                kwargs.update(self._rows(feats["inputs"], n, fi))
            else:
                grid = feats["inputs"].get("image_grid_thw")
                if grid is not None:  # Qwen2-VL places image tokens in 3-D RoPE by each frame's grid
                    kwargs["image_grid_thw"] = grid[fi.to(grid.device)]
                per_row: Any = [feats["features"][i] for i in fi.tolist()]  # one tensor of image tokens a row
                if self._model_type == "paligemma":  # its forward takes one [rows, tokens, dim] tensor
                    per_row = torch.stack(per_row)
                image = BaseModelOutputWithPooling(pooler_output=per_row)
                kwargs["mm_encoder_outputs"] = {"image": image}
            res = self._model.generate(**kwargs, max_new_tokens=max_new_tokens,
                                       do_sample=False, num_beams=1, pad_token_id=self._pad,
                                       return_dict_in_generate=True, output_logits=yes_no)
            texts.extend(self._decode(res.sequences[:, width:], raw))
            if yes_no:
                logp = torch.log_softmax(res.logits[0].float(), dim=-1)
                margin = torch.logsumexp(logp[:, self._yes], -1) - torch.logsumexp(logp[:, self._no], -1)
                scores.reshape(-1)[chunk.numpy()] = torch.sigmoid(margin).cpu().numpy()
        return [texts[i * n:(i + 1) * n] for i in range(p)], scores

    def _decode(self, seqs: Any, raw: bool = False) -> list[str]:
        """Generated tokens to text, cut at the first end of sequence."""
        out = []
        for row in seqs.tolist():
            stop = next((i for i, t in enumerate(row) if t in self._eos), len(row))
            row = [t for t in row[:stop] if t != self._pad]
            text = self._tok.decode(row, skip_special_tokens=not raw, clean_up_tokenization_spaces=False)
            out.append(" ".join(text.split()))
        return out

