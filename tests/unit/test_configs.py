"""Every shipped config loads, and its model section builds through the registry (no weights are read)."""

from __future__ import annotations

import pytest

from operators.models.composite import CompositeModel
from operators.models.registry import create
from pipeline.spec import CONFIG_DIR, load_spec

CONFIGS = sorted(p.name for p in CONFIG_DIR.glob("*.yaml"))


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds_its_model(name: str) -> None:
    spec = load_spec([CONFIG_DIR / name], environ={})
    m = spec.model
    model = create(m.name, model_id=m.id, path=m.path, tasks=list(m.tasks), queries=list(spec.queries),
                   device=m.device, dtype=m.dtype, batch_size=m.batch_size, **dict(m.options))
    assert set(model.tasks) == set(m.tasks)
    if "ocr" in m.tasks and m.name != "rapidocr":
        assert isinstance(model, CompositeModel) and model.members[-1].family == "rapidocr"


def test_default_profile_reads_text_beside_centernet() -> None:
    spec = load_spec(environ={})
    assert spec.model.name == "centernet" and "ocr" in spec.model.tasks
    model = create("centernet", tasks=list(spec.model.tasks), **dict(spec.model.options))
    assert isinstance(model, CompositeModel) and model.input_size() == (544, 960)
    assert [type(x).__name__ for x in model.members] == ["CenterNetModel", "RapidOcrModel"]
