"""JSON Schema of every event type, generated from ``pipeline/events/contract.py``, and the rules that keep
a published version compatible.

``schemas/v1/<type>.json`` is what the code produces now (a test fails when they drift);
``schemas/published/v1/<type>.json`` is what has been released to subscribers (a test fails
when the code breaks it). Within a version only additive changes are allowed: new optional
fields, new event types, wider enums. Anything else needs schema_version 2.

    python -m pipeline.events.schema write    # regenerate schemas/v1 and the field tables in docs/events.md
    python -m pipeline.events.schema check    # exit 1 when files and code differ
    python -m pipeline.events.schema publish  # freeze schemas/v1 as schemas/published/v1 (on release)
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from pipeline.events import EVENT_TYPES, SCHEMA_VERSION

__all__ = ["breaking_changes", "generate", "render_tables", "write", "check"]

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_DIR = ROOT / "schemas" / f"v{SCHEMA_VERSION}"
PUBLISHED_DIR = ROOT / "schemas" / "published" / f"v{SCHEMA_VERSION}"
DOC = ROOT / "docs" / "events.md"
BEGIN, END = "<!-- BEGIN GENERATED FIELDS -->", "<!-- END GENERATED FIELDS -->"


def generate() -> dict[str, dict[str, Any]]:
    """``{type: JSON Schema}`` for every event type (draft 2020-12, what the JSON on the topic holds)."""
    out = {}
    for etype, model in sorted(EVENT_TYPES.items()):
        s = model.model_json_schema(mode="serialization")
        out[etype] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://framewire.dev/schemas/v{SCHEMA_VERSION}/{etype}.json",
            "x-cloudevents-type": f"io.framewire.{etype}.v{SCHEMA_VERSION}",
            **s,
        }
    return out


def _dump(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


# ---- compatibility ---------------------------------------------------------------------------
def _resolve(node: Any, root: dict[str, Any]) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            return node
        cur: Any = root
        for part in ref[2:].split("/"):
            cur = cur[part]
        node = {**cur, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _types(node: Any, root: dict[str, Any]) -> set[str]:
    """The JSON types a (resolved) schema node admits; ``any`` when it does not say."""
    node = _resolve(node, root)
    if not isinstance(node, dict):
        return {"any"}
    if "anyOf" in node or "oneOf" in node:
        out: set[str] = set()
        for sub in node.get("anyOf", []) + node.get("oneOf", []):
            out |= _types(sub, root)
        return out
    if "const" in node:
        c = node["const"]
        return {"null" if c is None else "boolean" if isinstance(c, bool) else "integer" if isinstance(c, int)
                else "number" if isinstance(c, float) else "string" if isinstance(c, str)
                else "array" if isinstance(c, list) else "object"}
    t = node.get("type")
    if t is None:
        return {"object"} if "properties" in node else {"any"}
    return set(t) if isinstance(t, list) else {t}


def _enum(node: Any, root: dict[str, Any]) -> set[Any] | None:
    node = _resolve(node, root)
    if not isinstance(node, dict):
        return None
    if "enum" in node:
        return set(map(json.dumps, node["enum"]))
    if "const" in node:
        return {json.dumps(node["const"])}
    subs = node.get("anyOf", []) + node.get("oneOf", [])
    if subs:
        vals: set[Any] = set()
        for sub in subs:
            e = _enum(sub, root)
            if e is None:
                return None
            vals |= e
        return vals
    return None


def _compare(old: Any, new: Any, old_root: dict[str, Any], new_root: dict[str, Any], path: str,
             out: list[str]) -> None:
    old, new = _resolve(old, old_root), _resolve(new, new_root)
    if not isinstance(old, dict) or not isinstance(new, dict):
        return
    ot, nt = _types(old, old_root), _types(new, new_root)
    if "any" not in nt and not ot <= nt:
        widened_int = ot - nt == {"integer"} and "number" in nt
        if not widened_int:
            out.append(f"{path}: type {sorted(ot)} became {sorted(nt)}")
            return
    oe, ne = _enum(old, old_root), _enum(new, new_root)
    if oe is not None:
        if ne is None:
            pass  # the enum was lifted: wider
        elif not oe <= ne:
            out.append(f"{path}: enum lost {sorted(oe - ne)}")
    elif ne is not None and "any" not in ot:
        out.append(f"{path}: values now restricted to {sorted(ne)}")
    if "object" in ot:
        oprops, nprops = old.get("properties", {}), new.get("properties", {})
        for name, sub in oprops.items():
            if name not in nprops:
                out.append(f"{path}.{name}: removed")
            else:
                _compare(sub, nprops[name], old_root, new_root, f"{path}.{name}", out)
        newly_required = set(new.get("required", [])) - set(old.get("required", [])) - (set(nprops) - set(oprops))
        for name in sorted(newly_required):
            out.append(f"{path}.{name}: now required")
        if old.get("additionalProperties", True) is not False and new.get("additionalProperties", True) is False:
            out.append(f"{path}: additionalProperties tightened to false")
    if "array" in ot and "items" in old and "items" in new:
        _compare(old["items"], new["items"], old_root, new_root, f"{path}[]", out)
    if isinstance(old.get("prefixItems"), list) and isinstance(new.get("prefixItems"), list):
        if len(new["prefixItems"]) != len(old["prefixItems"]):
            out.append(f"{path}: tuple length {len(old['prefixItems'])} became {len(new['prefixItems'])}")
        for i, (a, b) in enumerate(zip(old["prefixItems"], new["prefixItems"], strict=False)):
            _compare(a, b, old_root, new_root, f"{path}[{i}]", out)


def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What in ``new`` would break a subscriber written against ``old``; empty when compatible.

    Breaking: a property removed, retyped or narrowed, an enum value or const changed or
    dropped, a property newly required, additionalProperties tightened. Not breaking: new
    optional properties, wider enums, int -> number.

    >>> old = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    >>> breaking_changes(old, {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
    ...                         "required": ["a"]})
    []
    >>> breaking_changes(old, {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]})
    ["$.a: type ['string'] became ['integer']"]
    """
    out: list[str] = []
    _compare(old, new, old, new, "$", out)
    return out


# ---- docs ------------------------------------------------------------------------------------
def _type_label(node: Any, root: dict[str, Any]) -> str:
    node = _resolve(node, root)
    if not isinstance(node, dict):
        return "any"
    if "const" in node:
        return f"`{json.dumps(node['const'])}`"
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    subs = node.get("anyOf", [])
    if subs:
        return " or ".join(_type_label(s, root) for s in subs)
    t = node.get("type", "any")
    if t == "array":
        if "prefixItems" in node:
            return f"array[{len(node['prefixItems'])}] of " + _type_label(node["prefixItems"][0], root)
        return "array of " + _type_label(node.get("items", {}), root)
    if t == "object" and "title" in node and "properties" in node:
        return f"object ({node['title']})"
    return str(t)


def render_tables(schemas: dict[str, dict[str, Any]] | None = None) -> str:
    """Markdown tables of every event type's fields (the generated part of docs/events.md)."""
    schemas = schemas or generate()
    lines: list[str] = []
    for etype, s in schemas.items():
        lines += [f"### `{etype}` ({s['x-cloudevents-type']})", ""]
        if s.get("description"):
            lines += [" ".join(s["description"].split()), ""]
        lines += ["| field | type | required | description |", "|---|---|---|---|"]
        req = set(s.get("required", []))
        for name, prop in s["properties"].items():
            desc = " ".join(str(_resolve(prop, s).get("description", prop.get("description", ""))).split())
            lines.append(f"| `{name}` | {_type_label(prop, s)} | {'yes' if name in req else 'no'} | {desc} |")
        for dname, d in sorted(s.get("$defs", {}).items()):
            lines += ["", f"`{dname}`: " + ", ".join(
                f"`{n}` ({_type_label(p, s)})" for n, p in d.get("properties", {}).items())]
        lines.append("")
    return "\n".join(lines)


def _doc_with_tables(text: str, tables: str) -> str:
    if BEGIN not in text or END not in text:
        raise ValueError(f"{DOC} lacks the {BEGIN} / {END} markers")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n\n{tables}\n{END}{tail}"


# ---- files -----------------------------------------------------------------------------------
def write() -> list[Path]:
    """Regenerate schemas/v1 (removing stale files) and the tables in docs/events.md."""
    schemas = generate()
    SCHEMA_DIR.mkdir(parents=True, exist_ok=True)
    written = []
    for etype, s in schemas.items():
        p = SCHEMA_DIR / f"{etype}.json"
        p.write_text(_dump(s))
        written.append(p)
    for stale in set(SCHEMA_DIR.glob("*.json")) - set(written):
        stale.unlink()
    if DOC.exists():
        DOC.write_text(_doc_with_tables(DOC.read_text(), render_tables(schemas)))
        written.append(DOC)
    return written


def check() -> list[str]:
    """Differences between the code and the files; empty when in sync."""
    problems = []
    schemas = generate()
    for etype, s in schemas.items():
        p = SCHEMA_DIR / f"{etype}.json"
        if not p.exists():
            problems.append(f"{p} is missing")
        elif p.read_text() != _dump(s):
            problems.append(f"{p} differs from pipeline/events/contract.py")
    for p in SCHEMA_DIR.glob("*.json"):
        if p.stem not in schemas:
            problems.append(f"{p} has no event type in pipeline/events/contract.py")
    if DOC.exists() and DOC.read_text() != _doc_with_tables(DOC.read_text(), render_tables(schemas)):
        problems.append(f"the field tables in {DOC} are out of date")
    return problems


def main(argv: list[str]) -> int:
    cmd = argv[0] if argv else "check"
    if cmd == "write":
        for p in write():
            print(p.relative_to(ROOT))
        return 0
    if cmd == "check":
        problems = check()
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print("run `python -m pipeline.events.schema write` and commit the result", file=sys.stderr)
        return 1 if problems else 0
    if cmd == "publish":
        shutil.rmtree(PUBLISHED_DIR, ignore_errors=True)
        shutil.copytree(SCHEMA_DIR, PUBLISHED_DIR)
        print(f"published {SCHEMA_DIR.relative_to(ROOT)} as {PUBLISHED_DIR.relative_to(ROOT)}")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
