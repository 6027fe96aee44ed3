"""Tiny random-weight closed-set detectors (RT-DETR v2, D-FINE, DETR) saved like hub checkpoints.

Real configs (``RTDetrV2Config`` + ``RTDetrResNetConfig``, ``DFineConfig`` + ``HGNetV2Config``,
``DetrConfig`` + a transformers ``ResNetConfig`` backbone instead of timm's) shrunk to a few
thousand weights on 64x64 inputs, three COCO class names in ``id2label``, and the family's
image processor (its PIL backend: torchvision is not installed), saved with ``save_pretrained``
so ``AutoModelForObjectDetection``/``AutoImageProcessor`` load them back from a local path.
Random weights say nothing: tests check plumbing, never what is detected.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

__all__ = ["TINY_DETECTOR_SIZE", "TINY_LABELS", "build_tiny_detr", "build_tiny_dfine", "build_tiny_rtdetr_v2"]

TINY_DETECTOR_SIZE = 64
TINY_LABELS = {0: "person", 1: "bicycle", 2: "car"}


def _seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


def image_processor(name: str, **kwargs: Any) -> Any:
    """``transformers.<name>``, or its PIL backend where torchvision (the default backend) is missing."""
    import transformers

    if importlib.util.find_spec("torchvision") is None:
        name += "Pil"
    return getattr(transformers, name)(**kwargs)


def _labels() -> dict[str, Any]:
    return {"id2label": dict(TINY_LABELS), "label2id": {v: k for k, v in TINY_LABELS.items()}}


def _save(model: Any, processor: Any, dst_dir: str | os.PathLike[str]) -> Path:
    dst = Path(dst_dir)
    dst.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(dst)
    processor.save_pretrained(dst)
    return dst


# decoder_layers >= 2: the v2 / D-FINE heads tie bbox_embed.0 to the later layers
_DECODER = dict(d_model=32, encoder_hidden_dim=32, encoder_ffn_dim=64, encoder_attention_heads=2, decoder_layers=2,
                decoder_ffn_dim=64, decoder_attention_heads=2, num_queries=30, num_denoising=0,
                decoder_in_channels=[32, 32, 32], decoder_n_points=2)


def build_tiny_rtdetr_v2(dst_dir: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """RT-DETR v2 (ResNet-vd backbone, hybrid encoder, 2-layer deformable decoder), 30 queries."""
    from transformers import RTDetrResNetConfig, RTDetrV2Config, RTDetrV2ForObjectDetection

    _seed(seed)
    backbone = RTDetrResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1],
                                  layer_type="basic", out_features=["stage2", "stage3", "stage4"])
    config = RTDetrV2Config(backbone_config=backbone, encoder_in_channels=[16, 24, 32], **_DECODER, **_labels())
    proc = image_processor("RTDetrImageProcessor", size={"height": TINY_DETECTOR_SIZE, "width": TINY_DETECTOR_SIZE})
    return _save(RTDetrV2ForObjectDetection(config), proc, dst_dir)


def build_tiny_dfine(dst_dir: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """D-FINE (HGNet-v2 backbone, fine-grained distribution refinement head), 30 queries."""
    from transformers import DFineConfig, DFineForObjectDetection, HGNetV2Config

    _seed(seed)
    backbone = HGNetV2Config(embedding_size=8, depths=[1, 1, 1, 1], hidden_sizes=[16, 32, 48, 64],
                             stem_channels=[3, 8, 8], stage_in_channels=[8, 16, 32, 48],
                             stage_mid_channels=[8, 8, 16, 16], stage_out_channels=[16, 32, 48, 64],
                             stage_num_blocks=[1, 1, 1, 1], stage_numb_of_layers=[1, 1, 1, 1],
                             out_features=["stage2", "stage3", "stage4"])
    config = DFineConfig(backbone_config=backbone, encoder_in_channels=[32, 48, 64], **_DECODER, **_labels())
    proc = image_processor("RTDetrImageProcessor", size={"height": TINY_DETECTOR_SIZE, "width": TINY_DETECTOR_SIZE})
    return _save(DFineForObjectDetection(config), proc, dst_dir)


def build_tiny_detr(dst_dir: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """DETR with a transformers ResNet backbone (``use_timm_backbone=False``: no timm), 30 queries."""
    from transformers import DetrConfig, DetrForObjectDetection, ResNetConfig

    _seed(seed)
    backbone = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], layer_type="basic",
                            out_features=["stage4"])
    config = DetrConfig(backbone_config=backbone, use_timm_backbone=False, d_model=32, encoder_layers=1,
                        decoder_layers=1, encoder_ffn_dim=64, decoder_ffn_dim=64, encoder_attention_heads=2,
                        decoder_attention_heads=2, num_queries=30, **_labels())
    proc = image_processor("DetrImageProcessor", size={"shortest_edge": TINY_DETECTOR_SIZE, "longest_edge": 128})
    return _save(DetrForObjectDetection(config), proc, dst_dir)
