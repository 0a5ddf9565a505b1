"""The team-written codebook examples (labels/examples/*.csv) stay clean of real report text.

Three rules (labels/GUIDE.md §7), each a test that names `file:line` of every offending row:

1. no example shares a run of 16 or more consecutive characters with the reports corpus
   (`../shared/corpus/*.jsonl`, field `text`), compared on NFKC-normalised text with all whitespace
   removed, so that full- and half-width punctuation cannot hide a match. The corpus is not part of the
   repository: without it the test is skipped. Only this program reads the corpus; nothing from it is
   printed or written anywhere (a failure names the example row, the corpus file and the offset of the
   run in the example);
2. no example is a unit of the seed reports (`data/seeds`): same folded text, same `text_hash`;
3. no example is a shorter or longer version ("twin") of another example: the folded text of one,
   less its final punctuation, must not occur inside another's folded text, nor be extended by another
   that opens the same way and repeats it in order with words inserted (texts of at least
   `TWIN_MIN_CHARS` characters; see `twins`).
"""
from __future__ import annotations

import bisect
import csv
import io
import json
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path

import pytest

from pipeline.ingest import fold

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = ROOT / "labels" / "examples"
SEEDS_DIR = ROOT / "data" / "seeds"
CORPUS_DIR = ROOT.parent / "shared" / "corpus"
RUN = 16  # a shared run of this many characters counts as copied text
TWIN_MIN_CHARS = 15
TWIN_PREFIX = 8  # an extended twin opens the same way
TWIN_COVERAGE = 0.8
_WS = re.compile(r"\s+")
_FINAL_PUNCT = "。．.！!？?；;，,、：:…—-\"'”’」』）)]】》 "


# ---------------------------------------------------------------- shared helpers

@dataclass(frozen=True)
class ExampleRow:
    file: str
    line: int  # spreadsheet row: the header is line 1
    text: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def example_rows(folder: Path = EXAMPLES_DIR) -> list[ExampleRow]:
    """Every non-empty row of every example file, numbered like `labels check` numbers them."""
    rows = []
    for path in sorted(folder.glob("*.csv")):
        reader = csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig")))
        header = [h.strip() for h in next(reader, [])]
        if "text" not in header:
            continue
        col = header.index("text")
        for lineno, fields in enumerate(reader, 2):
            if len(fields) > col and fields[col].strip():
                rows.append(ExampleRow(path.name, lineno, fields[col].strip()))
    return rows


def squeeze(text: str) -> str:
    """NFKC form with every whitespace character removed: the form the corpus comparison uses."""
    return _WS.sub("", unicodedata.normalize("NFKC", text))


def corpus_runs(corpus_dir: Path = CORPUS_DIR, n: int = RUN) -> dict[str, set[int]]:
    """For each corpus file, the hashes of all its n-character substrings (of squeezed text).

    Hashes rather than the strings keep the index small (~1M ints for the 3.6 MB corpus). Python's
    string hash is stable within one process, which is all a lookup needs.
    """
    index: dict[str, set[int]] = {}
    for path in sorted(corpus_dir.glob("*.jsonl")):
        runs: set[int] = set()
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                text = squeeze(str(json.loads(line).get("text") or ""))
                runs.update(hash(text[i:i + n]) for i in range(len(text) - n + 1))
        index[path.name] = runs
    return index


def corpus_overlaps(rows: list[ExampleRow], index: dict[str, set[int]], n: int = RUN) -> list[str]:
    """`file:line` messages for rows sharing an n-character run with a corpus file."""
    found = []
    for row in rows:
        text = squeeze(row.text)
        for name, runs in index.items():
            hit = next((i for i in range(len(text) - n + 1) if hash(text[i:i + n]) in runs), None)
            if hit is not None:
                found.append(f"{row.where}: shares a {n}-character run with {name} "
                             f"(from character {hit} of the example)")
    return found


def seed_hashes(seeds_dir: Path = SEEDS_DIR) -> set[str]:
    """text_hash of every unit of the seed reports, segmented as `policy-domains segment` does."""
    from pipeline import config
    from pipeline.ingest import iter_paths, read_source
    from pipeline.segment import SegmentParams, segment_source

    seg = SegmentParams.from_dict(config.section("segment", ROOT / "params.yaml"))
    hashes: set[str] = set()
    for path in iter_paths([seeds_dir]):
        units = segment_source(read_source(path, heading_max_chars=seg.heading_max_chars), seg)
        hashes.update(units["text_hash"])
    return hashes


def seed_copies(rows: list[ExampleRow], hashes: set[str]) -> list[str]:
    from pipeline.segment import text_hash

    folded = fold([r.text for r in rows])
    return [f"{r.where}: same text as a unit of the seed reports (text_hash {text_hash(f)})"
            for r, f in zip(rows, folded) if text_hash(f) in hashes]


def twin_key(folded: str) -> str:
    """A folded text less its final punctuation and closing marks."""
    return folded.rstrip(_FINAL_PUNCT)


def _in_order_coverage(short: str, long: str) -> float:
    """Share of `short`'s characters that `long` repeats in the same order, in blocks of 3+ characters."""
    blocks = SequenceMatcher(None, short, long, autojunk=False).get_matching_blocks()
    return sum(b.size for b in blocks if b.size >= 3) / max(len(short), 1)


def twins(rows: list[ExampleRow], min_chars: int = TWIN_MIN_CHARS) -> list[tuple[ExampleRow, ExampleRow]]:
    """(shorter, longer) pairs of examples where one is a version of the other.

    A row is the shorter twin of another when its key (folded text less final punctuation, at least
    `min_chars` characters) either
    - occurs verbatim inside the other's folded text (it was cut out of it), or
    - is extended by the other: both open with the same `TWIN_PREFIX` characters, the other is at least
      as long, and at least `TWIN_COVERAGE` of the key recurs in the other in the same order (words were
      inserted, e.g. 各省应当适当调整… → 各省应当根据…新情况适当调整…).
    Rows with identical keys are reported once, the later row as the shorter one.
    """
    folded = fold([r.text for r in rows])
    keys = [twin_key(f) for f in folded]
    joined = "\x00".join(folded)
    starts, pos = [], 0
    for f in folded:
        starts.append(pos)
        pos += len(f) + 1
    found: dict[tuple[int, int], None] = {}
    for i, key in enumerate(keys):
        if len(key) < min_chars:
            continue
        at = joined.find(key)
        while at != -1:
            j = bisect.bisect_right(starts, at) - 1
            if j != i and (keys[j] != key or j < i):
                found[(i, j)] = None
            at = joined.find(key, at + 1)
    by_opening: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        if len(key) >= min_chars:
            by_opening[key[:TWIN_PREFIX]].append(i)
    for group in by_opening.values():
        for i in group:
            for j in group:
                if i == j or len(keys[j]) < len(keys[i]) or (len(keys[j]) == len(keys[i]) and j < i):
                    continue
                if (i, j) not in found and _in_order_coverage(keys[i], keys[j]) >= TWIN_COVERAGE:
                    found[(i, j)] = None
    return [(rows[i], rows[j]) for i, j in found]


# ---------------------------------------------------------------- the tests

def test_examples_share_no_16_char_run_with_the_corpus() -> None:
    if not CORPUS_DIR.is_dir() or not any(CORPUS_DIR.glob("*.jsonl")):
        pytest.skip(f"no reports corpus at {CORPUS_DIR} (../shared/corpus beside the checkout)")
    found = corpus_overlaps(example_rows(), corpus_runs())
    assert not found, (f"{len(found)} example row(s) share a run of {RUN}+ characters with the corpus; "
                       "drop or rewrite them:\n" + "\n".join(found))


def test_examples_are_not_seed_units() -> None:
    found = seed_copies(example_rows(), seed_hashes())
    assert not found, (f"{len(found)} example row(s) repeat a unit of the seed reports (GUIDE §7); "
                       "drop them:\n" + "\n".join(found))


def test_no_example_is_a_shorter_version_of_another() -> None:
    found = [f"{a.where}: its text (less final punctuation) is contained in {b.where}"
             for a, b in twins(example_rows())]
    assert not found, (f"{len(found)} example row(s) are twins of another example; keep the more "
                       "informative one:\n" + "\n".join(found))


def test_twin_and_overlap_helpers_on_made_up_rows() -> None:
    rows = [ExampleRow("x.csv", 2, "加快建设现代化产业体系，推动制造业高端化发展。"),
            ExampleRow("x.csv", 3, "加快建设现代化产业体系，推动制造业高端化发展，打造先进制造业集群。"),
            ExampleRow("y.csv", 2, "加强生态保护。"),  # too short to count
            ExampleRow("y.csv", 3, "加强生态保护和修复工作，持续改善城乡环境质量。"),
            ExampleRow("z.csv", 2, "各县要组织农民兴修小型水利，扩大灌溉面积。"),
            ExampleRow("z.csv", 3, "各县要组织农民兴修小型水利和田间渠系，扩大灌溉面积，做好防汛准备。"),
            ExampleRow("z.csv", 4, "各县要组织农民兴修道路桥梁，方便山区群众出行。")]  # same opening, not a twin
    assert [(a.where, b.where) for a, b in twins(rows)] == [("x.csv:2", "x.csv:3"), ("z.csv:2", "z.csv:3")]
    index = {"c.jsonl": {hash(squeeze("建设现代化产业体系, 推动制造业高端")[i:i + RUN]) for i in range(2)}}
    assert [m.split(": ")[0] for m in corpus_overlaps(rows, index)] == ["x.csv:2", "x.csv:3"]
