"""The event contract: schema files match the code, published versions stay compatible, docs examples validate."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest

from pipeline.events import EVENT_TYPES, parse_event
from pipeline.events.schema import DOC, PUBLISHED_DIR, SCHEMA_DIR, breaking_changes, check, generate


def test_schema_files_and_docs_match_the_code() -> None:
    problems = check()
    assert problems == [], "\n".join(problems) + "\nrun `python -m pipeline.events.schema write` and commit"


def test_every_event_type_has_a_schema_file() -> None:
    assert {p.stem for p in SCHEMA_DIR.glob("*.json")} == set(EVENT_TYPES)


def test_published_versions_are_not_broken() -> None:
    current = generate()
    published = sorted(PUBLISHED_DIR.glob("*.json"))
    assert published, f"nothing published in {PUBLISHED_DIR}"
    for p in published:
        assert p.stem in current, f"event type {p.stem!r} was published in v1 and is gone"
        problems = breaking_changes(json.loads(p.read_text()), current[p.stem])
        assert problems == [], f"{p.stem}: breaking changes to a published schema: {problems}"


BASE = {
    "type": "object", "additionalProperties": False, "required": ["id", "state", "box"],
    "properties": {
        "id": {"type": "string"},
        "state": {"enum": ["a", "b"], "type": "string"},
        "score": {"anyOf": [{"type": "number"}, {"type": "null"}]},
        "count": {"type": "integer"},
        "box": {"$ref": "#/$defs/Box"},
    },
    "$defs": {"Box": {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}},
}


def changed(fn) -> dict:  # type: ignore[no-untyped-def,type-arg]
    new = copy.deepcopy(BASE)
    fn(new)
    return new


@pytest.mark.parametrize(("change", "expect"), [
    (lambda s: s["properties"].pop("score"), "$.score: removed"),
    (lambda s: s["properties"].__setitem__("id", {"type": "integer"}), "$.id: type"),
    (lambda s: s["properties"]["state"].__setitem__("enum", ["a"]), "$.state: enum lost"),
    (lambda s: s["properties"].__setitem__("score", {"type": "number"}), "$.score: type"),
    (lambda s: s["required"].append("count"), "$.count: now required"),
    (lambda s: s["$defs"]["Box"]["properties"].pop("label"), "$.box.label: removed"),
    (lambda s: s["properties"].__setitem__("id", {"const": "x"}), "$.id: values now restricted"),
])
def test_breaking_changes_are_caught(change, expect: str) -> None:  # type: ignore[no-untyped-def]
    problems = breaking_changes(BASE, changed(change))
    assert any(p.startswith(expect) for p in problems), problems


@pytest.mark.parametrize("change", [
    lambda s: s["properties"].__setitem__("extra", {"type": "string"}),  # new optional field
    lambda s: s["properties"]["state"].__setitem__("enum", ["a", "b", "c"]),  # wider enum
    lambda s: s["properties"].__setitem__("count", {"type": "number"}),  # int -> number
    lambda s: s["properties"].__setitem__("id", {"anyOf": [{"type": "string"}, {"type": "null"}]}),  # nullable
    lambda s: s.__setitem__("additionalProperties", True),
])
def test_additive_changes_are_allowed(change) -> None:  # type: ignore[no-untyped-def]
    assert breaking_changes(BASE, changed(change)) == []


def test_the_real_schema_flags_a_removed_field() -> None:
    cur = generate()["caption"]
    new = copy.deepcopy(cur)
    del new["properties"]["text"]
    assert "$.text: removed" in breaking_changes(cur, new)


def doc_examples() -> list[dict]:  # type: ignore[type-arg]
    text = Path(DOC).read_text()
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, flags=re.S)]


def test_every_docs_example_validates_and_parses() -> None:
    examples = doc_examples()
    assert {e["type"] for e in examples} == set(EVENT_TYPES), "docs/events.md needs one example per type"
    schemas = generate()
    for ex in examples:
        jsonschema.validate(ex, schemas[ex["type"]])
        assert parse_event(json.dumps(ex)).type == ex["type"]


def test_an_unknown_field_fails_validation() -> None:
    ex = next(e for e in doc_examples() if e["type"] == "caption")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**ex, "surprise": 1}, generate()["caption"])
