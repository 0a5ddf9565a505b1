"""Find the project a command works on, read its `params.yaml` and hand the sections to the stages.

The project is the working directory's (DVC runs every stage from the repository root), so a copy
of the repository, or an experiment's workspace, reads and writes its own files even though the
package is installed from another checkout. Every stage takes plain dicts, so tests can pass their
own settings without files.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import UsageError

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def project_root() -> Path:
    """The nearest folder from the working directory up with params.yaml and dvc.yaml, else the checkout
    the package was installed from."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "params.yaml").is_file() and (folder / "dvc.yaml").is_file():
            return folder
    return PACKAGE_ROOT


@lru_cache(maxsize=4)
def _load(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise UsageError(f"{path}: {where}not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected sections such as 'paths:' and 'segment:', found {type(data).__name__}")
    return data


def load_params(path: str | Path | None = None) -> dict[str, Any]:
    """The whole params file as a dict (a fresh copy each call, so callers may mutate it)."""
    import copy

    return copy.deepcopy(_load(str(path or project_root() / "params.yaml")))


def section(name: str, path: str | Path | None = None) -> dict[str, Any]:
    """One section of the params file, e.g. ``section("segment")``."""
    return load_params(path).get(name, {})


def project_path(relative: str | Path) -> Path:
    """A path from params.yaml, resolved against the project root unless absolute."""
    p = Path(relative)
    return p if p.is_absolute() else project_root() / p
