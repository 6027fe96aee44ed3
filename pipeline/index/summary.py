"""Summaries of a source: a timeline of what happened, from the index, and optionally a paragraph.

The timeline comes from window summaries, tracks, zone and line crossings, query intervals, OCR
text and status changes where the index has them; a source with no window events gets windows
built from its detections and captions (``window_s`` seconds each) and label appearance spans.
``TIMELINE`` is the one table that turns an event type into an entry. ``write_paragraph`` feeds the
timeline to any causal LM on a local path (``AutoModelForCausalLM``); without one the timeline is it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.index.store import IndexStore, sql_str

__all__ = ["Entry", "Summary", "TIMELINE", "summarize", "write_paragraph"]


@dataclass
class Entry:
    pts: float
    end_pts: float | None
    kind: str
    text: str
    data: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        if self.pts != self.pts:  # NaN: not tied to a frame (status changes)
            span = "-"
        else:
            span = f"{self.pts:7.2f}s" + (f"-{self.end_pts:.2f}s" if self.end_pts is not None else "")
        return f"{span:>17}  {self.kind:<8} {self.text}"


@dataclass
class Summary:
    source_id: str
    source_uri: str
    entries: list[Entry]
    paragraph: str | None = None
    derived: bool = False  # True when windows were built from detections/captions (no window events)

    def to_dict(self) -> dict[str, Any]:
        return {"source_id": self.source_id, "source_uri": self.source_uri, "derived_windows": self.derived,
                "paragraph": self.paragraph, "timeline": [asdict(e) for e in self.entries]}

    def text(self) -> str:
        head = f"{self.source_id} ({self.source_uri}): {len(self.entries)} entries"
        body = "\n".join(e.line() for e in self.entries)
        return head + "\n" + body + (f"\n\n{self.paragraph}" if self.paragraph else "")


def _counts(counts: dict[str, Any]) -> str:
    return ", ".join(f"{n} {lbl}" for lbl, n in sorted(counts.items(), key=lambda kv: -kv[1]) if n) or "nothing"


def _window(ev: dict[str, Any]) -> Entry:
    """A window event (``pipeline.events.WindowEvent``): counts per class {max, mean, tracks}."""
    raw = ev.get("counts") or {}
    peak = {lb: int(c.get("max", 0)) if isinstance(c, dict) else int(c) for lb, c in raw.items()}
    uniq = {lb: int(c.get("tracks", 0)) for lb, c in raw.items() if isinstance(c, dict) and c.get("tracks")}
    uniq = uniq or (ev.get("unique_tracks") or {})
    text = "at most " + _counts(peak) + (f" ({_counts(uniq)} distinct)" if uniq else "")
    for name, (n_in, n_out) in (ev.get("lines") or {}).items():
        text += f"; line {name}: {n_in} in, {n_out} out"
    if ev.get("caption"):
        text += f"; {ev['caption']}"
    return Entry(ev.get("start", ev.get("start_pts", ev.get("pts", 0.0))), ev.get("end", ev.get("end_pts")),
                 "window", text)


def _track(ev: dict[str, Any]) -> Entry:
    who = f"{ev.get('label', 'object')} #{ev.get('track_id')}"
    if ev.get("kind") == "ended":
        first, last = ev.get("first_pts"), ev.get("last_pts", ev.get("pts"))
        dur = f" after {last - first:.1f}s" if first is not None and last is not None else ""
        return Entry(last if last is not None else 0.0, None, "track", f"{who} left{dur}")
    return Entry(ev.get("first_pts", ev.get("pts", 0.0)), None, "track", f"{who} appeared")


def _zone(ev: dict[str, Any]) -> Entry:
    verb = {"entered": "entered", "exited": "left"}.get(str(ev.get("kind")), str(ev.get("kind")))
    dwell = f" after {ev['dwell_s']:.1f}s" if ev.get("dwell_s") is not None and verb == "left" else ""
    return Entry(ev.get("pts", 0.0), None, "zone", f"#{ev.get('track_id')} {verb} zone {ev.get('zone')}{dwell}")


def _line(ev: dict[str, Any]) -> Entry:
    return Entry(ev.get("pts", 0.0), None, "line",
                 f"#{ev.get('track_id')} crossed line {ev.get('line')} {ev.get('direction', '')}".rstrip())


def _query_match(ev: dict[str, Any]) -> Entry | None:
    if ev.get("state") != "ended":
        return None  # the ended edge carries the whole interval
    return Entry(ev.get("started_pts", ev.get("pts", 0.0)), ev.get("pts"), "query", f"matched {ev.get('query')!r}")


def _ocr(ev: dict[str, Any]) -> Entry | None:
    text = " / ".join(str(line.get("text", "")) for line in ev.get("lines") or [] if line.get("text"))
    return Entry(ev.get("pts", 0.0), None, "text", f"reads {text!r}") if text else None


def _status(ev: dict[str, Any]) -> Entry | None:
    if ev.get("state") not in ("started", "ended", "failed", "stalled", "reconnecting"):
        return None
    return Entry(float("nan"), None, "status", f"{ev['state']}" + (f": {ev['detail']}" if ev.get("detail") else ""),
                 {"time": ev.get("emitted_at")})


# event type -> entry (None: nothing to say). The lead adjusts field names here on merge.
TIMELINE: dict[str, Callable[[dict[str, Any]], Entry | None]] = {
    "window": _window, "track": _track, "zone": _zone, "line": _line, "query_match": _query_match,
    "ocr": _ocr, "status": _status,
}


def _derived(rows: list[dict[str, Any]], window_s: float) -> list[Entry]:
    """Windows, label spans and query intervals from per-frame detections, captions and query answers."""
    dets = sorted((r for r in rows if r["type"] == "detections" and r["pts"] is not None), key=lambda r: r["pts"])
    caps = {round(r["pts"], 3): r["caption"] for r in rows if r["type"] == "caption" and r["caption"]}
    out: list[Entry] = []
    windows: dict[int, list[dict[str, Any]]] = {}
    for r in dets:
        windows.setdefault(int(r["pts"] // window_s), []).append(r)
    for w, frs in sorted(windows.items()):
        peak: Counter[str] = Counter()
        for r in frs:
            for lbl, n in Counter(b["label"] for b in json.loads(r["raw"]).get("detections") or []).items():
                peak[lbl] = max(peak[lbl], n)
        cap = Counter(caps[round(r["pts"], 3)] for r in frs if round(r["pts"], 3) in caps).most_common(1)
        text = f"up to {_counts(dict(peak))} in a frame" + (f"; mostly {cap[0][0]!r}" if cap else "")
        out.append(Entry(w * window_s, (w + 1) * window_s, "window", text, {"frames": len(frs),
                                                                           "counts": dict(peak)}))
    out += _spans([(r["pts"], set(r["labels"])) for r in dets], "seen", "label")
    qs: dict[str, list[tuple[float, set[str]]]] = {}
    for r in rows:
        if r["type"] == "query" and r["pts"] is not None:
            qs.setdefault(r["query"], []).append((r["pts"], {r["query"]} if r["matched"] else set()))
    for seq in qs.values():
        out += _spans(sorted(seq, key=lambda x: x[0]), "matched", "query")
    return out


def _spans(frames: list[tuple[float, set[str]]], verb: str, kind: str) -> list[Entry]:
    """Runs of consecutive frames in which each name is present."""
    out: list[Entry] = []
    open_: dict[str, list[float]] = {}
    for pts, names in frames:
        for n in names:
            if n in open_:
                open_[n][1] = pts
            else:
                open_[n] = [pts, pts]
        for n in [n for n in open_ if n not in names]:
            a, b = open_.pop(n)
            out.append(Entry(a, b, kind, f"{verb} {n!r}"))
    out += [Entry(a, b, kind, f"{verb} {n!r}") for n, (a, b) in open_.items()]
    return out


def summarize(store: IndexStore, source: str, *, since: float | None = None, until: float | None = None,
              window_s: float = 10.0, llm_path: str | None = None, max_new_tokens: int = 120) -> Summary:
    """The timeline of ``source`` (an id, name prefix or uri) in the index, with a paragraph when
    ``llm_path`` names a local causal LM."""
    sid = store.resolve_source(source)
    where = [f"source_id = {sql_str(sid)}"]
    if since is not None:
        where.append(f"time >= {float(since)!r}")
    if until is not None:
        where.append(f"time <= {float(until)!r}")
    rows = store.rows(" AND ".join(where), ["type", "pts", "time", "labels", "caption", "query", "matched", "raw"])
    entries: list[Entry] = []
    for r in rows:
        fn = TIMELINE.get(r["type"])
        if fn is not None:
            e = fn(json.loads(r["raw"]))
            if e is not None:
                entries.append(e)
    derived = not any(r["type"] == "window" for r in rows)
    if derived:
        have = {e.kind for e in entries}
        entries += [e for e in _derived(rows, window_s) if not (e.kind == "query" and "query" in have)]
    timed = sorted((e for e in entries if e.pts == e.pts), key=lambda e: (e.pts, e.kind))
    status = [e for e in entries if e.pts != e.pts]
    s = Summary(sid, store.sources()[sid]["source_uri"], timed + status, derived=derived)
    if llm_path:
        s.paragraph = write_paragraph(s, llm_path, max_new_tokens=max_new_tokens)
    return s


def write_paragraph(summary: Summary, path: str, *, max_new_tokens: int = 120) -> str:
    """A written paragraph from the timeline by the causal LM at ``path`` (greedy decoding, CPU)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path).eval()
    except (OSError, ValueError) as exc:
        raise OSError(f"cannot load a text-generation model from {path} ({exc}); give a local directory "
                      "holding a causal LM (config.json, weights, tokenizer), or leave --llm out") from exc
    prompt = ("Timeline of " + summary.source_id + ":\n" + "\n".join(e.line().strip() for e in summary.entries)
              + "\nSummary:")
    limit = int(getattr(model.config, "max_position_embeddings", 0) or getattr(model.config, "n_positions", 1024))
    ids = tok(prompt, return_tensors="pt").input_ids[:, -max(1, limit - max_new_tokens):]
    with torch.inference_mode():
        gen = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=tok.pad_token_id if tok.pad_token_id is not None
                             else tok.eos_token_id)
    return str(tok.decode(gen[0, ids.shape[1]:], skip_special_tokens=True)).strip()
