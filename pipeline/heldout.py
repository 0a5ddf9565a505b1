"""What the leave-one-document-out run taught about the shipped model, saved beside it as
`heldout.json` so that `classify` can use it: the confusion counts (for adjusted shares) and the
threshold for secondary domains (for the multi-label `domains` field).

The train stage writes it with the model; it holds no timestamp, so the same labels and params
give the same bytes. A model trained on fewer than two annotated documents has no held-out run and
no such file: its rows then carry the primary domain only and its summary no adjusted shares.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pipeline.errors import ModelError
from pipeline.io import write_text

HELDOUT_FILE = "heldout.json"


@dataclass(frozen=True)
class HeldOut:
    """Confusion counts ``C[true, pred]`` over `domains` (the model's score order), the secondary-domain
    threshold, and the figures that justify them."""

    domains: tuple[str, ...]
    confusion: np.ndarray
    secondary_threshold: float | None
    figures: dict[str, Any]

    def to_json(self) -> str:
        """Deterministic JSON; the confusion counts one gold domain a line (non-zero cells only)."""
        head = json.dumps({"protocol": "leave-one-document-out over annotated real text", "domains": list(self.domains),
                           "secondary_threshold": self.secondary_threshold, "figures": self.figures},
                          ensure_ascii=False, indent=2)
        rows = ",\n".join(f'    "{gold}": ' + json.dumps({p: int(n) for p, n in zip(self.domains, row) if n})
                          for gold, row in zip(self.domains, self.confusion))
        return head[:-2] + ',\n  "confusion_true_by_predicted": {\n' + rows + "\n  }\n}\n"

    def aligned(self, ids: Sequence[str], where: str) -> np.ndarray:
        """The confusion counts in the order `ids` (a model's classes); a model whose ids differ
        from those it was measured with cannot use them."""
        if sorted(ids) != sorted(self.domains):
            raise ModelError(f"{where}: {HELDOUT_FILE} describes domains {sorted(self.domains)}, the model has "
                             f"{sorted(ids)}; retrain (dvc repro) so that they match")
        order = [self.domains.index(d) for d in ids]
        return self.confusion[np.ix_(order, order)]


def write_heldout(heldout: HeldOut, model_dir: str | Path) -> Path:
    path = Path(model_dir) / HELDOUT_FILE
    write_text(path, heldout.to_json())
    return path


def read_heldout(model_dir: str | Path) -> HeldOut | None:
    """The model directory's held-out record, or None when the model has none."""
    path = Path(model_dir)
    path = (path if path.is_dir() else path.parent) / HELDOUT_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        domains = tuple(str(d) for d in data["domains"])
        cells = data["confusion_true_by_predicted"]
        confusion = np.array([[float(cells.get(g, {}).get(p, 0)) for p in domains] for g in domains])
        threshold = data.get("secondary_threshold")
        unknown = sorted(set(cells) - set(domains))
        if unknown:
            raise KeyError(f"confusion rows for unknown domains {unknown}")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(f"{path}: not a readable held-out record ({exc}); retrain with `dvc repro`") from exc
    return HeldOut(domains, confusion, None if threshold is None else float(threshold), data.get("figures", {}))
