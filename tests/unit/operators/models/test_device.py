"""Device/dtype policy and the frames-to-tensor path shared by the torch families."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from operators.models.device import frames_to_device, select_device


def test_read_only_frames_become_float_nchw_without_a_warning() -> None:
    px = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    px.flags.writeable = False  # as Ray's object store hands them over
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = frames_to_device(px, torch.device("cpu"))
    assert x.shape == (2, 3, 5, 7) and x.dtype == torch.float32
    assert torch.equal(x.permute(0, 2, 3, 1), torch.from_numpy(px.astype(np.float32)))


def test_cpu_is_float32_with_the_actors_threads() -> None:
    before = torch.get_num_threads()
    try:
        device, dtype = select_device("test", "cpu", "auto", threads=1)
        assert device.type == "cpu" and dtype == torch.float32 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_defaults_to_bfloat16_and_pinned_copies() -> None:
    device, dtype = select_device("test", "auto", "auto")
    assert device.type == "cuda" and dtype == torch.bfloat16
    x = frames_to_device(np.zeros((1, 4, 4, 3), np.uint8), device)
    assert x.is_cuda and x.shape == (1, 3, 4, 4)
