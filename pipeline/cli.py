"""`policy-domains`: a thin command line over the pipeline's Python API.

Each command parses arguments, calls one function of a stage module, prints what happened and
sets the exit code: 0 when everything succeeded, 1 when any input or check failed.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline import config

app = typer.Typer(help="Label every sentence of Chinese government reports with its policy domain.",
                  no_args_is_help=True, add_completion=False)
labels_app = typer.Typer(help="Validate, count and exchange the hand-made label files.", no_args_is_help=True)
app.add_typer(labels_app, name="labels")
out = Console(stderr=True)

Inputs = typer.Argument(..., help="Files or directories (searched recursively).")


def _fail(message: str) -> None:
    out.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=out,
                    disable=not out.is_terminal)


def _units(path: Optional[Path] = None):
    """The segmented corpus (the segment stage's output), segmenting on the fly if it is absent."""
    import pandas as pd

    from pipeline.segment import SegmentParams, segment_sources
    from pipeline.ingest import iter_paths, read_source

    paths = config.section("paths")
    target = path or config.project_path(paths["sentences"])
    if target.exists():
        return pd.read_parquet(target)
    seg = SegmentParams.from_dict(config.section("segment"))
    return segment_sources(read_source(p, heading_max_chars=seg.heading_max_chars)
                           for p in iter_paths([config.project_path(paths["corpus"])]))


# ---------------------------------------------------------------- segment

@app.command()
def segment(inputs: List[Path] = Inputs,
            out_path: Path = typer.Option(..., "--out", help="Output table: .jsonl, .csv or .parquet."),
            clause_units: Optional[bool] = typer.Option(None, help="Also cut at ；; (overrides params.yaml).")) -> None:
    """Cut reports into units (sentences and headings) with ids, hashes and headings."""
    import time

    from pipeline.ingest import IngestError, iter_paths, read_source
    from pipeline.io import TableWriter
    from pipeline.segment import SegmentParams, segment_source

    settings = config.section("segment")
    if clause_units is not None:
        settings["clause_units"] = clause_units
    seg = SegmentParams.from_dict(settings)
    paths = list(iter_paths(inputs))
    failed, total, start = 0, 0, time.perf_counter()
    with TableWriter(out_path) as writer, _progress() as bar:
        task = bar.add_task("segmenting", total=len(paths), rate="")
        for path in paths:
            try:
                units = segment_source(read_source(path, heading_max_chars=seg.heading_max_chars), seg)
                if units.empty:
                    raise IngestError(f"{path}: no sentences found")
                writer.write(units.drop(columns=["text_norm"]))
                total += len(units)
            except IngestError as exc:
                failed += 1
                out.print(f"[red]failed:[/red] {exc}")
            bar.update(task, advance=1, rate=f"{total / max(time.perf_counter() - start, 1e-9):,.0f} units/s")
    out.print(f"{total} units from {len(paths) - failed} file(s) → {out_path}"
              + (f"; [red]{failed} file(s) failed[/red]" if failed else ""))
    raise typer.Exit(1 if failed or not paths else 0)


# ---------------------------------------------------------------- labels

@labels_app.command("check")
def labels_check(labels_dir: Path = typer.Option(None, help="Default: paths.labels in params.yaml."),
                 sentences: Optional[Path] = typer.Option(None, help="Segmented corpus to check staleness against.")) -> None:
    """Validate every label file; each finding names file and line. Exit 1 on errors."""
    from pipeline import labels

    labels_dir = labels_dir or config.project_path(config.section("paths")["labels"])
    issues, merged = labels.check(labels_dir, _units(sentences))
    for issue in issues:
        colour = "red" if issue.level == "error" else "yellow"
        out.print(f"[{colour}]{issue}[/{colour}]", highlight=False, soft_wrap=True)
    errors = sum(i.level == "error" for i in issues)
    out.print(f"{len(merged)} labelled units; {errors} error(s), {len(issues) - errors} warning(s)")
    raise typer.Exit(1 if errors else 0)


@labels_app.command("stats")
def labels_stats(labels_dir: Path = typer.Option(None, help="Default: paths.labels in params.yaml."),
                 as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables.")) -> None:
    """Counts per domain, annotator and document; coverage; agreement and disagreements."""
    from pipeline import labels

    labels_dir = labels_dir or config.project_path(config.section("paths")["labels"])
    result = labels.stats(labels_dir, _units())
    agreement = result.pop("agreement")
    disagreements = agreement.pop("disagreements")
    if as_json:
        result["agreement"] = agreement
        result["agreement"]["disagreements"] = disagreements.to_dict(orient="records")
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return
    console = Console()
    table = Table("domain", "labelled units", "codebook examples", title="Per domain (primary)")
    for d, n in sorted(result["per_domain"].items(), key=lambda kv: -kv[1]):
        table.add_row(d, str(n), str(result["examples"]["per_domain"].get(d, 0)))
    console.print(table)
    console.print(f"per annotator: {result['per_annotator']}")
    console.print(f"per document: {result['per_document']}")
    console.print(f"examples: {result['examples']['rows']} rows by {result['examples']['per_author']}")
    if "coverage" in result:
        c = result["coverage"]
        console.print(f"coverage: {c['labelled']}/{c['units']} units of the corpus ({c['share']:.1%})")
    console.print(f"agreement on {agreement['units']} multiply-annotated units: Cohen's kappa {agreement['kappa']}, "
                  f"Krippendorff's alpha {agreement['alpha']}; pairs: {agreement['pairs']}")
    console.print(f"unresolved conflicts: {result['unresolved_conflicts']}")
    if len(disagreements):
        table = Table("sent_id", "labels", "text", title="Disagreements on the primary domain")
        for r in disagreements.itertuples():
            table.add_row(r.sent_id, r.labels, r.text[:60])
        console.print(table)


# ---------------------------------------------------------------- train / evaluate

@app.command()
def train(sentences: Optional[Path] = typer.Option(None, help="Segmented corpus (default: paths.sentences)."),
          model_dir: Optional[Path] = typer.Option(None, help="Default: paths.model_dir.")) -> None:
    """Fit the classifier on all labels, save it safely, and log the run to MLflow."""
    from pipeline import train as train_mod
    from pipeline import tracking

    params = config.load_params()
    model_dir = model_dir or config.project_path(params["paths"]["model_dir"])
    units = _units(sentences)
    try:
        _, card = train_mod.train(units, config.project_path(params["paths"]["labels"]), model_dir, params["train"])
    except ValueError as exc:
        _fail(str(exc))
    out.print(f"trained on {card['training_data']['labelled_units']} labelled units + "
              f"{card['training_data']['codebook_examples']} codebook examples → {model_dir}")
    run_info = {"run_id": None, "model_uri": None}

    def log() -> None:
        with tracking.mlflow_run(params["mlflow"], run_name="train") as run:
            import mlflow

            mlflow.log_params(tracking.flatten("", {"train": params["train"], "segment": params["segment"]}))
            mlflow.set_tags({"git_commit": card["git_commit"], "dvc_stage": "train"})
            mlflow.log_dict(card, "model_card.json")
            run_info.update(run_id=run.info.run_id, model_uri=tracking.log_model(model_dir, params["mlflow"]))

    tracking.soft("train", log, lambda m: out.print(f"[yellow]warning:[/yellow] {m}"))
    (model_dir / tracking.RUN_FILE).write_text(json.dumps(run_info, indent=2), encoding="utf-8")
    if run_info["run_id"]:
        out.print(f"MLflow run {run_info['run_id']} on {tracking.tracking_uri(params['mlflow'])}")


@app.command()
def evaluate(sentences: Optional[Path] = typer.Option(None, help="Segmented corpus (default: paths.sentences).")) -> None:
    """Leave-one-document-out evaluation, candidates, baselines, plots; logs to the train run."""
    from pipeline import evaluate as ev
    from pipeline import tracking, train as train_mod

    params = config.load_params()
    paths = params["paths"]
    table = train_mod.training_table(config.project_path(paths["labels"]), _units(sentences))
    result = ev.evaluate(table, params["train"], params["evaluate"], progress=lambda s: out.print(s))
    artifacts = ev.write_outputs(result, table, params, config.project_path(paths["eval_dir"]),
                                 config.project_path(paths["metrics"]), progress=lambda s: out.print(s))
    h = result["headline"]
    out.print(f"LODO {result['model']}: accuracy {h['accuracy']}, lenient {h['lenient_accuracy']}, "
              f"macro-F1 {h['macro_f1']} (supported domains {h['macro_f1_supported']})")
    model_dir = config.project_path(paths["model_dir"])
    run_file = model_dir / tracking.RUN_FILE
    run_info = json.loads(run_file.read_text()) if run_file.exists() else {}

    def log() -> None:
        import mlflow

        with tracking.mlflow_run(params["mlflow"], run_id=run_info.get("run_id"), run_name="evaluate"):
            mlflow.set_tags({"dvc_stage": "evaluate", "protocol": result["protocol"]})
            mlflow.log_metrics({k: v for k, v in h.items() if isinstance(v, (int, float))})
            mlflow.log_metrics({f"{d}.f1": m["f1"] for d, m in result["per_domain"].items()})
            for row in result["table"]:
                key = f"table.{row['model'].replace(' ', '_')}{'.examples' if row['examples'] else ''}"
                mlflow.log_metric(f"{key}.macro_f1", row["macro_f1"])
                mlflow.log_metric(f"{key}.accuracy", row["accuracy"])
            for path in artifacts:
                mlflow.log_artifact(str(path), "evaluation")
            threshold = float(params["mlflow"].get("register_min_macro_f1", 0.6))
            if run_info.get("model_uri") and h["macro_f1"] >= threshold and result["selection"]["shipped_beats_baselines"]:
                version = mlflow.register_model(run_info["model_uri"], params["mlflow"]["registered_model"])
                out.print(f"registered {version.name} version {version.version}")
            else:
                out.print(f"not registered: macro-F1 {h['macro_f1']} vs threshold {threshold}, "
                          f"beats baselines: {result['selection']['shipped_beats_baselines']}")

    tracking.soft("evaluate", log, lambda m: out.print(f"[yellow]warning:[/yellow] {m}"))


# ---------------------------------------------------------------- classify / report

@app.command()
def classify(inputs: List[Path] = Inputs,
             out_path: Path = typer.Option(..., "--out", help="Per-unit output: .jsonl, .csv or .parquet."),
             summary: Optional[Path] = typer.Option(None, help="Per-document domain shares (same formats)."),
             model: Optional[Path] = typer.Option(None, help="Model directory (default: the one dvc repro trained)."),
             jobs: int = typer.Option(1, min=1, help="Processes to spread documents over."),
             chunk_size: int = typer.Option(None, help="Units per written chunk (default: params.yaml).")) -> None:
    """Classify every sentence of the given reports; a bad file is reported and skipped."""
    import time

    from pipeline import classify as cl

    chunk = chunk_size or int(config.section("classify").get("chunk_size", 2000))
    start, done = time.perf_counter(), {"units": 0, "failed": 0, "files": 0}
    try:
        with _progress() as bar:
            task = bar.add_task("classifying", total=None, rate="")

            def on_file(result: cl.FileResult) -> None:
                done["files"] += 1
                done["units"] += result.units
                if not result.ok:
                    done["failed"] += 1
                    out.print(f"[red]failed:[/red] {result.error}")
                rate = done["units"] / max(time.perf_counter() - start, 1e-9)
                bar.update(task, advance=1, rate=f"{rate:,.0f} sentences/s")

            cl.run_batch(inputs, out_path, summary, model, jobs, chunk, on_file)
    except FileNotFoundError as exc:
        _fail(str(exc))
    elapsed = time.perf_counter() - start
    out.print(f"{done['units']} sentences from {done['files'] - done['failed']} file(s) in {elapsed:.1f}s → {out_path}"
              + (f", summary → {summary}" if summary else "")
              + (f"; [red]{done['failed']} file(s) failed[/red]" if done["failed"] else ""))
    raise typer.Exit(1 if done["failed"] or not done["files"] else 0)


@app.command()
def report(result: Path = typer.Argument(..., help="Output of `policy-domains classify`."),
           out_dir: Path = typer.Option(..., "--out", help="Folder for report.html and the PNG charts.")) -> None:
    """Self-contained HTML report and PNG charts of a classification result."""
    from pipeline.report import build_report

    try:
        paths = build_report(result, out_dir)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    out.print(f"report → {paths['html']} (charts: {', '.join(str(p.name) for k, p in paths.items() if k != 'html')})")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
