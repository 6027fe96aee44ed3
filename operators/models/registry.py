"""Model families by name. Configs pick a family by name; tests plug fakes in by dotted path.

``create`` composes: a task the family cannot run but a companion family can (``ocr`` ->
``rapidocr``, see ``operators.models.composite``) makes a CompositeModel of the two.

Built-in families are listed as ``module:Class`` strings so importing the registry does
not import torch. A name containing ``:`` is imported directly, which is how a fake
model defined in a test module reaches a model actor in another process.
"""

from __future__ import annotations

import importlib
from typing import Any

from operators.models.base import VisionModel

__all__ = ["create", "family_names", "get", "register"]

_BUILTIN: dict[str, str] = {
    "florence2": "operators.models.florence2:Florence2Model",
    "centernet": "operators.models.centernet:CenterNetModel",
    "vlm": "operators.models.vlm:VLMModel",
    "llava": "operators.models.llava:LlavaModel",
    "blip": "operators.models.blip:BlipModel",
    "paligemma": "operators.models.paligemma:PaliGemmaModel",
    "embedding": "operators.models.embedding:EmbeddingModel",
    "rapidocr": "operators.models.ocr:RapidOcrModel",
    "hf_detect": "operators.models.hf_detect:HFDetectModel",
    "zero_shot": "operators.models.zero_shot:ZeroShotDetectModel",
    "onnx": "operators.models.onnx_detect:OnnxDetectModel",
}
_REGISTERED: dict[str, type[VisionModel]] = {}


def register(name: str):  # type: ignore[no-untyped-def]
    """Class decorator: make a VisionModel subclass available under ``name``."""

    def deco(cls: type[VisionModel]) -> type[VisionModel]:
        _REGISTERED[name] = cls
        return cls

    return deco


def family_names() -> list[str]:
    return sorted(set(_BUILTIN) | set(_REGISTERED))


def _import(path: str) -> type[VisionModel]:
    module, _, attr = path.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"model {path!r} cannot be imported ({exc}); give 'module:Class' of a VisionModel") from exc
    if not (isinstance(cls, type) and issubclass(cls, VisionModel)):
        raise ValueError(f"model {path!r} is not a VisionModel subclass")
    return cls


def get(name: str) -> type[VisionModel]:
    """The class registered as ``name`` (or importable as ``module:Class``)."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in _BUILTIN:
        return _import(_BUILTIN[name])
    if ":" in name:
        return _import(name)
    raise ValueError(f"unknown model family {name!r}; known families: {', '.join(family_names())}")


def create(name: str, **kwargs: Any) -> VisionModel:
    """Instantiate family ``name`` (setup() is not called); tasks it lacks run on a companion family."""
    from operators.models.composite import COMPANIONS, CompositeModel

    cls = get(name)
    tasks = kwargs.get("tasks")
    if tasks is None or all(t in cls.supported_tasks for t in tasks):
        return cls(**{k: v for k, v in kwargs.items() if k not in COMPANIONS})
    companions = {t: get(f) for t, f in COMPANIONS.items() if f != name}
    return CompositeModel.build(cls, companions, **kwargs)
