# Two entry points for a newcomer (see README): `make run` and `make test`.
# Both create .venv on first use and reinstall only when pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SAMPLE_OUT := outputs

.PHONY: run test install repro classify-sample clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python 3.10+ is required")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e '.[dev]' \
	  || $(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## make run: install, retrain and re-evaluate from the label files (dvc repro), classify the samples
run: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
	@echo
	@$(BIN)/python -c 'import json; h = json.load(open("metrics.json")); print("Held-out (leave-one-document-out): accuracy %(accuracy)s, lenient %(lenient_accuracy)s, macro-F1 %(macro_f1)s over %(units)s units" % h)'
	@echo
	@echo "Done. Per-sentence domains: $(SAMPLE_OUT)/samples.jsonl  summary: $(SAMPLE_OUT)/summary.csv"
	@echo "Report (open in a browser): $(SAMPLE_OUT)/report/report.html"
	@echo "Metrics: metrics.json (detail: reports/eval/)   plots: PATH=$(BIN):\$$PATH dvc plots show"
	@echo "Model comparison (minutes, on purpose): PATH=$(BIN):\$$PATH dvc repro experiments/dvc.yaml"
	@echo "MLflow: $(BIN)/mlflow ui --backend-store-uri sqlite:///experiments/mlflow.db   champion model: models:/policy-domains@champion"

## make test: install (with test extras) and run the test suite
test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache
