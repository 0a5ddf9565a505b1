"""Policy-domain classification of Chinese government reports.

Python API (the CLI `policy-domains` is a thin layer over these):

    import pipeline
    model = pipeline.load_model()                          # the model `dvc repro` trained
    pipeline.classify_texts(["加快推进长江生态保护修复。"], model)
    sentences, summary = pipeline.classify_reports(["data/samples"], model)
"""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["load_model", "classify_texts", "classify_reports"]


def __getattr__(name: str):
    # Imported lazily so that `import pipeline` stays cheap for the CLI's --help.
    if name in __all__:
        from pipeline import classify

        return getattr(classify, name)
    raise AttributeError(name)
