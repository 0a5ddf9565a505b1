"""Model: metrics on a hand-checked toy case, fit/predict over all ids, safe persistence."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.evaluate import lodo, metrics
from pipeline.model import DomainClassifier, ModelIntegrityError, build_estimator, load_model, save_model
from pipeline.taxonomy import domain_ids

PARAMS = {"classifier": "svm", "C": 4.0, "class_weight": "balanced", "char_ngram_min": 1, "char_ngram_max": 2,
          "char_features": 2 ** 14, "word_features": False, "heading_features": True, "calibration": "none",
          "seed": 0}

TOY = pd.DataFrame({
    "text": ["加强生态保护修复。", "治理大气污染。", "推进河湖治理与生态修复。", "发展先进制造业集群。",
             "壮大制造业产业链。", "培育新兴产业集群。", "各位代表：", "谢谢大家。", "现在报告工作。"] * 2,
    "primary": ["ecology"] * 3 + ["industry"] * 3 + ["other"] * 3 + ["ecology"] * 3 + ["industry"] * 3 + ["other"] * 3,
})
TOY["domains"] = TOY["primary"].map(lambda d: [d])
TOY["heading"] = ""
TOY["doc"] = ["a"] * 9 + ["b"] * 9
TOY["source"] = "annotation"
TOY["text_hash"] = [f"h{i}" for i in range(len(TOY))]


def test_metrics_hand_checked() -> None:
    gold = pd.Series(["ecology", "ecology", "industry", "other"])
    sets = pd.Series([["ecology"], ["ecology"], ["industry", "economy"], ["other"]])
    pred = np.array(["ecology", "industry", "economy", "other"])
    m = metrics(gold, sets, pred, domain_ids(), min_support=2)
    assert m["accuracy"] == 0.5 and m["lenient_accuracy"] == 0.75
    # per class F1: ecology 2*1*0.5/1.5=0.6667, industry 0, other 1 -> macro 0.5556
    assert m["macro_f1"] == pytest.approx(0.5556, abs=1e-4)
    assert m["macro_f1_supported"] == pytest.approx(0.6667, abs=1e-4)
    assert m["per_domain"]["ecology"]["recall"] == 0.5


def test_model_answers_over_all_ids() -> None:
    model = build_estimator(PARAMS).fit(TOY, TOY["primary"])
    proba = model.predict_proba(TOY.head(3))
    assert proba.shape == (3, len(domain_ids()))
    assert list(model.predict(TOY.head(1))) == ["ecology"]


def test_lodo_never_tests_on_training_documents() -> None:
    seen: list[set[str]] = []

    class Recording(DomainClassifier):
        def fit(self, units, y):
            seen.append(set(units["doc"]))
            return super().fit(units, y)

    oof = lodo(TOY, Recording(domains=tuple(domain_ids()), **{k: v for k, v in PARAMS.items()}), use_examples=False)
    assert seen == [{"b"}, {"a"}] and len(oof) == len(TOY)
    assert set(oof[oof["doc"] == "a"]["text_hash"]) == set(TOY[TOY["doc"] == "a"]["text_hash"])


def test_classifier_is_a_conventional_sklearn_estimator() -> None:
    from sklearn.base import clone

    model = build_estimator(PARAMS)
    assert model.get_params()["C"] == 4.0 and model.get_params()["domains"] == tuple(domain_ids())
    model.set_params(C=2.0, context_smoothing=0.0)
    copy = clone(model)
    assert copy.C == 2.0 and copy.context_smoothing == 0.0 and copy is not model
    # domains are an argument: a three-domain model answers over exactly those
    small = DomainClassifier(domains=("ecology", "industry", "other"), **PARAMS).fit(TOY, TOY["primary"])
    assert list(small.classes_) == ["ecology", "industry", "other"]
    assert small.predict_proba(TOY.head(2)).shape == (2, 3)


def test_unknown_train_param_is_a_clear_error() -> None:
    from pipeline.errors import UsageError

    with pytest.raises(UsageError, match="unknown key.*contxt_window"):
        build_estimator({**PARAMS, "contxt_window": 2})


def test_save_load_roundtrip_and_tamper(tmp_path: Path) -> None:
    model = build_estimator(PARAMS).fit(TOY, TOY["primary"])
    save_model(model, tmp_path)
    again = load_model(tmp_path)
    np.testing.assert_allclose(again.predict_proba(TOY), model.predict_proba(TOY))
    with open(tmp_path / "model.skops", "ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(ModelIntegrityError, match="checksum mismatch"):
        load_model(tmp_path)


@pytest.mark.parametrize("classifier", ["svm", "logreg", "cnb", "ensemble"])
def test_every_classifier_choice_saves_and_loads_within_the_trusted_types(tmp_path: Path, classifier: str) -> None:
    params = {**PARAMS, "classifier": classifier, "calibration": "sigmoid", "calibration_cv": 2}
    model = build_estimator(params).fit(TOY, TOY["primary"])
    save_model(model, tmp_path)
    np.testing.assert_allclose(load_model(tmp_path).predict_proba(TOY), model.predict_proba(TOY))
