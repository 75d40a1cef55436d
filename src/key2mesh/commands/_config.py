"""Reading ``--config`` files (JSON, or YAML when PyYAML is installed) for training commands."""

from __future__ import annotations

import json
from pathlib import Path

from key2mesh.errors import Key2MeshError


def read_config(path: str | None) -> dict:
    if not path:
        return {}
    p = Path(path)
    if not p.is_file():
        raise Key2MeshError(f"config file {p} does not exist")
    text = p.read_text()
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # noqa: BLE001
        raise Key2MeshError(f"cannot parse config {p}: {exc}".splitlines()[0]) from exc
    if not isinstance(data, dict):
        raise Key2MeshError(f"config {p} must hold a mapping of options")
    return data
