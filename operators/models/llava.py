"""LLaVA 1.5 / NeXT / OneVision as their own family: the vlm chat path (``operators.models.vlm``), which
knows their image layouts (1.5: one CLIP crop preprocessed in torch; NeXT / OneVision: the checkpoint's own
PIL image processor, tiles and all), refusing checkpoints of other architectures.
"""

from __future__ import annotations

from typing import ClassVar

from operators.models.vlm import VLMModel

__all__ = ["LlavaModel"]


class LlavaModel(VLMModel):
    """LLaVA checkpoints (``llava-hf/llava-1.5-7b-hf``, ``llava-hf/llava-v1.6-*``, ``llava-hf/llava-onevision-*``)."""

    family: ClassVar[str] = "llava"
    default_id: ClassVar[str] = "llava-hf/llava-1.5-7b-hf"

    def setup(self) -> None:
        super().setup()
        if not self._model_type.startswith("llava"):
            raise OSError(f"{self.path or self.model_id} is a {self._model_type!r} checkpoint, not LLaVA; "
                          "use family vlm for other chat VLMs")
