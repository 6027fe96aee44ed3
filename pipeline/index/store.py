"""The LanceDB store behind search: one ``events`` row per event, image vectors apart, Kafka offsets in the rows.

Tables (a local directory or any URI LanceDB takes, e.g. ``s3://bucket/index``):

- ``events``: one row per event with its Kafka ``topic``/``partition``/``offset``, written by one
  ``merge_insert`` on ``event_id`` per batch. The rows and their offsets land in the same commit, so a
  crashed indexer resumes at ``max(offset) + 1`` per partition and a replay of a half-done batch
  inserts nothing twice (the key is the event's deterministic id).
- ``images_<dim>``: image embeddings (``embedding`` events) with their model id, one table per
  dimension (the dimension comes from the data); written before the events commit, also keyed by id.
- ``sources``: per source its uri and sampling step (the smallest pts step seen), for the moment gap rule.

Thumbnail JPEGs are stored in ``events.thumb_jpeg`` (at most ``thumbnails.max_bytes``, 16 KB by
default) rather than as a Kafka reference: topics expire after ``retention.ms`` and an index
outlives them; the row keeps the topic/partition/offset too.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pyarrow as pa

__all__ = ["TEXT_DIM", "IndexStore", "default_db", "sql_str"]

TEXT_DIM = 384  # all-MiniLM-L6-v2
EVENTS, SOURCES = "events", "sources"
_IMAGES = re.compile(r"^images_(\d+)$")

EVENTS_SCHEMA = pa.schema([
    ("event_id", pa.string()), ("type", pa.string()), ("source_id", pa.string()), ("source_uri", pa.string()),
    ("pts", pa.float64()), ("end_pts", pa.float64()), ("time", pa.float64()), ("run_id", pa.string()),
    ("model", pa.string()), ("labels", pa.list_(pa.string())), ("track_ids", pa.list_(pa.int64())),
    ("caption", pa.string()), ("ocr", pa.string()), ("query", pa.string()), ("matched", pa.bool_()),
    ("score", pa.float64()), ("text", pa.string()), ("text_vec", pa.list_(pa.float32(), TEXT_DIM)),
    ("thumb_jpeg", pa.binary()), ("raw", pa.string()),
    ("topic", pa.string()), ("partition", pa.int32()), ("offset", pa.int64()),
])
SOURCES_SCHEMA = pa.schema([("source_id", pa.string()), ("source_uri", pa.string()), ("step", pa.float64())])


def images_schema(dim: int) -> pa.Schema:
    return pa.schema([("event_id", pa.string()), ("source_id", pa.string()), ("pts", pa.float64()),
                      ("time", pa.float64()), ("model", pa.string()), ("vector", pa.list_(pa.float32(), dim))])


def default_db() -> str:
    """``$FRAMEWIRE_CACHE/index`` (default ``~/.cache/framewire/index``)."""
    return str(Path(os.environ.get("FRAMEWIRE_CACHE", str(Path.home() / ".cache" / "framewire"))) / "index")


def sql_str(value: str) -> str:
    """A SQL string literal for LanceDB filters.

    >>> sql_str("it's")
    "'it''s'"
    """
    return "'" + str(value).replace("'", "''") + "'"


def _is_missing(exc: Exception) -> bool:
    return isinstance(exc, (ValueError, FileNotFoundError)) or "not found" in str(exc).lower()


def _first_per_id(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out = []
    for r in rows:
        if r["event_id"] not in seen:
            seen.add(r["event_id"])
            out.append(r)
    return out


class IndexStore:
    """Open (or create on first write) the index at ``uri``."""

    def __init__(self, uri: str | Path | None = None, *, storage_options: dict[str, str] | None = None,
                 create: bool = True, read_consistency_s: float = 1.0) -> None:
        """``read_consistency_s``: how stale a long-lived reader (the API, search beside a running indexer)
        may be; tables re-check for new versions at most this often (0: on every read)."""
        from datetime import timedelta

        import lancedb

        self.uri = str(uri or default_db())
        if "://" not in self.uri:
            if not create and not Path(self.uri).exists():
                raise FileNotFoundError(f"no index at {self.uri}: run `framewire index` first (or pass --db PATH)")
            Path(self.uri).mkdir(parents=True, exist_ok=True)
        self.db = lancedb.connect(self.uri, storage_options=storage_options,
                                  read_consistency_interval=timedelta(seconds=read_consistency_s))
        self._tables: dict[str, Any] = {}

    # ---- tables ------------------------------------------------------------------------
    def names(self) -> list[str]:
        res = self.db.list_tables()
        return list(getattr(res, "tables", res))

    def table(self, name: str, schema: pa.Schema | None = None) -> Any:
        """The table ``name``; created with ``schema`` when missing (None when missing and no schema)."""
        if name in self._tables:
            return self._tables[name]
        try:
            t = self.db.open_table(name)
        except Exception as exc:  # noqa: BLE001 - lancedb raises ValueError or a Rust error for a missing table
            if not _is_missing(exc) or schema is None:
                if schema is None:
                    return None
                raise
            t = self.db.create_table(name, schema=schema, exist_ok=True)
        self._tables[name] = t
        return t

    @property
    def events(self) -> Any:
        return self.table(EVENTS, EVENTS_SCHEMA)

    def image_tables(self) -> dict[int, Any]:
        """``{dim: table}`` of every image-embedding table."""
        out = {}
        for n in self.names():
            m = _IMAGES.match(n)
            if m:
                out[int(m.group(1))] = self.table(n)
        return out

    # ---- writes ------------------------------------------------------------------------
    def write(self, rows: list[dict[str, Any]], images: list[dict[str, Any]] | None = None,
              sources: list[dict[str, Any]] | None = None) -> None:
        """Write one batch: side tables first, then the events rows with their offsets in one commit."""
        rows, images = _first_per_id(rows), _first_per_id(images or [])  # a replayed id within one batch
        by_dim: dict[int, list[dict[str, Any]]] = {}
        for r in images:
            by_dim.setdefault(len(r["vector"]), []).append(r)
        for dim, rs in by_dim.items():
            t = self.table(f"images_{dim}", images_schema(dim))
            t.merge_insert("event_id").when_not_matched_insert_all().execute(
                pa.Table.from_pylist(rs, schema=images_schema(dim)))
        if sources:
            t = self.table(SOURCES, SOURCES_SCHEMA)
            t.merge_insert("source_id").when_matched_update_all().when_not_matched_insert_all().execute(
                pa.Table.from_pylist(sources, schema=SOURCES_SCHEMA))
        if rows:
            self.events.merge_insert("event_id").when_not_matched_insert_all().execute(
                pa.Table.from_pylist(rows, schema=EVENTS_SCHEMA), on_bad_vectors="null")  # rows without text

    def ensure_indexes(self, *, vector_index: bool = False) -> None:
        """Full-text index on ``text`` and a scalar index on ``event_id`` (cheap; ``optimize`` folds new rows in).
        ``vector_index`` also trains IVF-PQ on ``text_vec``: minutes of CPU at 10^5 rows on two cores, so it is
        never built behind the indexer's back; without it vector search is an exact scan."""
        import warnings

        t = self.events
        have = [c for i in t.list_indices() for c in i.columns]
        n = t.count_rows()
        if n == 0:
            return
        with warnings.catch_warnings():  # the 0.40 spellings of these two warn but are the documented calls
            warnings.simplefilter("ignore")
            if "text" not in have:
                t.create_fts_index("text", use_tantivy=False, replace=True)
            if "event_id" not in have:  # merge_insert joins on it
                t.create_scalar_index("event_id", index_type="BTREE", replace=True)
        if vector_index:
            from lancedb.index import IvfPq

            with_vec = t.count_rows("text_vec IS NOT NULL")
            t.create_index("text_vec", config=IvfPq(distance_type="cosine", num_sub_vectors=48,
                                                    num_partitions=max(16, int(with_vec ** 0.5 / 4))), replace=True)

    def optimize(self) -> None:
        """Compact small fragments and bring indexes up to date with new rows."""
        for t in [self.events, *self.image_tables().values()]:
            t.optimize()

    # ---- reads -------------------------------------------------------------------------
    def rows(self, where: str | None = None, columns: list[str] | None = None,
             limit: int | None = None) -> list[dict[str, Any]]:
        """Rows of ``events`` matching the SQL filter ``where``."""
        t = self.table(EVENTS)
        if t is None:
            return []
        q = t.search()
        if where:
            q = q.where(where)
        if columns:
            q = q.select(columns)
        q = q.limit(limit if limit is not None else max(1, t.count_rows()))
        return q.to_arrow().to_pylist()  # type: ignore[no-any-return]

    def count(self, where: str | None = None) -> int:
        t = self.table(EVENTS)
        return 0 if t is None else int(t.count_rows(where) if where else t.count_rows())

    def next_offsets(self) -> dict[tuple[str, int], int]:
        """Per (topic, partition), the offset after the last event stored: where a restart resumes."""
        t = self.table(EVENTS)
        if t is None or t.count_rows() == 0:
            return {}
        tab = t.search().select(["topic", "partition", "offset"]).limit(t.count_rows()).to_arrow()
        out: dict[tuple[str, int], int] = {}
        grouped = tab.group_by(["topic", "partition"]).aggregate([("offset", "max")])
        for r in grouped.to_pylist():
            out[(r["topic"], int(r["partition"]))] = int(r["offset_max"]) + 1
        return out

    def sources(self) -> dict[str, dict[str, Any]]:
        t = self.table(SOURCES)
        if t is None:
            return {}
        return {r["source_id"]: r for r in t.search().limit(max(1, t.count_rows())).to_arrow().to_pylist()}

    def resolve_source(self, name: str) -> str:
        """A source id from its id, its name prefix (``bikes`` for ``bikes-90e82746``) or its uri."""
        known = self.sources()
        if name in known:
            return name
        hits = [s for s, r in known.items() if s.startswith(name + "-") or r["source_uri"] == name
                or Path(r["source_uri"]).name == name]
        if len(hits) == 1:
            return hits[0]
        if not hits:
            raise ValueError(f"source {name!r} is not in the index at {self.uri}; indexed sources: "
                             f"{sorted(known) or 'none (run framewire index first)'}")
        raise ValueError(f"source {name!r} is ambiguous: {sorted(hits)}; give the full source id")
