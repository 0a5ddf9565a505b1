"""Segmentation of raw seed excerpts against units cut by hand (`tests/data/segmentation/`).

Each `NAME.txt` is a byte-for-byte excerpt of a raw seed report, debris included; `NAME.expected.txt`
holds the units a person cut from it by the boundary rules, one per line, with the debris dropped,
broken lines rejoined and tags removed. The expected files were written by reading the text, never
with the project's code, so these tests can fail.

Boundary metric: both unit lists are concatenated with all whitespace removed; a boundary is the
offset in that string where one unit ends and the next begins (the document's end is not counted).
Precision, recall and F1 compare the two sets of offsets, summed over all excerpts. The offsets are
only comparable when the two concatenations are equal, which a separate test asserts per excerpt
(it is also the check that debris was removed and nothing else was).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.ingest import read_source
from pipeline.segment import segment_document

GOLD = Path(__file__).parent / "data" / "segmentation"
EXCERPTS = sorted(p.name.removesuffix(".txt") for p in GOLD.glob("*.txt") if not p.name.endswith(".expected.txt"))
_SPACE = re.compile(r"\s+")


def _squash(text: str) -> str:
    return _SPACE.sub("", text)


def _units(name: str) -> tuple[list[str], list[str]]:
    """(expected units, units the pipeline cuts) for one excerpt."""
    lines = (GOLD / f"{name}.expected.txt").read_text(encoding="utf-8").splitlines()
    expected = [line for line in lines if line.strip()]
    actual = list(segment_document(read_source(GOLD / f"{name}.txt"))["text"])
    return expected, actual


def _cuts(units: list[str]) -> dict[int, str]:
    """Boundary offset in the whitespace-free concatenation → the unit ending there (for messages)."""
    cuts, pos = {}, 0
    for unit in units[:-1]:
        pos += len(_squash(unit))
        cuts[pos] = unit
    return cuts


def test_gold_standard_is_large_and_varied_enough() -> None:
    units = sum(len(_units(name)[0]) for name in EXCERPTS)
    seeds = {name.split("_")[0] for name in EXCERPTS}
    assert units >= 150 and len(seeds) >= 3


@pytest.mark.parametrize("name", EXCERPTS)
def test_cleaned_text_matches_the_gold(name: str) -> None:
    expected, actual = _units(name)
    want, got = _squash("".join(expected)), _squash("".join(actual))
    if want != got:
        at = next((i for i, (a, b) in enumerate(zip(want, got)) if a != b), min(len(want), len(got)))
        context = slice(max(at - 20, 0), at + 30)
        pytest.fail(f"{name}: texts differ at offset {at}: expected …{want[context]}… got …{got[context]}…")


def test_boundary_f1_against_the_gold() -> None:
    true_pos = false_pos = false_neg = 0
    for name in EXCERPTS:
        expected, actual = _units(name)
        want, got = _cuts(expected), _cuts(actual)
        true_pos += len(want.keys() & got.keys())
        for offset in sorted(got.keys() - want.keys()):
            false_pos += 1
            print(f"{name}: spurious cut after …{got[offset][-25:]}")
        for offset in sorted(want.keys() - got.keys()):
            false_neg += 1
            print(f"{name}: missed cut after …{want[offset][-25:]}")
    precision = true_pos / max(true_pos + false_pos, 1)
    recall = true_pos / max(true_pos + false_neg, 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-9)
    print(f"boundaries: {true_pos} matched, {false_pos} spurious, {false_neg} missed; "
          f"P {precision:.4f} R {recall:.4f} F1 {f1:.4f}")
    assert f1 >= 0.98
