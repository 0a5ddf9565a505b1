"""Read `params.yaml` once and hand its sections to the stages.

Every stage takes plain dicts so that tests can pass their own settings without files.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PARAMS_FILE = PROJECT_ROOT / "params.yaml"


@lru_cache(maxsize=4)
def _load(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh) or {}


def load_params(path: str | Path | None = None) -> dict[str, Any]:
    """The whole params file as a dict (a fresh copy each call, so callers may mutate it)."""
    import copy

    return copy.deepcopy(_load(str(path or PARAMS_FILE)))


def section(name: str, path: str | Path | None = None) -> dict[str, Any]:
    """One section of the params file, e.g. ``section("segment")``."""
    return load_params(path).get(name, {})


def project_path(relative: str | Path) -> Path:
    """A path from params.yaml, resolved against the project root unless absolute."""
    p = Path(relative)
    return p if p.is_absolute() else PROJECT_ROOT / p
