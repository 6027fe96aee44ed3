"""Device and dtype policy shared by the torch model families.

CUDA when asked for (``auto``/``cuda``/``cuda:N``) and present, in bf16 unless a dtype is
given; otherwise CPU in float32 (half precision on CPU is slow and lossy) with torch's
intra-op threads set from the actor's CPU share.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["frames_to_device", "frames_to_model_input", "processor_norm", "select_device"]

log = logging.getLogger(__name__)


def select_device(family: str, device: str, dtype: str, threads: Any = None) -> tuple[Any, Any]:
    """``(torch.device, torch.dtype)`` for a model of ``family`` under the policy above."""
    import torch

    cuda = device in ("auto", "cuda") or device.startswith("cuda:")
    if cuda and torch.cuda.is_available():
        dev = torch.device(device if device.startswith("cuda:") else "cuda")
        return dev, {"auto": torch.bfloat16, "bfloat16": torch.bfloat16, "float16": torch.float16,
                     "float32": torch.float32}[dtype]
    if device.startswith("cuda"):
        log.warning("%s: device %r asked for but CUDA is not available; running on CPU", family, device)
    if threads:
        torch.set_num_threads(int(threads))
    return torch.device("cpu"), torch.float32


def frames_to_device(pixels: Any, device: Any) -> Any:
    """uint8 ``[N, H, W, 3]`` frames as a float32 ``[N, 3, H, W]`` tensor on ``device``.

    Frames from Ray's object store are read-only numpy views; they are wrapped without a copy
    (the tensor is never written: the float conversion makes the new one), and on CUDA they go
    through pinned memory with a non-blocking copy.
    """
    import warnings

    import numpy as np
    import torch

    arr = np.ascontiguousarray(pixels)
    with warnings.catch_warnings():  # "non-writable array": true, and harmless here, see above
        warnings.simplefilter("ignore", UserWarning)
        x = torch.from_numpy(arr)
    if device.type == "cuda":
        x = x.pin_memory().to(device, non_blocking=True)
    return x.permute(0, 3, 1, 2).float()


def processor_norm(image_processor: Any) -> tuple[float, Any, Any]:
    """``(rescale factor, mean, std)`` of a Hugging Face image processor (identity where it skips a step)."""
    scale = float(image_processor.rescale_factor) if getattr(image_processor, "do_rescale", True) else 1.0
    norm = getattr(image_processor, "do_normalize", True)
    mean = list(image_processor.image_mean) if norm else [0.0, 0.0, 0.0]
    std = list(image_processor.image_std) if norm else [1.0, 1.0, 1.0]
    return scale, mean, std


def frames_to_model_input(pixels: Any, device: Any, dtype: Any, size: tuple[int, int], scale: float,
                          mean: Any, std: Any, *, pad_square: float | None = None) -> Any:
    """uint8 ``[N, H, W, 3]`` frames -> normalised ``[N, 3, h, w]`` model input on ``device`` in ``dtype``.

    The resize (bilinear, antialiased when shrinking) happens on the device and only when the
    frames are not already ``size``; ``pad_square`` first pads each frame at the bottom/right to a
    square with that value in [0, 1] (OWLv2's preprocessing, so boxes stay relative to the square).
    """
    import torch
    import torch.nn.functional as F

    x = frames_to_device(pixels, device)
    if pad_square is not None and x.shape[-1] != x.shape[-2]:
        side = max(x.shape[-2:])
        x = F.pad(x, (0, side - x.shape[-1], 0, side - x.shape[-2]), value=pad_square * 255.0)
    if tuple(x.shape[-2:]) != tuple(size):
        down = x.shape[-2] > size[0] or x.shape[-1] > size[1]
        x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=down).clamp_(0, 255)
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    return ((x * scale - m) / s).to(dtype)
