"""The Comparative Agendas Project (CAP) crosswalk: each of the 17 domain ids → one CAP major topic,
with how well it fits, kept as data in `labels/cap_crosswalk.csv`.

International agenda research codes policy attention in CAP's major topics; this crosswalk lets
results be put beside theirs. It is lossy, and says where: `fit` is `exact` (the scopes coincide),
`partial` (the id's main content is that topic, parts of it belong to others: the `note` names
them) or `none` (no CAP counterpart: `party`, and `other`, which has no policy content). A domain
maps to one topic only, so CAP topics that the taxonomy folds into a wider domain (Energy 8,
Transportation 10, Foreign Trade 18, Public Lands 21, Civil Rights 2, Immigration 9) get no units
of their own.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from pipeline.config import project_root
from pipeline.errors import LabelError

# CAP master codebook major topics (short names).
CAP_TOPICS = {
    1: "Macroeconomics", 2: "Civil Rights", 3: "Health", 4: "Agriculture", 5: "Labor", 6: "Education",
    7: "Environment", 8: "Energy", 9: "Immigration", 10: "Transportation", 12: "Law and Crime",
    13: "Social Welfare", 14: "Housing", 15: "Domestic Commerce", 16: "Defense", 17: "Technology",
    18: "Foreign Trade", 19: "International Affairs", 20: "Government Operations", 21: "Public Lands",
    23: "Culture",
}
FITS = ("exact", "partial", "none")
COLUMNS = ("id", "cap_code", "cap_topic", "fit", "note")


@dataclass(frozen=True)
class CapLink:
    """One domain id's CAP major topic (None where it has none), fit and note."""

    id: str
    cap_code: int | None
    cap_topic: str
    fit: str
    note: str


@dataclass(frozen=True)
class Crosswalk:
    links: dict[str, CapLink]

    def codes(self) -> dict[str, int | None]:
        """Domain id → CAP code (None: no counterpart)."""
        return {d: link.cap_code for d, link in self.links.items()}

    def topics(self) -> dict[str, str]:
        return {d: link.cap_topic for d, link in self.links.items()}


def default_path() -> Path:
    return project_root() / "labels" / "cap_crosswalk.csv"


def load_crosswalk(ids: Sequence[str], path: str | Path | None = None) -> Crosswalk:
    """Read and check the crosswalk: every id of `ids` exactly once, known CAP codes with their
    official topic names, `fit` one of exact/partial/none (none exactly when there is no code).
    Every problem raises a LabelError naming the file and line."""
    path = Path(path) if path else default_path()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise LabelError(f"{path}: cannot read the CAP crosswalk ({exc.strerror})") from exc
    reader = csv.DictReader(text.splitlines())
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise LabelError(f"{path}:1: missing column(s) {', '.join(missing)} (expected {', '.join(COLUMNS)})")
    links: dict[str, CapLink] = {}
    first_line: dict[str, int] = {}
    for line, row in enumerate(reader, 2):
        link = _link(row, f"{path}:{line}", ids)
        if link.id in links:
            raise LabelError(f"{path}:{line}: id '{link.id}' appears again (first at line {first_line[link.id]}); "
                             "each id maps to exactly one CAP topic")
        links[link.id], first_line[link.id] = link, line
    absent = [d for d in ids if d not in links]
    if absent:
        raise LabelError(f"{path}: no row for id(s) {', '.join(absent)}; every domain id needs one "
                         "(fit 'none' with an empty cap_code where CAP has no counterpart)")
    return Crosswalk({d: links[d] for d in ids})


def _link(row: dict[str, str | None], where: str, ids: Sequence[str]) -> CapLink:
    value = {c: (row.get(c) or "").strip() for c in COLUMNS}
    if value["id"] not in ids:
        raise LabelError(f"{where}: unknown domain id '{value['id']}' (ids: {', '.join(ids)})")
    if value["fit"] not in FITS:
        raise LabelError(f"{where}: fit '{value['fit']}' is not one of {', '.join(FITS)}")
    if not value["cap_code"]:
        if value["fit"] != "none" or value["cap_topic"]:
            raise LabelError(f"{where}: an empty cap_code needs fit 'none' and an empty cap_topic")
        return CapLink(value["id"], None, "", "none", value["note"])
    try:
        code = int(value["cap_code"])
    except ValueError:
        code = -1
    if code not in CAP_TOPICS:
        raise LabelError(f"{where}: '{value['cap_code']}' is not a CAP major topic code "
                         f"({', '.join(map(str, CAP_TOPICS))})")
    if value["cap_topic"].lower() != CAP_TOPICS[code].lower():
        raise LabelError(f"{where}: CAP {code} is '{CAP_TOPICS[code]}', not '{value['cap_topic']}'")
    if value["fit"] == "none":
        raise LabelError(f"{where}: fit 'none' but a cap_code is given")
    return CapLink(value["id"], code, CAP_TOPICS[code], value["fit"], value["note"])
