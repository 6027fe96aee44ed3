"""Real pixels with known motion: vtest.avi pedestrians moved along known paths, decoded, detected by the default
CenterNet (real weights), then tracked, counted on a line and timed in a zone by the SourceStage."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from operators.analytics.config import AnalyticsSpec
from operators.analytics.events import LineEvent, TrackEvent, ZoneEvent
from operators.analytics.frames import SourceFrames
from operators.analytics.stage import SourceStage
from operators.decode import DecodeOptions, decode
from operators.models.assets import ensure_centernet, models_cache_dir
from operators.models.registry import create
from tests.support.moving_objects import VTEST, Actor, Clip, make_clip

pytestmark = pytest.mark.slow

FPS, SAMPLE_FPS, LINE_X = 10, 5, 256.0
ZONE = [[280, 100], [420, 100], [420, 170], [280, 170]]
ACTORS = [
    Actor("a", "p0", lambda f: (30 + 5 * f, 190), 1.2),   # walks right across the line
    Actor("b", "p1", lambda f: (440 - 5 * f, 330)),       # walks left across the line
    # walks left into the zone, stands still from frame 25 to 54, walks on out of it and across the line
    Actor("c", "p2", lambda f: (470 - 6 * f if f < 25 else 320 if f < 55 else 320 - 6 * (f - 55), 60), 1.2),
]
SPEC = AnalyticsSpec.model_validate({
    "tracker": {"classes": ["person"]},
    "zones": [{"name": "bench", "polygon": ZONE, "coords": "pixels"}],
    "lines": [{"name": "middle", "start": [LINE_X, 0], "end": [LINE_X, 512], "coords": "pixels"}],
    "windows": {"window_s": 4},
})


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    lt, rb = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = float(np.prod(np.clip(rb - lt, 0, None)))
    return inter / (float(np.prod(a[2:] - a[:2])) + float(np.prod(b[2:] - b[:2])) - inter)


@pytest.fixture(scope="module")
def detected(tmp_path_factory: pytest.TempPathFactory) -> tuple[Clip, list[SourceFrames]]:
    if not VTEST.is_file():
        pytest.skip(f"{VTEST} missing (Debian package opencv-doc)")
    cached = models_cache_dir() / "human-models-3.0.4" / "centernet.json"
    if not cached.is_file() and shutil.which("npm") is None:
        pytest.skip("npm is not installed and the CenterNet weights are not cached")
    torch.set_num_threads(1)
    clip = make_clip(Path(tmp_path_factory.mktemp("clip")) / "walkers.mp4", ACTORS, frames=80, fps=FPS, size=512)
    model = create("centernet", path=str(ensure_centernet()), tasks=["detect"])
    model.setup()
    chunks = []
    for batch in decode(str(clip.path), "walkers", DecodeOptions(fps=SAMPLE_FPS, size=(512, 512), chunk=8)):
        chunks.append(SourceFrames.from_batch(batch, model(batch), "walkers"))
    model.teardown()
    return clip, chunks


def run(chunks: list[SourceFrames]) -> tuple[list[np.ndarray], list]:
    stage = SourceStage("walkers", SPEC, frame_rate=SAMPLE_FPS)
    outs = [stage.push(i, c) for i, c in enumerate(chunks)] + [stage.end()]
    return [c.track_ids for o in outs for c in o.chunks], [e for o in outs for e in o.events]


def anchor(box: np.ndarray) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, box[3]


def test_clip_has_the_known_motion(detected: tuple[Clip, list[SourceFrames]]) -> None:
    clip, chunks = detected
    frames = np.concatenate([c.frame_index for c in chunks])
    assert frames.tolist() == list(range(0, 80, FPS // SAMPLE_FPS))  # sampled every other frame
    assert np.allclose(np.concatenate([c.pts for c in chunks]), frames / FPS)
    assert all((c.width, c.height) == (512, 512) for c in chunks)


def test_each_walker_keeps_one_track_id_along_its_path(detected: tuple[Clip, list[SourceFrames]]) -> None:
    clip, chunks = detected
    track_ids, events = run(chunks)
    ids: dict[str, list[int]] = {a.name: [] for a in ACTORS}
    for c, tids in zip(chunks, track_ids, strict=True):
        for i, f in enumerate(c.frame_index.tolist()):
            rows = np.flatnonzero((c.detections.frame == i) & (c.detections.label == "person"))
            for a in ACTORS:
                truth = clip.boxes[a.name][f]
                best = max(rows, key=lambda r: _iou(c.detections.xyxy[r], truth))
                assert _iou(c.detections.xyxy[best], truth) > 0.6, (a.name, f)  # the detector finds every walker
                ids[a.name].append(int(tids[best]))
    for name, seq in ids.items():
        assert seq[0] == -1 and len(set(seq[1:])) == 1 and seq[1] > 0, (name, seq)  # confirmed on its 2nd frame
    assert sorted(seq[1] for seq in ids.values()) == [1, 2, 3]
    started = [e for e in events if isinstance(e, TrackEvent) and e.kind == "started"]
    ended = [e for e in events if isinstance(e, TrackEvent) and e.kind == "ended"]
    assert len(started) == 3 and [e.reason for e in ended] == ["end_of_stream"] * 3
    assert all(e.first_pts == 0.0 and e.frames == 40 for e in ended)


def test_line_crossings_are_counted_exactly_in_each_direction(detected: tuple[Clip, list[SourceFrames]]) -> None:
    clip, chunks = detected
    track_ids, events = run(chunks)
    crossings = [e for e in events if isinstance(e, LineEvent)]
    sampled = np.arange(0, 80, FPS // SAMPLE_FPS)
    expected = {}
    for a in ACTORS:  # ground truth: the sampled frame at which the true anchor first lies on the other side
        side = np.sign([anchor(clip.boxes[a.name][f])[0] - LINE_X for f in sampled])
        (k,) = np.flatnonzero(side[1:] != side[:-1]) + 1
        expected[a.name] = ("in" if side[k] > 0 else "out", int(sampled[k]))
    assert sorted(d for d, _ in expected.values()) == ["in", "out", "out"]
    assert len(crossings) == 3 and len({e.track_id for e in crossings}) == 3
    for e in crossings:
        name = min(expected, key=lambda n: abs(expected[n][1] - e.frame_index) + 100 * (expected[n][0] != e.direction))
        direction, frame = expected[name]
        assert e.direction == direction and abs(e.frame_index - frame) <= FPS // SAMPLE_FPS, (name, e)
    assert crossings[-1].in_counts == {"person": 1} and crossings[-1].out_counts == {"person": 2}


def test_dwell_in_the_zone_is_right_to_one_sampled_frame(detected: tuple[Clip, list[SourceFrames]]) -> None:
    clip, chunks = detected
    _, events = run(chunks)
    zone = [e for e in events if isinstance(e, ZoneEvent)]
    assert [(e.kind, e.reason) for e in zone] == [("entered", None), ("exited", "left")]
    x0, y0, x1, y1 = ZONE[0][0], ZONE[0][1], ZONE[2][0], ZONE[2][1]
    inside = [f for f in range(0, 80, FPS // SAMPLE_FPS)
              if x0 <= anchor(clip.boxes["c"][f])[0] <= x1 and y0 <= anchor(clip.boxes["c"][f])[1] <= y1]
    truth = (inside[-1] - inside[0]) / FPS
    assert truth == pytest.approx(5.2)
    assert zone[1].dwell_s == pytest.approx(truth, abs=1 / SAMPLE_FPS + 1e-9)
    assert abs(zone[0].frame_index - inside[0]) <= FPS // SAMPLE_FPS and zone[1].occupancy == 0


def test_resume_from_bytes_mid_clip_gives_the_same_events(detected: tuple[Clip, list[SourceFrames]]) -> None:
    _, chunks = detected
    ref_ids, ref_events = run(chunks)
    first = SourceStage("walkers", SPEC, frame_rate=SAMPLE_FPS)
    outs = [first.push(i, chunks[i]) for i in range(2)]
    second = SourceStage.from_bytes(first.to_bytes(), SPEC, frame_rate=SAMPLE_FPS)
    outs += [second.push(i, chunks[i]) for i in range(2, len(chunks))] + [second.end()]
    assert [e for o in outs for e in o.events] == ref_events
    assert all(np.array_equal(a, b) for a, b in zip([c.track_ids for o in outs for c in o.chunks], ref_ids,
                                                      strict=True))
