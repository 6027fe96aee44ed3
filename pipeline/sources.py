"""Sources: what the user names (files, directories, globs, URLs) expanded into a stable list.

A source id is stable across runs (name plus a short hash of the resolved location) so
events, keys and checkpoints of one input line up run after run.
"""

from __future__ import annotations

import glob
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Source", "expand_sources", "redact"]

VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mts", ".flv", ".mpg", ".mpeg", ".wmv"}
_CRED = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")


def redact(uri: str) -> str:
    """Drop credentials from a URL so it can go into logs and events.

    >>> redact("rtsp://admin:secret@10.0.0.5:554/stream1")
    'rtsp://***@10.0.0.5:554/stream1'
    """
    return _CRED.sub(r"\g<scheme>***@", uri)


@dataclass(frozen=True)
class Source:
    id: str
    uri: str  # what is opened (may hold credentials; never log it)

    @property
    def display(self) -> str:
        return redact(self.uri)

    @property
    def is_live(self) -> bool:
        return "://" in self.uri or self.uri.startswith("/dev/video")


def source_id_for(location: str) -> str:
    """``<name>-<8 hex>``: readable and stable for the same resolved location."""
    if "://" in location:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", redact(location).split("://", 1)[1].split("@")[-1])[:40]
        key = redact(location)
    else:
        p = Path(location).expanduser().resolve()
        name, key = p.stem, str(p)
    return f"{name}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def expand_sources(items: list[str]) -> list[Source]:
    """Expand files, directories (recursively, video extensions) and globs; keep order, drop repeats.

    A path that matches nothing is kept as a source so that it fails visibly as a
    "file not found" error event rather than vanishing.
    """
    out: list[Source] = []
    seen: set[str] = set()

    def add(loc: str) -> None:
        sid = source_id_for(loc)
        if sid not in seen:
            seen.add(sid)
            out.append(Source(sid, loc))

    for item in items:
        if "://" in item or item.startswith("/dev/video"):
            add(item)
            continue
        p = Path(item).expanduser()
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS:
                    add(str(f))
        elif any(ch in item for ch in "*?["):
            matches = sorted(glob.glob(str(p), recursive=True))
            if not matches:
                add(item)
            for m in matches:
                if Path(m).is_file():
                    add(m)
        else:
            add(str(p))
    return out
