"""FrameBatch: validation, selection by mask/index/slice, concat and split."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from operators.frames import FrameBatch

_FIELDS = ("source_id", "frame_index", "pts", "wall_time", "orig_width", "orig_height")


def make(n: int, h: int = 4, w: int = 6, source: str = "cam", start: int = 0) -> FrameBatch:
    px = (np.arange(n * h * w * 3) % 251).astype(np.uint8).reshape(n, h, w, 3)
    px[:, 0, 0, 0] = np.arange(start, start + n) % 256  # tag each frame so selections can be checked
    return FrameBatch(
        pixels=px,
        source_id=np.array([source] * n),
        frame_index=np.arange(start, start + n, dtype=np.int64),
        pts=np.arange(start, start + n, dtype=np.float64) * 0.5,
        wall_time=1000.0 + np.arange(n, dtype=np.float64),
        orig_width=np.full(n, 640, np.int32),
        orig_height=np.full(n, 480, np.int32),
        meta={source: {"fps": 25.0}},
    )


# ---- validation ------------------------------------------------------------------------
def test_metadata_is_coerced_to_typed_arrays() -> None:
    lists: dict = {"source_id": ["cam"] * 3, "frame_index": [0, 1, 2], "pts": [0, 0.5, 1], "wall_time": [0, 0, 0],
                   "orig_width": [640] * 3, "orig_height": [480] * 3}
    b = FrameBatch(np.zeros((3, 4, 6, 3), np.uint8), **lists)
    assert len(b) == 3 and (b.height, b.width) == (4, 6)
    assert b.source_id.dtype.kind == "U"
    assert b.frame_index.dtype == np.int64 and b.pts.dtype == np.float64 and b.wall_time.dtype == np.float64
    assert b.orig_width.dtype == np.int32 and b.orig_height.dtype == np.int32
    assert b.nbytes == 3 * 4 * 6 * 3


@pytest.mark.parametrize("pixels", [
    np.zeros((2, 4, 6, 3), np.float32),  # not uint8
    np.zeros((4, 6, 3), np.uint8),  # one frame without the batch axis
    np.zeros((2, 4, 6, 4), np.uint8),  # RGBA
    np.zeros((2, 4, 6), np.uint8),  # grey
    [[[[0, 0, 0]]]],  # not an array
])
def test_bad_pixels_are_refused(pixels: object) -> None:
    with pytest.raises(ValueError, match=r"uint8 \[N,H,W,3\]"):
        FrameBatch(pixels=pixels, **{f: np.zeros(2) for f in _FIELDS})  # type: ignore[arg-type]


@pytest.mark.parametrize("field", _FIELDS)
def test_metadata_of_wrong_length_names_the_field(field: str) -> None:
    b = make(3)
    fields = {f.name: getattr(b, f.name) for f in dataclasses.fields(b)}
    fields[field] = fields[field][:2]
    with pytest.raises(ValueError, match=f"FrameBatch.{field} must be a 1-D array of length 3"):
        FrameBatch(**fields)
    fields[field] = np.stack([getattr(b, field)] * 2)  # 2-D
    with pytest.raises(ValueError, match=field):
        FrameBatch(**fields)


def test_batch_is_frozen() -> None:
    b = make(2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        b.pts = np.zeros(2)  # type: ignore[misc]


def test_empty() -> None:
    b = FrameBatch.empty(4, 6)
    assert len(b) == 0 and (b.height, b.width) == (4, 6) and b.pixels.shape == (0, 4, 6, 3)
    assert b.nbytes == 0 and b.split(2) == []


# ---- selection -------------------------------------------------------------------------
def test_boolean_mask_selects_rows() -> None:
    b = make(4)
    sel = b[np.array([True, False, True, False])]
    assert sel is not b and len(sel) == 2
    assert sel.frame_index.tolist() == [0, 2] and sel.pts.tolist() == [0.0, 1.0]
    assert sel.pixels[:, 0, 0, 0].tolist() == [0, 2]
    assert sel.orig_width.tolist() == [640, 640] and sel.meta == {"cam": {"fps": 25.0}}
    assert len(b) == 4  # the source batch is untouched


def test_mask_of_wrong_length_is_refused() -> None:
    with pytest.raises(IndexError, match="does not match a batch of 3"):
        make(3)[np.array([True, False])]


def test_index_array_int_and_slice() -> None:
    b = make(5)
    assert b[np.array([4, 0])].frame_index.tolist() == [4, 0]
    assert b[[1, 3]].pixels[:, 0, 0, 0].tolist() == [1, 3]
    one = b[2]
    assert len(one) == 1 and one.frame_index.tolist() == [2] and one.pixels.ndim == 4
    assert b[-1].frame_index.tolist() == [4]
    assert b[1:3].frame_index.tolist() == [1, 2]
    assert len(b[np.array([], np.int64)]) == 0


def test_selection_keeps_meta_of_selected_sources_only() -> None:
    b = FrameBatch.concat([make(2, source="a"), make(2, source="b", start=2)])
    assert set(b.meta) == {"a", "b"}
    only_b = b[b.source_id == "b"]
    assert only_b.source_id.tolist() == ["b", "b"] and set(only_b.meta) == {"b"}
    assert b[np.zeros(4, bool)].meta == {}


# ---- concat and split ------------------------------------------------------------------
def test_concat_joins_in_order_and_merges_meta() -> None:
    a, b = make(2, source="a"), make(3, source="b", start=2)
    j = FrameBatch.concat([a, b])
    assert len(j) == 5
    assert j.source_id.tolist() == ["a", "a", "b", "b", "b"]
    assert j.frame_index.tolist() == [0, 1, 2, 3, 4]
    assert j.pixels[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4]
    assert j.meta == {"a": {"fps": 25.0}, "b": {"fps": 25.0}}


def test_concat_skips_empty_batches_of_any_size() -> None:
    j = FrameBatch.concat([FrameBatch.empty(10, 10), make(2), FrameBatch.empty(4, 6)])
    assert len(j) == 2 and (j.height, j.width) == (4, 6)
    only_empty = FrameBatch.concat([FrameBatch.empty(8, 8)])
    assert len(only_empty) == 0 and (only_empty.height, only_empty.width) == (8, 8)


def test_concat_refuses_mixed_sizes_and_nothing() -> None:
    with pytest.raises(ValueError, match="different frame sizes"):
        FrameBatch.concat([make(1, h=4, w=6), make(1, h=8, w=6)])
    with pytest.raises(ValueError, match="at least one batch"):
        FrameBatch.concat([])


def test_split_cuts_consecutive_chunks_that_rejoin() -> None:
    b = make(7)
    parts = b.split(3)
    assert [len(p) for p in parts] == [3, 3, 1]
    assert [p.frame_index.tolist() for p in parts] == [[0, 1, 2], [3, 4, 5], [6]]
    back = FrameBatch.concat(parts)
    np.testing.assert_array_equal(back.pixels, b.pixels)
    np.testing.assert_array_equal(back.pts, b.pts)
    assert [len(p) for p in b.split(10)] == [7]
    assert [len(p) for p in b.split(1)] == [1] * 7


def test_split_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="split size must be >= 1"):
        make(2).split(0)
