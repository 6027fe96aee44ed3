"""Model-input <-> source geometry on whole batches: the resize mode comes from the batch's meta."""

from __future__ import annotations

import numpy as np
import pytest

from operators.frames import FrameBatch
from operators.geometry import batch_to_source_xyxy, content_pixels, letterbox, to_source_xyxy


def _batch(mode: str | None, h: int = 512, w: int = 512, orig: tuple[int, int] = (640, 272)) -> FrameBatch:
    px = np.zeros((1, h, w, 3), np.uint8)
    meta = {} if mode is None else {"cam": {"resize": mode}}
    return FrameBatch(px, np.array(["cam"]), np.array([0]), np.array([0.0]), np.array([0.0]),
                      np.array([orig[0]]), np.array([orig[1]]), meta=meta)


def test_letterbox_round_trip_is_exact() -> None:
    src = np.array([[100.0, 40.0, 300.0, 250.0], [0.0, 0.0, 640.0, 272.0]])
    lb = letterbox(640, 272, 512, 512)
    sx, sy = lb.w / 640, lb.h / 272
    into = np.stack([src[:, 0] * sx + lb.x, src[:, 1] * sy + lb.y, src[:, 2] * sx + lb.x, src[:, 3] * sy + lb.y], 1)
    np.testing.assert_allclose(batch_to_source_xyxy(_batch("letterbox"), 0, into), src, atol=1e-4)
    np.testing.assert_allclose(to_source_xyxy(into, 640, 272, 512, 512, "letterbox"), src, atol=1e-4)


def test_mode_comes_from_meta_and_defaults_to_stretch() -> None:
    box = [[0, 0, 256, 256]]
    np.testing.assert_allclose(batch_to_source_xyxy(_batch(None), 0, box), [[0, 0, 320, 136]])
    np.testing.assert_allclose(batch_to_source_xyxy(_batch("stretch"), 0, box), [[0, 0, 320, 136]])
    with pytest.raises(ValueError, match="use one of"):
        batch_to_source_xyxy(_batch("crop"), 0, box)


def test_a_model_input_of_another_size_maps_through_the_batch_pixels() -> None:
    """A model that letterboxed 272x640 frames itself to 512x512 (the batch kept source size)."""
    b = _batch(None, h=272, w=640)
    np.testing.assert_allclose(batch_to_source_xyxy(b, 0, [[0, 147, 512, 365]], 512, 512, "letterbox"),
                               [[0, 0, 640, 272]], atol=1e-3)


def test_content_pixels_drop_the_bars() -> None:
    assert content_pixels(_batch("letterbox"), 0).shape == (218, 512, 3)
    assert content_pixels(_batch("stretch"), 0).shape == (512, 512, 3)
