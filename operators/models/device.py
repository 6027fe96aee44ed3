"""Device and dtype policy shared by the torch model families.

CUDA when asked for (``auto``/``cuda``/``cuda:N``) and present, in bf16 unless a dtype is
given; otherwise CPU in float32 (half precision on CPU is slow and lossy) with torch's
intra-op threads set from the actor's CPU share.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["frames_to_device", "select_device"]

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
