"""Analytics config: defaults load, and bad values fail naming the key and the fix."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from operators.analytics.config import AnalyticsSpec, LineSpec, WindowSpec, ZoneSpec, resolve_coords

SQUARE = [[0, 0], [10, 0], [10, 10], [0, 10]]


def test_defaults_and_round_trip() -> None:
    spec = AnalyticsSpec.model_validate({"zones": [{"name": "bay", "polygon": SQUARE}],
                                         "lines": [{"name": "door", "start": [0, 5], "end": [10, 5]}]})
    assert spec.tracker.enabled and spec.windows.window_s == 60 and spec.zones[0].anchor == "bottom_center"
    assert AnalyticsSpec.model_validate(spec.model_dump()) == spec


@pytest.mark.parametrize("data,needle", [
    ({"zones": [{"name": "z", "polygon": [[0, 0], [1, 1]]}]}, "zones[z].polygon: needs at least 3"),
    ({"zones": [{"name": "z", "polygon": [[0, 0], [10, 10], [10, 0], [0, 10]]}]}, "self-intersecting"),
    ({"zones": [{"name": "z", "polygon": [[0, 0], [5, 5], [10, 10]]}]}, "collinear"),
    ({"zones": [{"name": "z", "coords": "normalized", "polygon": [[0, 0], [1.5, 0], [1, 1]]}]}, "outside [0, 1]"),
    ({"lines": [{"name": "door", "start": [3, 4], "end": [3, 4]}]}, "lines[door]: start and end are the same"),
    ({"zones": [{"name": "z", "polygon": SQUARE}, {"name": "z", "polygon": SQUARE}]}, "'z' is used twice"),
    ({"windows": {"window_s": 0}}, "window_s must be > 0"),
    ({"tracker": {"enabled": False}, "lines": [{"name": "l", "start": [0, 0], "end": [1, 0]}]},
     "set tracker.enabled: true"),
    ({"tracker": {"min_frame": 2}}, "min_frame"),
    ({"tracker": {"classes": []}}, "classes: give at least one label"),
])
def test_errors_name_the_key_and_the_fix(data: dict, needle: str) -> None:
    with pytest.raises(ValidationError) as err:
        AnalyticsSpec.model_validate(data)
    assert needle in str(err.value)


def test_specs_are_frozen() -> None:
    with pytest.raises(ValidationError):
        WindowSpec().window_s = 5  # type: ignore[misc]


def test_coords_resolve_and_sources_select() -> None:
    assert resolve_coords([(0.5, 1.0)], "auto", 640, 480) == [(320.0, 480.0)]
    assert resolve_coords([(0.5, 1.0)], "pixels", 640, 480) == [(0.5, 1.0)]
    assert resolve_coords([(5, 1.0)], "auto", 640, 480) == [(5.0, 1.0)]
    spec = AnalyticsSpec(zones=[ZoneSpec(name="a", source="cam1", polygon=SQUARE),
                                ZoneSpec(name="b", source="rtsp://*/lobby", polygon=SQUARE)],
                         lines=[LineSpec(name="l", start=(0, 0), end=(1, 1))])
    assert [z.name for z in spec.for_source("cam1").zones] == ["a"]
    assert [z.name for z in spec.for_source("cam2", "rtsp://10.0.0.1/lobby").zones] == ["b"]
    assert [ln.name for ln in spec.for_source("anything").lines] == ["l"]
    clash = AnalyticsSpec(zones=[ZoneSpec(name="a", source="cam*", polygon=SQUARE),
                                 ZoneSpec(name="a", source="cam1", polygon=SQUARE)])
    with pytest.raises(ValueError, match="apply to source 'cam1' more than once"):
        clash.for_source("cam1")
