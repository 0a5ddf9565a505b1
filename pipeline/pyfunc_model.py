"""The model as MLflow serves it: a pyfunc logged as code ("models from code").

MLflow stores this file and runs it when the model is loaded, so no pickled Python object is ever
read back; the classifier itself comes from the logged model directory through
`pipeline.model.load_model`, which verifies its SHA-256 and its trusted types first.
"""
from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

#: Input columns: `text` is required; `doc` and `index` (together) give document context, as in the CLI.
INPUT_COLUMNS = {"text": "string", "doc": "string", "index": "long", "heading": "string"}


class PolicyDomainsPyfunc(PythonModel):
    """DataFrame of units → ``domain, confidence, domain_2, score_2, domain_3, score_3, score_<id>``.

    With `doc` and `index` each unit is read with its neighbours in the same document, exactly as
    `policy-domains classify` reads a report; without them each row is classified alone."""

    def load_context(self, context: Any) -> None:
        from pipeline.model import load_model

        self.model = load_model(context.artifacts["model_dir"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        from pipeline.classify import prediction_columns

        units = check_input(pd.DataFrame(model_input).reset_index(drop=True))
        if "index" in units and "doc" not in units:
            units = units.drop(columns=["index"])
        return prediction_columns(self.model, units).reset_index(drop=True)


def check_input(units: pd.DataFrame) -> pd.DataFrame:
    """Refuse what would otherwise come back as a confident `other`: no text column, a null or empty
    text, or `doc` without `index` (the order of a document's units)."""
    if "text" not in units:
        raise MlflowException("the input needs a 'text' column (optional: doc, index, heading)",
                              INVALID_PARAMETER_VALUE)
    text = units["text"]
    empty = text.isna() | (text.astype(str).str.strip() == "")
    if empty.any():
        rows = ", ".join(str(i) for i in empty[empty].index[:10])
        raise MlflowException(f"row(s) {rows}: 'text' is null or empty; send one sentence per row",
                              INVALID_PARAMETER_VALUE)
    if "doc" in units and "index" not in units:
        raise MlflowException("'doc' needs 'index' (the position of each unit in its document)",
                              INVALID_PARAMETER_VALUE)
    if "doc" in units and units["doc"].isna().any():
        raise MlflowException("'doc' is null in some rows; give every unit its document id", INVALID_PARAMETER_VALUE)
    return units


mlflow.models.set_model(PolicyDomainsPyfunc())
