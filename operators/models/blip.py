"""BLIP: captions (``BlipForConditionalGeneration``), yes/no queries and answers (``BlipForQuestionAnswering``).

BLIP ships one checkpoint per task: a captioning one (e.g. ``Salesforce/blip-image-captioning-base``)
runs ``caption``; a VQA one (e.g. ``Salesforce/blip-vqa-base``) runs ``query`` and ``ask``. Each batch
runs the ViT once; the caption decoder, or the question encoder of every (question, frame) pair, then
cross-attends to those image tokens (what the upstream ``generate`` does, minus its own vision pass).
Questions run one at a time over all the batch's frames (no padding between questions).
A query asks the query as a question; matched = the answer reads yes; score = P(yes) / (P(yes) + P(no))
over the first answer token.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from operators.frames import FrameBatch
from operators.models.base import VisionModel
from operators.models.device import frames_to_device, select_device
from operators.models.vlm import _NO_FORMS, _YES_FORMS, _single_token_ids, parse_yes_no
from operators.models.weights import resolve_weights
from operators.results import Answers, Captions, ModelOutput, QueryAnswers

__all__ = ["BlipModel"]

DTYPES = ("auto", "float32", "bfloat16", "float16")
DEFAULT_MAX_NEW_TOKENS = {"caption": 30, "query": 4, "ask": 10}
OPTIONS = ("threads", "caption_prompt", "max_new_tokens", "max_rows")
_KINDS = {"BlipForConditionalGeneration": ("caption",), "BlipForQuestionAnswering": ("query", "ask")}


class BlipModel(VisionModel):
    """A BLIP checkpoint (captioning or VQA), loaded with transformers' own class for it.

    Options: ``threads``, ``caption_prompt`` (text the caption continues, e.g. ``"a picture of"``;
    default none), ``max_new_tokens`` (int or per task {caption, query, ask}), ``max_rows``
    (sequences per generate call, default 64).
    """

    family: ClassVar[str] = "blip"
    default_id: ClassVar[str] = "Salesforce/blip-image-captioning-base"
    supported_tasks: ClassVar[tuple[str, ...]] = ("caption", "query", "ask")

    def __init__(self, **kwargs: Any) -> None:
        self._tasks_given = kwargs.get("tasks") is not None  # else: what the checkpoint's kind runs (at setup)
        super().__init__(**kwargs)
        bad = sorted(set(self.options) - set(OPTIONS))
        if bad:
            raise ValueError(f"unknown blip option(s) {bad}; known options: {list(OPTIONS)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"blip dtype {self.dtype!r}; use one of {list(DTYPES)}")
        mnt = self.options.get("max_new_tokens", {})
        per_task = mnt if isinstance(mnt, dict) else dict.fromkeys(DEFAULT_MAX_NEW_TOKENS, mnt)
        if set(per_task) - set(DEFAULT_MAX_NEW_TOKENS):
            raise ValueError(f"blip option max_new_tokens: keys {sorted(per_task)}; use {list(DEFAULT_MAX_NEW_TOKENS)}")
        self.max_new_tokens = {**DEFAULT_MAX_NEW_TOKENS, **{k: int(v) for k, v in per_task.items()}}
        self.caption_prompt = str(self.options.get("caption_prompt", ""))
        self.max_rows = int(self.options.get("max_rows", 64))
        if self.max_rows < 1 or min(self.max_new_tokens.values()) < 1:
            raise ValueError("blip options max_rows and max_new_tokens must be >= 1")
        self._model: Any = None
        self._processor: Any = None
        self._size = (384, 384)

    # ---- lifecycle ---------------------------------------------------------------------
    def setup(self) -> None:
        import torch
        import transformers
        from transformers import AutoConfig, AutoProcessor

        local = resolve_weights(self.model_id, self.path)
        arch = (AutoConfig.from_pretrained(local).architectures or [""])[0]
        if arch not in _KINDS:
            raise OSError(f"{local} holds a {arch or 'model without architectures'} checkpoint; the blip family "
                          f"loads {sorted(_KINDS)} (e.g. Salesforce/blip-image-captioning-base, "
                          "Salesforce/blip-vqa-base)")
        if not self._tasks_given:
            self.tasks = _KINDS[arch]
        wrong = [t for t in self.tasks if t not in _KINDS[arch]]
        if wrong:
            raise ValueError(f"{local} is a {arch} checkpoint: it runs {list(_KINDS[arch])}, not {wrong}; "
                             "BLIP captions with a captioning checkpoint and answers with a VQA one")
        device, dtype = select_device("blip", self.device, self.dtype, self.options.get("threads"))
        self._processor = AutoProcessor.from_pretrained(local)
        model, info = getattr(transformers, arch).from_pretrained(local, dtype=dtype, output_loading_info=True)
        bad = sorted(set(info.get("missing_keys", ())) | {str(k) for k in info.get("mismatched_keys", ())})
        if bad:
            raise OSError(f"the checkpoint in {local} does not fit {arch}: {len(bad)} weights missing or mis-shaped "
                          f"(e.g. {', '.join(bad[:3])})")
        self._model = model.to(device).eval()
        self._arch, self._device, self._dtype = arch, device, dtype
        self._tok = self._processor.tokenizer
        ip = self._processor.image_processor
        self._size = (int(ip.size["height"]), int(ip.size["width"]))
        norm = getattr(ip, "do_normalize", True)
        self._scale = float(ip.rescale_factor) if getattr(ip, "do_rescale", True) else 1.0
        self._mean = torch.tensor(ip.image_mean if norm else [0.0] * 3, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(ip.image_std if norm else [1.0] * 3, device=device).view(1, 3, 1, 1)
        tc = self._model.config.text_config
        self._bos, self._sep, self._pad = tc.bos_token_id, tc.sep_token_id, tc.pad_token_id
        vocab = self._model.text_decoder.get_output_embeddings().weight.shape[0]
        self._yes = [i for i in _single_token_ids(self._tok, _YES_FORMS) if i < vocab]
        self._no = [i for i in _single_token_ids(self._tok, _NO_FORMS) if i < vocab]

    def teardown(self) -> None:
        self._model = None

    @property
    def hf_model(self) -> Any:
        """The loaded ``BlipForConditionalGeneration`` or ``BlipForQuestionAnswering`` (None before setup)."""
        return self._model

    @property
    def processor(self) -> Any:
        return self._processor

    def input_size(self) -> tuple[int, int]:
        """(height, width) of the ViT input (384x384 for released checkpoints; known after setup)."""
        return self._size

    # ---- per batch ---------------------------------------------------------------------
    def __call__(self, batch: FrameBatch) -> ModelOutput:
        import torch

        if self._model is None:
            raise RuntimeError("BlipModel.setup() must run before the model is called")
        n = len(batch)
        out = ModelOutput(n_frames=n, models=dict.fromkeys(self.tasks, self.model_id or str(self.path)))
        with torch.inference_mode():
            feats = self.image_features(batch.pixels) if n else None
            if "caption" in self.tasks:
                out.captions = Captions(self.caption(feats) if n else [], kind="model")
            if "query" in self.tasks:
                qs = list(self.queries)
                texts, scores = self.answer(feats, qs, self.max_new_tokens["query"], n, score=True)
                matched = np.array([[parse_yes_no(t) is True for t in row] for row in texts], bool).reshape(len(qs), n)
                out.queries = QueryAnswers(qs, matched, scores, None)
            if "ask" in self.tasks:
                asks = list(self.questions)
                texts, _ = self.answer(feats, asks, self.max_new_tokens["ask"], n)
                out.answers = Answers(asks, texts)
        return out

    def image_features(self, pixels: np.ndarray) -> Any:
        """ViT tokens ``[N, T, D]`` of uint8 ``[N, H, W, 3]`` frames: the one vision pass of the batch."""
        import torch.nn.functional as F

        x = frames_to_device(pixels, self._device)
        if tuple(x.shape[-2:]) != self._size:
            x = F.interpolate(x, size=self._size, mode="bicubic", align_corners=False, antialias=True).clamp_(0, 255)
        x = ((x * self._scale - self._mean) / self._std).to(self._dtype)
        return self._model.vision_model(pixel_values=x).last_hidden_state

    def caption(self, feats: Any) -> list[str]:
        """One caption a frame, continuing ``caption_prompt``, from the shared image tokens."""
        import torch

        n = int(feats.shape[0])
        ids = self._tok([self.caption_prompt], return_tensors="pt")["input_ids"][:, :-1].to(self._device)
        ids[:, 0] = self._bos  # as BlipForConditionalGeneration.generate: [DEC] then the prompt, no [SEP]
        texts: list[str] = []
        for rows in torch.arange(n).split(self.max_rows):
            img = feats[rows.to(self._device)]
            seqs = self._model.text_decoder.generate(
                input_ids=ids.expand(len(rows), -1), eos_token_id=self._sep, pad_token_id=self._pad,
                encoder_hidden_states=img, encoder_attention_mask=self._ones(img), max_new_tokens=self.max_new_tokens[
                    "caption"], do_sample=False, num_beams=1)
            texts.extend(self._decode(seqs))
        return texts

    def answer(self, feats: Any, questions: Sequence[str], max_new_tokens: int, n: int, *,
               score: bool = False) -> tuple[list[list[str]], np.ndarray]:
        """Answers ``[Q][N]`` and, with ``score``, P(yes) ``[Q, N]`` (NaN otherwise)."""
        import torch

        q = len(questions)
        scores = np.full((q, n), math.nan, np.float32)
        if q == 0 or n == 0:
            return [[] for _ in questions], scores
        yes_no = score and bool(self._yes) and bool(self._no)
        texts: list[str] = []
        # one question at a time over all frames, unpadded as upstream generate runs it: padded question rows
        # decoded differently from unpadded ones (seen on the tiny checkpoint), so a batch never mixes lengths
        for qi, question in enumerate(questions):
            ids = self._tok([question], return_tensors="pt")["input_ids"].to(self._device)
            for chunk in torch.arange(n).split(self.max_rows):
                img = feats[chunk.to(self._device)]
                qemb = self._model.text_encoder(input_ids=ids.expand(len(chunk), -1), encoder_hidden_states=img,
                                                encoder_attention_mask=self._ones(img),
                                                return_dict=True).last_hidden_state
                start = torch.full((len(chunk), 1), self._model.decoder_start_token_id, device=self._device)
                res = self._model.text_decoder.generate(
                    input_ids=start, eos_token_id=self._sep, pad_token_id=self._pad, encoder_hidden_states=qemb,
                    encoder_attention_mask=self._ones(qemb), max_new_tokens=max_new_tokens, do_sample=False,
                    num_beams=1, return_dict_in_generate=True, output_logits=yes_no)
                texts.extend(self._decode(res.sequences))
                if yes_no:
                    logp = torch.log_softmax(res.logits[0].float(), dim=-1)
                    margin = torch.logsumexp(logp[:, self._yes], -1) - torch.logsumexp(logp[:, self._no], -1)
                    scores[qi, chunk.numpy()] = torch.sigmoid(margin).cpu().numpy()
        return [texts[i * n:(i + 1) * n] for i in range(q)], scores

    def _ones(self, img: Any) -> Any:
        import torch

        return torch.ones(img.shape[:-1], dtype=torch.long, device=img.device)

    def _decode(self, seqs: Any) -> list[str]:
        out = []
        for row in seqs.tolist():
            row = row[1:]  # the start token
            if self._sep in row:
                row = row[: row.index(self._sep)]
            out.append(" ".join(self._tok.decode(row, skip_special_tokens=True).split()))
        return out
