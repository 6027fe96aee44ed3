from pathlib import Path

import pytest

from pipeline.spec import DEFAULT_CONFIG, ConfigError, PipelineSpec, load_spec


def write(p: Path, text: str) -> Path:
    p.write_text(text)
    return p


def test_default_config_loads() -> None:
    spec = load_spec([], environ={})
    assert spec.mode == "archive"
    assert spec.model.name == "centernet"
    assert spec.decode.fps == 2


def test_overlay_merges_over_default(tmp_path: Path) -> None:
    o = write(tmp_path / "o.yaml", "model:\n  batch_size: 3\ndecode:\n  fps: 5\n")
    spec = load_spec([o], environ={})
    assert spec.model.batch_size == 3 and spec.decode.fps == 5
    assert spec.model.name == "centernet"  # untouched keys keep the default


def test_options_are_replaced_not_merged(tmp_path: Path) -> None:
    o = write(tmp_path / "o.yaml", "model:\n  options: {a: 1}\n")
    assert load_spec([o], environ={}).model.options == {"a": 1}


def test_unknown_key_names_file_path_and_fix(tmp_path: Path) -> None:
    o = write(tmp_path / "bad.yaml", "model:\n  batchsize: 3\n")
    with pytest.raises(ConfigError) as ei:
        load_spec([o], environ={})
    msg = str(ei.value)
    assert "bad.yaml" in msg and "model.batchsize" in msg and "batch_size" in msg


def test_bad_value_names_file_and_key(tmp_path: Path) -> None:
    o = write(tmp_path / "bad.yaml", "decode:\n  fps: -1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: decode.fps"):
        load_spec([o], environ={})


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_spec([write(tmp_path / "x.yaml", "a: [1, 2\n")], environ={})
    with pytest.raises(ConfigError, match="not found"):
        load_spec([tmp_path / "missing.yaml"], environ={})
    with pytest.raises(ConfigError, match="mapping"):
        load_spec([write(tmp_path / "l.yaml", "- 1\n- 2\n")], environ={})


def test_env_overrides_win() -> None:
    env = {"FRAMEWIRE__MODEL__BATCH_SIZE": "4", "FRAMEWIRE_KAFKA_BOOTSTRAP": "k:9092",
           "FRAMEWIRE__QUERIES": "[a dog, a cat]"}
    spec = load_spec([], environ=env)
    assert spec.model.batch_size == 4
    assert spec.kafka.bootstrap_servers == "k:9092"
    assert spec.queries == ["a dog", "a cat"]


def test_bad_env_value_is_named() -> None:
    with pytest.raises(ConfigError, match="environment"):
        load_spec([], environ={"FRAMEWIRE__MODEL__BATCH_SIZE": "zero"})


def test_with_overrides_revalidates() -> None:
    spec = PipelineSpec()
    assert spec.with_overrides(**{"decode.fps": 4.0}).decode.fps == 4.0
    with pytest.raises(ConfigError):
        spec.with_overrides(**{"model.tasks": ["dance"]})


def test_every_shipped_config_is_valid() -> None:
    for cfg in sorted(DEFAULT_CONFIG.parent.glob("*.yaml")):
        load_spec([cfg], environ={})


def test_questions_and_the_ask_task() -> None:
    spec = PipelineSpec.model_validate({"questions": ["how many people are waiting?"],
                                        "model": {"name": "vlm", "tasks": ["caption", "ask"]}})
    assert spec.questions == ["how many people are waiting?"] and "ask" in spec.model.tasks
    assert PipelineSpec().questions == []
    with pytest.raises(ValueError):
        PipelineSpec.model_validate({"model": {"tasks": ["answer"]}})
