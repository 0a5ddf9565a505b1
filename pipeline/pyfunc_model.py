"""The model as MLflow serves it: a pyfunc logged as code ("models from code").

MLflow stores this file and runs it when the model is loaded, so no pickled Python object is ever
read back; the classifier itself comes from the logged model directory through
`pipeline.model.load_model`, which verifies its SHA-256 and its trusted types first.
"""
from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class PolicyDomainsPyfunc(PythonModel):
    """DataFrame with `text` (optional `heading`, and `doc` + `index` for document context)
    → `domain`, `confidence` and one `score_<id>` column per domain."""

    def load_context(self, context: Any) -> None:
        from pipeline.model import load_model

        self.model = load_model(context.artifacts["model_dir"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        units = pd.DataFrame(model_input).reset_index(drop=True)
        proba = self.model.predict_proba(units)
        ids = [str(c) for c in self.model.classes_]
        frame = pd.DataFrame(proba, columns=[f"score_{d}" for d in ids])
        frame.insert(0, "confidence", proba.max(axis=1))
        frame.insert(0, "domain", [ids[i] for i in proba.argmax(axis=1)])
        return frame


mlflow.models.set_model(PolicyDomainsPyfunc())
