import pytest

from operators.models.registry import create, family_names, get
from operators.models.weights import ModelNotFoundError, resolve_weights
from tests.support.fake_model import FAKE, FakeModel


def test_dotted_path_and_names() -> None:
    assert get(FAKE) is FakeModel
    assert "florence2" in family_names()
    with pytest.raises(ValueError, match="unknown model family"):
        get("nope")
    with pytest.raises(ValueError, match="cannot be imported"):
        get("nowhere.module:Thing")


def test_unsupported_task_is_refused() -> None:
    FakeModel.supported_tasks = ("detect",)
    try:
        with pytest.raises(ValueError, match="cannot run task"):
            create(FAKE, tasks=["caption"])
    finally:
        FakeModel.supported_tasks = ("caption", "detect", "query")


def test_missing_weights_error_names_places_and_fix(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelNotFoundError) as ei:
        resolve_weights("someorg/some-model", str(tmp_path / "nowhere"))
    msg = str(ei.value)
    assert "someorg/some-model" in msg and "nowhere" in msg and "framewire models fetch" in msg
    assert isinstance(ei.value, OSError)
