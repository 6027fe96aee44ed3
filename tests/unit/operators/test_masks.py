"""COCO-style RLE (uncompressed and compressed counts), polygons and box masks."""

from __future__ import annotations

import numpy as np
import pytest

from operators.masks import (
    box_mask,
    compress_counts,
    decode_rle,
    decompress_counts,
    encode_rle,
    polygon_mask,
    rle_area,
)


@pytest.mark.parametrize("seed", range(5))
def test_rle_round_trip_random_masks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 40, 2)
    m = rng.random((h, w)) < rng.random()
    counts = encode_rle(m)
    assert sum(counts) == h * w and rle_area(counts) == m.sum()
    assert (decode_rle(counts, (h, w)) == m).all()
    s = compress_counts(counts)
    assert decompress_counts(s) == counts and (decode_rle(s, (h, w)) == m).all()


def test_known_counts_are_column_major_starting_with_zeros() -> None:
    m = np.zeros((3, 4), bool)
    m[0:2, 1] = True  # column 1, rows 0-1: flat (Fortran) positions 3, 4
    assert encode_rle(m) == [3, 2, 7]
    assert encode_rle(np.ones((2, 2), bool)) == [0, 4]
    assert encode_rle(np.zeros((2, 2), bool)) == [4]
    assert compress_counts([3, 2, 7]) == "327"  # pycocotools writes the same string for this mask


def test_compressed_counts_handle_large_and_negative_deltas() -> None:
    counts = [100000, 5, 3, 99999, 1, 70000]  # deltas against the run two back go negative
    assert decompress_counts(compress_counts(counts)) == counts


def test_bad_rle_is_refused() -> None:
    with pytest.raises(ValueError, match="cover 3 pixels"):
        decode_rle([1, 2], (2, 2))
    with pytest.raises(ValueError, match="2-D"):
        encode_rle(np.zeros(4, bool))


def test_polygon_and_box_masks() -> None:
    poly = polygon_mask([[2, 2, 7, 2, 7, 5, 2, 5]], 10, 12)
    assert poly[2:6, 2:8].all() and poly.sum() == 6 * 4
    assert polygon_mask([[1, 1, 2, 2]], 5, 5).sum() == 0  # two points are not a polygon
    box = box_mask([1.5, 0.0, 4.5, 2.0], 5, 6)
    assert box.sum() == 3 * 2 and box[0:2, 1:4].all()  # centres 1.5, 2.5, 3.5 (half-open: 4.5 is out)
