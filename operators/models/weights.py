"""Where model weights come from: a local directory, then the Hugging Face cache, then the hub."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ModelNotFoundError", "resolve_weights"]


class ModelNotFoundError(OSError):
    """No usable copy of a model's weights was found in any place searched."""


def _has_config(p: Path) -> bool:
    return p.is_dir() and (p / "config.json").is_file()


def resolve_weights(model_id: str, path: str | None = None, *, allow_hub: bool | None = None) -> str:
    """Return a local directory holding ``model_id``'s config and weights.

    Searched in order: ``path`` (``model.path`` in the config), ``model_id`` itself when
    it is a directory, the Hugging Face cache, and the hub (unless ``HF_HUB_OFFLINE=1``
    or ``allow_hub`` is False). Raises ModelNotFoundError naming every place searched.
    """
    searched: list[str] = []
    if path:
        p = Path(path).expanduser()
        if _has_config(p):
            return str(p)
        searched.append(f"model.path {p} ({'no config.json there' if p.exists() else 'does not exist'})")
    if model_id and _has_config(Path(model_id).expanduser()):
        return str(Path(model_id).expanduser())
    if model_id and "/" in model_id and not Path(model_id).is_absolute():
        try:
            from huggingface_hub import snapshot_download

            local = snapshot_download(model_id, local_files_only=True)
            if _has_config(Path(local)):
                return local
            searched.append(f"Hugging Face cache {os.environ.get('HF_HOME', '~/.cache/huggingface')} (incomplete copy)")
        except Exception:  # noqa: BLE001 - any miss in the cache means "not here"
            searched.append(f"Hugging Face cache {os.environ.get('HF_HOME', '~/.cache/huggingface')}")
        offline = os.environ.get("HF_HUB_OFFLINE", "0") in ("1", "true", "yes")
        hub_ok = allow_hub if allow_hub is not None else not offline
        if hub_ok:
            try:
                from huggingface_hub import snapshot_download

                return snapshot_download(model_id, etag_timeout=5)
            except Exception as exc:  # noqa: BLE001
                searched.append(f"the Hugging Face hub ({type(exc).__name__})")
        else:
            searched.append("the Hugging Face hub (skipped: offline)")
    elif model_id:
        searched.append(f"{model_id} (not a directory with config.json)")
    raise ModelNotFoundError(
        f"model {model_id or path!r} not found; searched: {'; '.join(searched) or 'nothing (no id or path given)'}. "
        f"On a machine with hub access run `framewire models fetch {model_id or 'ID'} --to DIR`, "
        "then set model.path: DIR in the config."
    )
