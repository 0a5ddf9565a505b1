"""What `classify` adds to the model's rows beyond the scores, and how it summarises them.

Every row gets the runners-up (`domain_2, score_2, domain_3, score_3`) and the multi-label
`domains` field ("primary|second|third": runners-up whose score reaches the threshold the train
stage chose on held-out data). On request it also gets a `confident` flag (`--min-confidence`),
the CAP major topic of its domain (`--cap`: `cap_code`, `cap_topic`) and its document's metadata
(document-table columns and `--meta` rows), the same columns in every row of a batch. Everything
here works from the `scores` the model gave, in the main process, so every engine that produces
rows with scores gets the same fields.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.crosswalk import Crosswalk, load_crosswalk
from pipeline.errors import IngestError, UsageError
from pipeline.heldout import HeldOut, read_heldout
from pipeline.io import text_series
from pipeline.metadata import MetadataTable, TableOptions, check_names, is_document_table, metadata_columns
from pipeline.multilabel import label_sets, ranked
from pipeline.shares import ShareSettings, Summary

RANKED_COLUMNS = ["domains", "domain_2", "score_2", "domain_3", "score_3"]


@dataclass(frozen=True)
class BatchOptions:
    """What a `classify` run asks for beyond per-unit domains (each None/False: not asked)."""

    documents: TableOptions | None = None        # read .jsonl/.csv/.parquet inputs as one document per row
    metadata: MetadataTable | None = None        # --meta: joined by document id or input file
    min_confidence: float | None = None          # flag rows below this confidence and report the coverage
    cap: bool = False                            # add CAP major topics to rows and summary
    shares: ShareSettings = field(default_factory=ShareSettings)

    def __post_init__(self) -> None:
        if self.min_confidence is not None and not 0 <= self.min_confidence <= 1:
            raise UsageError(f"--min-confidence {self.min_confidence}: a confidence is between 0 and 1")

    def reads_as_documents(self, path: Path) -> bool:
        return self.documents is not None and is_document_table(path)


def score_matrix(scores: pd.Series, ids: Sequence[str]) -> np.ndarray:
    """Rows' `scores` (the struct column `classify.predictions_frame` makes) as a units × ids matrix,
    read from the Arrow arrays (pandas' struct accessor costs ten times more)."""
    struct = pa.array(scores.array)  # one StructArray, as io writes it; flatten() respects a slice's offset
    children = dict(zip((f.name for f in struct.type), struct.flatten()))
    return np.column_stack([children[d].to_numpy(zero_copy_only=False) for d in ids]).astype(float)


class Enricher:
    """Finishes the rows of one batch and builds its summary; knows the batch's metadata columns."""

    def __init__(self, ids: Sequence[str], options: BatchOptions, heldout: HeldOut | None,
                 meta_columns: Sequence[str], where: str) -> None:
        self.ids = list(ids)
        self.options = options
        self.threshold = heldout.secondary_threshold if heldout else None
        self.confusion = heldout.aligned(self.ids, where) if heldout else None
        self.crosswalk: Crosswalk | None = load_crosswalk(self.ids) if options.cap else None
        self.meta_columns = list(meta_columns)

    @classmethod
    def build(cls, options: BatchOptions, ids: Sequence[str], paths: Iterable[Path], model_dir: str | Path | None,
              row_columns: Sequence[str]) -> "Enricher":
        """The batch's enricher: held-out record from `model_dir` (None: none), metadata columns from
        its document tables and metadata file, checked not to take the name of an output column."""
        columns: dict[str, None] = {}
        for path in paths:
            if options.reads_as_documents(path):
                try:
                    columns.update(dict.fromkeys(metadata_columns(path, options.documents)))
                except IngestError:
                    continue  # reported when the table itself is read
        if options.metadata is not None:
            columns.update(dict.fromkeys(options.metadata.columns))
        enricher = cls(ids, options, read_heldout(model_dir) if model_dir else None, [], str(model_dir))
        taken = set(row_columns) | set(RANKED_COLUMNS) | set(enricher.optional_columns) | \
            set(enricher.summary().frame().columns)
        check_names(columns, taken, str(options.metadata.path if options.metadata else "document table"))
        enricher.meta_columns = list(columns)
        return enricher

    @property
    def optional_columns(self) -> list[str]:
        """Row columns this batch adds on request, in output order."""
        return (["confident"] if self.options.min_confidence is not None else []) + \
            (["cap_code", "cap_topic"] if self.crosswalk is not None else [])

    def rows(self, chunk: pd.DataFrame, source: str) -> pd.DataFrame:
        """A chunk of one source's output rows with every added field (`source`: its input file)."""
        proba = score_matrix(chunk["scores"], self.ids)
        names, scores = ranked(proba, self.ids)
        out = chunk.assign(domains=text_series(label_sets(names, scores, self.threshold), chunk.index),
                           domain_2=text_series(names[:, 1], chunk.index), score_2=scores[:, 1],
                           domain_3=text_series(names[:, 2], chunk.index), score_3=scores[:, 2])
        if self.options.min_confidence is not None:
            out["confident"] = out["confidence"] >= self.options.min_confidence
        if self.crosswalk is not None:
            codes, topics = self.crosswalk.codes(), self.crosswalk.topics()
            out["cap_code"] = pd.array([codes[d] for d in out["domain"]], dtype="Int64")
            out["cap_topic"] = [topics[d] for d in out["domain"]]
        return self._with_metadata(out, source)

    def _with_metadata(self, out: pd.DataFrame, source: str) -> pd.DataFrame:
        """Every metadata column in every row (None where a document has no value)."""
        if not self.meta_columns:
            return out
        out = out.assign(**{c: out[c].astype(object) if c in out else None for c in self.meta_columns})
        if self.options.metadata is not None:
            for doc, index in out.groupby("doc", sort=False).groups.items():
                given = {c: out.at[index[0], c] for c in self.meta_columns}
                for column, value in self.options.metadata.lookup(str(doc), source, given).items():
                    out.loc[index, column] = value
        return out

    def summary(self) -> Summary:
        """The batch's per-document accumulator: shares, intervals, adjusted and CAP shares, metadata."""
        return Summary(self.ids, self.meta_columns, self.options.shares, self.confusion,
                       self.crosswalk.codes() if self.crosswalk is not None else None,
                       coverage=self.options.min_confidence is not None)

