from pathlib import Path

from pipeline.sources import expand_sources, redact, source_id_for


def test_files_dirs_globs_expand_in_order_without_repeats(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    for name in ["d/b.mp4", "d/a.mkv", "d/notes.txt", "c.avi"]:
        (tmp_path / name).write_bytes(b"x")
    items = [str(tmp_path / "c.avi"), str(tmp_path / "d"), str(tmp_path / "*.avi")]
    srcs = expand_sources(items)
    assert [Path(s.uri).name for s in srcs] == ["c.avi", "a.mkv", "b.mp4"]


def test_missing_path_is_kept_so_it_fails_visibly(tmp_path: Path) -> None:
    srcs = expand_sources([str(tmp_path / "missing.mp4"), str(tmp_path / "none-*.mp4")])
    assert len(srcs) == 2


def test_ids_are_stable_and_readable(tmp_path: Path) -> None:
    a = source_id_for(str(tmp_path / "bikes.mp4"))
    assert a == source_id_for(str(tmp_path / "." / "bikes.mp4"))
    assert a.startswith("bikes-") and len(a) == len("bikes-") + 8


def test_credentials_never_in_ids_or_display() -> None:
    uri = "rtsp://admin:hunter2@10.0.0.5:554/stream1"
    s = expand_sources([uri])[0]
    assert "hunter2" not in s.id and "hunter2" not in s.display
    assert redact("http://u:p@h/x.m3u8") == "http://***@h/x.m3u8"
    assert redact("/plain/file.mp4") == "/plain/file.mp4"
