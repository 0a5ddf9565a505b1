"""The 17 policy-domain ids, loaded from `labels/taxonomy.yaml` so that they live in one place."""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from pipeline.config import project_root
from pipeline.errors import UsageError


@dataclass(frozen=True)
class Domain:
    id: str
    zh: str
    en: str
    scope: str
    boundary: str


def taxonomy_path() -> Path:
    return project_root() / "labels" / "taxonomy.yaml"


@lru_cache(maxsize=2)
def load_taxonomy(path: str | None = None) -> tuple[Domain, ...]:
    """The domains in their fixed order (the order of the model's score columns)."""
    path = path or str(taxonomy_path())
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
        domains = tuple(
            Domain(str(d["id"]), d["zh"], d["en"], d.get("scope", ""), d.get("boundary", ""))
            for d in data["domains"]
        )
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UsageError(f"{path}: cannot read the taxonomy ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    except (KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"{path}: every entry under 'domains:' needs id, zh and en ({type(exc).__name__}: {exc})") from None
    ids = [d.id for d in domains]
    if len(set(ids)) != len(ids):
        raise UsageError(f"{path}: duplicate domain ids")
    return domains


def domain_ids() -> list[str]:
    return [d.id for d in load_taxonomy()]


def zh_names() -> dict[str, str]:
    return {d.id: d.zh for d in load_taxonomy()}


def suggest_id(unknown: str) -> str | None:
    """The closest known id to a misspelt one, for "did you mean" messages."""
    match = difflib.get_close_matches(unknown.strip().lower(), domain_ids(), n=1, cutoff=0.5)
    return match[0] if match else None
