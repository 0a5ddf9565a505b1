"""`policy-domains`: a thin command line over the pipeline's Python API.

Each command parses arguments, calls one function of a stage module, prints what happened and
sets the exit code: 0 when everything succeeded, 1 when any input or check failed, 2 for a wrong
option. Errors a user can cause (`pipeline.errors.PolicyDomainsError`) and wrong options are caught
once, in `_Boundary`, and printed as one line; any other exception is a bug and keeps its
traceback. Every message is one line whatever the terminal width (or none). SIGTERM and SIGHUP
stop a command the way Ctrl-C does, so that no temporary file is left behind.

Commands that write a file the user names refuse to replace an existing one without `--force`,
and never write over one of their inputs. (DVC removes a stage's outputs before it runs the stage,
so the commands in dvc.yaml need no `--force`.)
"""
from __future__ import annotations

import json
import re
import signal
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperGroup

from pipeline import config
from pipeline.errors import PolicyDomainsError, UsageError

_UNWRAPPED = 100_000  # columns for output that goes to a file or a pipe: tables are never cut to 80


def _console(stderr: bool = False) -> Console:
    """A console whose messages are one line each whatever the terminal width: a wrapped path cannot
    be grepped or copied. Outside a terminal rich would also cut tables to 80 columns."""
    console = Console(stderr=stderr, soft_wrap=True, highlight=False)
    return console if console.is_terminal else Console(stderr=stderr, soft_wrap=True, highlight=False,
                                                       width=_UNWRAPPED)


out = _console(stderr=True)
try:  # recent typer vendors click: its usage errors are not click's classes
    from typer.exceptions import TyperException as _TyperError
except ImportError:  # pragma: no cover - typer that uses click itself
    _TyperError = click.ClickException
_USAGE_ERRORS = (click.ClickException, _TyperError)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _one_line(message: str) -> str:
    """A message that prints as one line: control characters (a newline in a file name) shown
    escaped, bytes of a file name that are not UTF-8 shown as \\x.. escapes."""
    message = _CONTROL.sub(lambda m: repr(m.group())[1:-1], message)
    return message.encode("utf-8", "backslashreplace").decode("utf-8")


def _p(value: object) -> str:
    """A path, file or document name inside a rich-markup message: shown as is, on one line."""
    return escape(_one_line(str(value)))


def _say(label: str, message: str) -> None:
    """One message line: ``label`` is rich markup (``[red]error:[/red]``), `message` is printed as is."""
    out.print(f"{label} {escape(_one_line(message))}")


class _Boundary(TyperGroup):
    """The one place user errors become a one-line message: exit code 1, or 2 for a wrong option."""

    def invoke(self, ctx: click.Context):  # noqa: ANN201 - click's signature
        try:
            return super().invoke(ctx)
        except PolicyDomainsError as exc:
            _say("[red]error:[/red]", str(exc))
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            _say("[red]error:[/red]", "stopped by SIGINT (Ctrl-C); outputs were left as they were")
            raise
        except _USAGE_ERRORS as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # a bare subcommand: click shows its help
                raise
            where = getattr(getattr(exc, "ctx", None), "command_path", None) or "policy-domains"
            _say("[red]error:[/red]", f"{exc.format_message()} (see `{where} --help`)")
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(cls=_Boundary, help="Label every sentence of Chinese government reports with its policy domain.",
                  no_args_is_help=True, add_completion=False)
labels_app = typer.Typer(help="Validate, count and exchange the hand-made label files.", no_args_is_help=True)
app.add_typer(labels_app, name="labels")

Inputs = typer.Argument(..., help="Files or directories (searched recursively).")


def _warn(message: str) -> None:
    _say("[yellow]warning:[/yellow]", message)


def _fail(message: str) -> None:
    _say("[red]error:[/red]", message)
    raise typer.Exit(1)


def _force_option() -> bool:
    return typer.Option(False, "--force", help="Replace existing output file(s).")


def _named_files(inputs: List[Path]) -> List[Path]:
    """The inputs named as files (not folders): an output may never be one of them."""
    return [p for p in inputs if not p.is_dir()]


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=out,
                    disable=not out.is_terminal)


def _segment_params():
    from pipeline.segment import SegmentParams

    return SegmentParams.from_dict(config.section("segment"))


def _units(path: Optional[Path] = None):
    """The segmented corpus (the segment stage's output), segmenting on the fly if it is absent."""
    from pipeline.io import read_table
    from pipeline.segment import units_from_paths

    paths = config.section("paths")
    target = path or config.project_path(paths["sentences"])
    if path or target.exists():
        units = read_table(target)
        if "text_hash" not in units:
            raise UsageError(f"{target}: not a segmented corpus (no text_hash column); write one with "
                             "`policy-domains segment` (or `dvc repro segment`)")
        return units
    return units_from_paths([config.project_path(paths["corpus"])], _segment_params())


# ---------------------------------------------------------------- segment

@app.command()
def segment(inputs: List[Path] = Inputs,
            out_path: Path = typer.Option(..., "--out", help="Output table: .jsonl, .csv or .parquet."),
            clause_units: Optional[bool] = typer.Option(None, help="Also cut at ；; (overrides params.yaml)."),
            force: bool = _force_option()) -> None:
    """Cut reports into units (sentences and headings) with ids, hashes and headings."""
    import dataclasses
    import time

    from pipeline.errors import IngestError
    from pipeline.ingest import iter_paths
    from pipeline.io import TableWriter, check_output, commit_all, table_format
    from pipeline.segment import units_from_path

    table_format(out_path)
    check_output(out_path, force, _named_files(inputs))
    seg = _segment_params()
    if clause_units is not None:
        seg = dataclasses.replace(seg, clause_units=clause_units)
    paths = list(iter_paths(inputs, exclude=[out_path]))
    failed, total, start = 0, 0, time.perf_counter()
    writer, ok = TableWriter(out_path), False
    try:
        with _progress() as bar:
            task = bar.add_task("segmenting", total=len(paths), rate="")
            for path in paths:
                try:
                    units = units_from_path(path, seg)
                    writer.write(units.drop(columns=["text_norm"]))
                    total += len(units)
                except IngestError as exc:
                    failed += 1
                    _say("[red]failed:[/red]", str(exc))
                bar.update(task, advance=1, rate=f"{total / max(time.perf_counter() - start, 1e-9):,.0f} units/s")
        ok = failed < len(paths)  # an output only when some file was segmented: an empty one looks like a result
    finally:
        commit_all([writer], ok)
    out.print(f"{total} units from {len(paths) - failed} file(s) → {_p(out_path)}"
              + (f"; [red]{failed} file(s) failed[/red]" if failed else ""))
    raise typer.Exit(1 if failed or not paths else 0)


# ---------------------------------------------------------------- labels

@labels_app.command("check")
def labels_check(labels_dir: Path = typer.Option(None, help="Default: paths.labels in params.yaml."),
                 sentences: Optional[Path] = typer.Option(None, help="Segmented corpus to check staleness against.")) -> None:
    """Validate every label file; each finding names file and line. Exit 1 on errors."""
    from pipeline import labels

    issues, merged = labels.check(_labels_dir(labels_dir), _units(sentences))
    errors = _print_issues(issues)
    out.print(f"{len(merged)} labelled units; {errors} error(s), {len(issues) - errors} warning(s)")
    raise typer.Exit(1 if errors else 0)


@labels_app.command("stats")
def labels_stats(labels_dir: Path = typer.Option(None, help="Default: paths.labels in params.yaml."),
                 as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables.")) -> None:
    """Counts per domain, annotator and document; coverage; agreement and disagreements."""
    from pipeline.agreement import stats

    result = stats(_labels_dir(labels_dir), _units())
    agreement = result.pop("agreement")
    disagreements = agreement.pop("disagreements")
    if as_json:
        result["agreement"] = agreement
        result["agreement"]["disagreements"] = disagreements.to_dict(orient="records")
        print(json.dumps(result, ensure_ascii=False, indent=2))
        return
    console = _console()
    table = Table("domain", "labelled units", "codebook examples", title="Per domain (primary)")
    for d, n in sorted(result["per_domain"].items(), key=lambda kv: -kv[1]):
        table.add_row(_p(d), str(n), str(result["examples"]["per_domain"].get(d, 0)))
    console.print(table)
    console.print(f"per annotator: {_p(result['per_annotator'])}")
    console.print(f"per document: {_p(result['per_document'])}")
    console.print(f"examples: {result['examples']['rows']} rows by {_p(result['examples']['per_author'])}")
    if "coverage" in result:
        c = result["coverage"]
        console.print(f"coverage: {c['labelled']}/{c['units']} units of the corpus ({c['share']:.1%})")
    if agreement["units"]:
        console.print(f"agreement on {agreement['units']} multiply-annotated units: Cohen's kappa {agreement['kappa']}, "
                      f"Krippendorff's alpha {agreement['alpha']} (primary domain); identical full label lists on "
                      f"{agreement['exact_label_agreement']:.1%} of them; pairs: {_p(agreement['pairs'])}")
    else:
        console.print("agreement: no unit is labelled by two annotators yet")
    console.print(f"unresolved conflicts: {result['unresolved_conflicts']}")
    if len(disagreements):
        table = Table("sent_id", "labels", "text", title="Disagreements on the primary domain")
        for r in disagreements.itertuples():
            table.add_row(_p(r.sent_id), _p(r.labels), _p(r.text[:60]))
        console.print(table)


# ---------------------------------------------------------------- train / evaluate

@app.command()
def train(sentences: Optional[Path] = typer.Option(None, help="Segmented corpus (default: paths.sentences)."),
          model_dir: Optional[Path] = typer.Option(None, help="Default: paths.model_dir.")) -> None:
    """Fit the classifier on all labels, measure it leave-one-document-out, save it safely, log to MLflow."""
    import time

    from pipeline import tracking
    from pipeline import train as train_mod
    from pipeline.evaluate import write_evaluation

    start = time.perf_counter()
    params = config.load_params()
    paths = params["paths"]
    model_dir = model_dir or config.project_path(paths["model_dir"])
    if model_dir.exists() and not model_dir.is_dir():
        _fail(f"{model_dir}: --model-dir is a file; the model is saved as a folder")
    trained = train_mod.train(_units(sentences), _labels_dir(None), model_dir, params["train"],
                              int(params["evaluate"]["min_support"]),
                              [float(t) for t in params["evaluate"]["secondary_threshold_grid"]])
    data = trained.card["training_data"]
    out.print(f"trained on {data['labelled_units']} labelled units + {data['codebook_examples']} codebook "
              f"examples → {_p(model_dir)}")
    evaluation, artifacts = trained.evaluation, []
    if evaluation is not None:
        artifacts = write_evaluation(evaluation, config.project_path(paths["eval_dir"]),
                                     config.project_path(paths["metrics"]))
        h = evaluation.headline
        out.print(f"held out (leave-one-document-out, {h['units']} units): accuracy {h['accuracy']}, lenient "
                  f"{h['lenient_accuracy']}, macro-F1 {h['macro_f1']} (domains with ≥10 units {h['macro_f1_supported']})")
        if "label_set_f1" in h:
            out.print(f"label sets: F1 {h['label_set_f1']} (secondary domains scoring ≥ "
                      f"{trained.card['metrics']['secondary_threshold']}); share error per report: raw "
                      f"{h['share_mae_raw']}, adjusted {h['share_mae_adjusted']} (mean absolute, policy shares)")
    logged = tracking.log_training(params, trained.card, evaluation.headline if evaluation else None,
                                   evaluation.scores["per_domain"] if evaluation else {},
                                   [a for a in artifacts if a.suffix != ".parquet"], model_dir, _warn, out.print)
    if logged.run_id:
        out.print(f"MLflow run {logged.run_id} ({tracking.run_name('train')}) on "
                  f"{tracking.tracking_uri(params['mlflow'])}")
    out.print(f"train took {time.perf_counter() - start:.1f}s")


@app.command("select-models")
def select_models(sentences: Optional[Path] = typer.Option(None, help="Segmented corpus (default: paths.sentences)."),
                  out_dir: Optional[Path] = typer.Option(None, "--out", help="Default: paths.selection_dir.")) -> None:
    """Model selection on the same folds: candidate classifiers, ablations, baselines, learning curve."""
    import time

    from pipeline import selection as sel
    from pipeline import tracking
    from pipeline.evaluate import evaluate as evaluate_lodo
    from pipeline.labels import training_table
    from pipeline.model import build_estimator

    if out_dir and out_dir.exists() and not out_dir.is_dir():
        _fail(f"{out_dir}: --out is a file; model selection writes a folder of tables and charts")
    start = time.perf_counter()
    params = config.load_params()
    train_params, eval_params = params["train"], params["evaluate"]
    table = training_table(_labels_dir(None), _units(sentences))
    out.print(f"LODO: {train_params['classifier']} (shipped)")
    shipped = evaluate_lodo(table, build_estimator(train_params), bool(train_params["use_examples"]),
                            int(eval_params["min_support"]))
    comparison = sel.compare_models(table, train_params, eval_params, shipped, progress=out.print)
    artifacts = sel.write_comparison(comparison, out_dir or config.project_path(params["paths"]["selection_dir"]))
    table_view = Table("model", "kind", "examples", "accuracy", "macro-F1", title="Leave-one-document-out")
    for row in comparison.rows:
        table_view.add_row(row["model"], row["kind"], "yes" if row["examples"] else "no", str(row["accuracy"]),
                           str(row["macro_f1"]))
    out.print(table_view)
    out.print(f"best by macro-F1: {comparison.selection['best_by_macro_f1']}; shipped beats the baselines: "
              f"{comparison.selection['shipped_beats_baselines']} → {_p(artifacts[0].parent)}")
    tracking.log_selection(params, comparison.rows, artifacts, _warn)
    out.print(f"select-models took {time.perf_counter() - start:.1f}s")


# ---------------------------------------------------------------- classify / report

@app.command()
def classify(inputs: List[Path] = Inputs,
             out_path: Path = typer.Option(..., "--out", help="Per-unit output: .jsonl, .csv or .parquet."),
             summary: Optional[Path] = typer.Option(None, help="Per-document domain shares (same formats)."),
             model: Optional[Path] = typer.Option(None, help="Model directory (default: the one dvc repro trained)."),
             jobs: Optional[int] = typer.Option(None, min=1, help="Processes to spread documents over "
                                                                  "(default: classify.jobs in params.yaml)."),
             chunk_size: Optional[int] = typer.Option(None, min=1, help="Units per written chunk "
                                                                       "(default: classify.chunk_size)."),
             engine: str = typer.Option("local", help="local (this process, or --jobs processes) or spark."),
             master: Optional[str] = typer.Option(None, help="Spark master, e.g. local[2] or spark://host:7077 "
                                                             "(default: spark-submit's or local[*])."),
             partition_by: Optional[str] = typer.Option(None, help="Spark engine: partition the Parquet output "
                                                                   "by this input column (e.g. year)."),
             documents: bool = typer.Option(False, "--documents", help="Read .jsonl/.csv/.parquet inputs as document "
                                                                       "tables: one whole report per row, every other "
                                                                       "column is metadata."),
             text_column: str = typer.Option("text", help="Document tables: the column holding the report text."),
             id_column: Optional[str] = typer.Option(None, help="Document tables: the column naming each document "
                                                                "(default: doc, else id, else FILE:ROW)."),
             meta: Optional[Path] = typer.Option(None, "--meta", help="Metadata file (.csv/.jsonl/.parquet): a doc "
                                                                      "(document id) or path (input file) column and "
                                                                      "any others (year, place, level, ...)."),
             min_confidence: Optional[float] = typer.Option(None, min=0.0, max=1.0, help="Flag units below this "
                                                            "confidence (column `confident`) and report the coverage "
                                                            "(default: classify.min_confidence)."),
             cap: bool = typer.Option(False, "--cap", help="Add the Comparative Agendas Project major topic to every "
                                                           "row and CAP shares to the summary."),
             force: bool = _force_option()) -> None:
    """Classify every sentence of the given reports; a bad file is reported and skipped."""
    import time

    from pipeline import classify as cl
    from pipeline.io import check_output, same_file, table_format
    from pipeline.enrich import BatchOptions
    from pipeline.metadata import MetadataTable, TableOptions
    from pipeline.shares import ShareSettings

    outputs = [(out_path, "--out")] + ([(summary, "--summary")] if summary else [])
    for path, _ in outputs:
        table_format(path)
    if summary and same_file(out_path, summary):
        _fail(f"{out_path}: --out and --summary name the same file; give the summary its own name")
    for path, option in outputs:
        check_output(path, force, _named_files(inputs), option, dataset=engine == "spark" and option == "--out")
    settings = config.section("classify")
    if not documents and (text_column != "text" or id_column):
        _fail("--text-column and --id-column apply to document tables: add --documents")
    threshold = min_confidence if min_confidence is not None else settings.get("min_confidence")
    options = BatchOptions(TableOptions(text_column, id_column) if documents else None,
                           MetadataTable(meta) if meta else None,
                           None if threshold is None else float(threshold), cap,
                           ShareSettings.from_dict(config.section("shares")))
    jobs = jobs or int(settings["jobs"])
    if documents and jobs > 1:
        _warn("--jobs applies to report files; the rows of document tables are classified in this process")
    unit = "document" if documents else "file"
    start, done = time.perf_counter(), {"units": 0, "failed": 0, "files": 0, "confident": 0}
    with _progress() as bar:
        task = bar.add_task("classifying", total=None, rate="")

        def on_file(result: cl.FileResult) -> None:
            done["files"] += 1
            done["units"] += result.units
            done["confident"] += result.confident
            if not result.ok:
                done["failed"] += 1
                _say("[red]failed:[/red]", result.error)
            if result.warning:
                _warn(result.warning)
            rate = done["units"] / max(time.perf_counter() - start, 1e-9)
            bar.update(task, advance=1, rate=f"{rate:,.0f} sentences/s")

        if engine == "spark":
            from pipeline import spark

            if documents or meta or options.min_confidence is not None or cap:
                _fail("--engine spark classifies report files and sentence tables as they are: --documents, --meta, "
                      "--min-confidence and --cap need the local engine (or pipeline.spark.classify_documents)")
            spark.run_batch(inputs, out_path, summary, model, master, _segment_params(), partition_by, on_file)
        elif engine == "local":
            cl.run_batch(inputs, out_path, summary, model, jobs, chunk_size or int(settings["chunk_size"]), on_file,
                         _segment_params(), options)
        else:
            _fail(f"--engine must be local or spark, not '{engine}'")
    elapsed = time.perf_counter() - start
    out.print(f"{done['units']} sentences from {done['files'] - done['failed']} {unit}(s) in {elapsed:.1f}s → "
              f"{_p(out_path)}" + (f", summary → {_p(summary)}" if summary else "")
              + (f"; [red]{done['failed']} {unit}(s) failed[/red]" if done["failed"] else ""))
    if options.min_confidence is not None and done["units"]:
        out.print(f"coverage: {done['confident'] / done['units']:.1%} of units have confidence ≥ "
                  f"{options.min_confidence} (the rest are flagged confident=false)")
    if options.metadata is not None:
        _print_warnings(options.metadata.warnings())
    raise typer.Exit(1 if done["failed"] or not done["files"] else 0)


def _print_warnings(messages: List[str], limit: int = 20) -> None:
    for message in messages[:limit]:
        _warn(escape(message))
    if len(messages) > limit:
        _warn(f"… and {len(messages) - limit} more")


@app.command()
def report(result: Path = typer.Argument(..., help="Output of `policy-domains classify`."),
           out_dir: Path = typer.Option(..., "--out", help="Folder for report.html, docs/ and the charts."),
           model: Optional[Path] = typer.Option(None, help="The model that classified the result, for the provenance "
                                                           "box and adjusted shares (default: the one dvc repro trained)."),
           by: Optional[str] = typer.Option(None, "--by", help="Metadata column to compare groups by (default: year, "
                                                               "when the rows have it)."),
           groups: Optional[Tuple[str, str]] = typer.Option(None, "--groups", help="Two groups A B for the "
                                                                                   "difference chart (B − A)."),
           summary: Optional[Path] = typer.Option(None, help="The same run's `classify --summary`: used as it is "
                                                            "(faster; otherwise the rows are summarised again)."),
           reproducible: bool = typer.Option(False, help="Leave out the training date (the model file's time), so the "
                                                         "same result and model give the same bytes anywhere."),
           force: bool = _force_option()) -> None:
    """HTML report folder: an overview page, a page per document, PNG charts, comparisons by metadata."""
    from pipeline.io import check_output
    from pipeline.report import build_report
    from pipeline.shares import ShareSettings

    if out_dir.exists() and not out_dir.is_dir():
        _fail(f"{out_dir}: --out is a file; the report needs a folder (report.html, docs/, charts)")
    check_output(out_dir / "report.html", force, [result])

    with _progress() as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total, rate="")
            bar.update(tasks[stage], completed=done, total=total)

        paths = build_report(result, out_dir, model_dir=model, by=by, groups=tuple(groups) if groups else None,
                             settings=ShareSettings.from_dict(config.section("shares")), progress=progress,
                             reproducible=reproducible, summary_path=summary)
    size = paths["html"].stat().st_size
    pages = len(list(paths["docs"].glob("*.html")))
    out.print(f"report → {_p(paths['html'])} ({size / 1e6:.2f} MB) with {pages} document page(s) in "
              f"{paths['docs']}, font {paths['font'].name}, charts: "
              f"{', '.join(p.name for k, p in paths.items() if p.suffix == '.png' and not k.startswith('compare_trend'))}")


@app.command()
def compare(summary: Path = typer.Argument(..., help="Summary written by `classify --summary`."),
            by: str = typer.Option(..., "--by", help="Metadata column to group documents by (year, place, level, ...)."),
            out_dir: Path = typer.Option(..., "--out", help="Folder for the table and the charts."),
            groups: Optional[Tuple[str, str]] = typer.Option(None, "--groups", help="Two groups A B for the difference "
                                                                                   "chart, B − A (default: first, last)."),
            measure: str = typer.Option("policy", help="policy (shares of policy units, `other` left out), all "
                                                       "(shares of all units) or cap (CAP major topics).")) -> None:
    """Shares per group of documents with bootstrap intervals, trend charts and a difference chart."""
    from pipeline import compare as cmp
    from pipeline.shares import ShareSettings

    settings = ShareSettings.from_dict(config.section("shares"))
    frame = cmp.read_summary(summary)
    shares = cmp.group_shares(frame, by, settings, measure)
    if not shares.groups:
        _fail(f"{summary}: no document has a value in '{by}'")
    skipped = int(frame[by].isna().sum())
    if skipped:
        _warn(f"{skipped} document(s) without a value in '{by}' left out")
    paths = cmp.write_comparison(shares, out_dir, tuple(groups) if groups else None, measure, settings.level)
    out.print(f"{len(shares.groups)} group(s) of '{by}' from {len(frame) - skipped} document(s) → {paths['table']}; "
              f"charts: {paths['small_multiples'].name}, trends/ ({len(shares.categories)})"
              + (f", {paths['difference'].name}" if "difference" in paths else ""))


# ---------------------------------------------------------------- annotation loop

def _labels_dir(labels_dir: Optional[Path]) -> Path:
    """The label folder; a mistyped one is an error, never a fresh empty tree to read from or write to."""
    path = labels_dir or config.project_path(config.section("paths")["labels"])
    if not path.is_dir():
        raise UsageError(f"{path}: no such label folder (--labels-dir); give the folder that holds annotations/")
    return path


def _print_issues(issues) -> int:
    """Print validator findings, one line each; returns the number of errors."""
    for issue in issues:
        colour = "red" if issue.level == "error" else "yellow"
        out.print(f"[{colour}]{escape(_one_line(str(issue)))}[/{colour}]")
    return sum(i.level == "error" for i in issues)


def _pool(pool: Optional[List[Path]], sentences: Optional[Path] = None, exclude: List[Path] = ()):
    """Units to choose from: --pool files/dirs (segmented like `classify` does), else the corpus."""
    from pipeline import annotate

    if pool:
        units, errors = annotate.pool_units(pool, _segment_params(), exclude)
        for error in errors:
            _say("[red]failed:[/red]", error)
        return units
    return _units(sentences)


@app.command()
def suggest(pool: Optional[List[Path]] = typer.Option(None, "--pool", help="Reports, folders, .jsonl/.csv sentence "
                                                                          "tables or a segmented .parquet (repeatable; "
                                                                          "default: the segmented corpus)."),
            n: int = typer.Option(50, "--n", min=1, help="How many units to queue."),
            out_path: Path = typer.Option(..., "--out", help="Queue file to write (.csv, label-file columns)."),
            strategy: str = typer.Option("uncertainty", help="uncertainty | margin | diverse."),
            model: Optional[Path] = typer.Option(None, help="Model directory (default: the one dvc repro trained)."),
            labels_dir: Optional[Path] = typer.Option(None, help="Default: paths.labels in params.yaml."),
            threshold: float = typer.Option(0.8, min=0.0, max=1.0, help="Character n-gram similarity at which two units count as "
                                                      "near-duplicates."),
            max_per_doc: Optional[int] = typer.Option(None, min=1, help="Picks per document before others get a turn "
                                                                 "(default: an even share of --n)."),
            force: bool = typer.Option(False, help="Replace an existing queue (even one with completed rows).")) -> None:
    """Queue the unlabelled units the model is least sure about, for an annotator to label."""
    from pipeline import annotate
    from pipeline import classify as cl
    from pipeline.io import check_output
    from pipeline.labels import labelled_texts

    if strategy not in annotate.STRATEGIES:
        _fail(f"--strategy must be one of {', '.join(annotate.STRATEGIES)}")
    if out_path.suffix.lower() != ".csv":
        _fail(f"{out_path}: the queue is a label file: give it a .csv name")
    if out_path.is_file() and not force:
        try:
            done = annotate.completed_rows(out_path)
        except PolicyDomainsError:
            done = 0
        if done:
            _fail(f"{out_path} has {done} completed row(s): run `policy-domains labels accept {out_path} "
                  "--annotator NAME` first, or pass --force to overwrite")
    check_output(out_path, force, _named_files(pool or []))
    classifier = cl.load_model(model)
    units = _pool(pool, exclude=[out_path])
    result = annotate.suggest(units, classifier, labelled_texts(_labels_dir(labels_dir)), n, strategy,
                              threshold, max_per_doc)
    annotate.write_queue(result.queue, out_path)
    q = result.queue
    if not len(q):
        out.print(f"nothing to suggest: all {result.pool} unit(s) of the pool are labelled or near-identical to "
                  f"labelled ones; wrote an empty queue {_p(out_path)}")
        raise typer.Exit(1)
    if pool:
        outside = int((~q["text_hash"].isin(set(_units()["text_hash"]))).sum())
        if outside:
            out.print(f"[yellow]warning:[/yellow] {outside} queued unit(s) are not in the corpus "
                      f"({config.section('paths')['corpus']}): `labels check` will call their labels stale until "
                      "their reports are added there and segmented (dvc repro)")
    out.print(f"{len(q)} unit(s) from {q['doc'].nunique()} document(s) → {_p(out_path)} ({strategy}); "
              f"pool {result.pool}, skipped {result.skipped_labelled} labelled or near-labelled, "
              f"{result.skipped_duplicates} repeated; suggested domains: "
              f"{q['suggested'].value_counts().to_dict()}")
    out.print("Fill in `domains` (primary first, up to 3 ids; `suggested` is only the model's guess), then run "
              f"`policy-domains labels accept {_p(out_path)} --annotator YOUR_NAME`.")


@labels_app.command("accept")
def labels_accept(queue: Path = typer.Argument(..., help="A queue written by `policy-domains suggest`."),
                  annotator: str = typer.Option(..., help="Your name: rows go to labels/annotations/NAME.csv."),
                  labels_dir: Optional[Path] = typer.Option(None, help="Default: paths.labels in params.yaml.")) -> None:
    """Move the rows you completed from a queue into your annotation file; the rest stay queued."""
    from pipeline import annotate

    if not queue.exists():
        _fail(f"{queue}: no such file")
    result = annotate.accept(queue, annotator, _labels_dir(labels_dir))
    errors = _print_issues(result.issues)
    out.print(f"{result.moved} row(s) → {_p(result.target)}; {result.kept} left in {_p(queue)}"
              + (f" ([red]{errors} error(s)[/red]: fix them and accept again)" if errors else ""))
    raise typer.Exit(1 if errors else 0)


@labels_app.command("export-ls")
def labels_export_ls(pool: Optional[List[Path]] = typer.Option(None, "--pool", help="Reports, folders or sentence "
                                                                                    "tables (repeatable)."),
                     sentences: Optional[Path] = typer.Option(None, help="Segmented corpus (default: paths.sentences)."),
                     out_dir: Path = typer.Option(..., "--out", help="Folder for tasks.json and config.xml."),
                     include_labelled: bool = typer.Option(False, help="Also export units that are already labelled."),
                     predictions: bool = typer.Option(False, help="Add the model's guess as pre-annotations "
                                                                  "(faster, but annotators tend to accept it)."),
                     model: Optional[Path] = typer.Option(None, help="Model for --predictions (default: dvc's)."),
                     labels_dir: Optional[Path] = typer.Option(None, help="Default: paths.labels in params.yaml."),
                     force: bool = _force_option()) -> None:
    """Write Label Studio tasks (tasks.json) and the labelling config (config.xml) for units."""
    from pipeline import classify as cl
    from pipeline import labelstudio
    from pipeline.io import check_output
    from pipeline.labels import labelled_texts

    if out_dir.exists() and not out_dir.is_dir():
        _fail(f"{out_dir}: --out is a file; give a folder for tasks.json and config.xml")
    for name in labelstudio.EXPORT_FILES:
        check_output(out_dir / name, force, _named_files(pool or []))
    units = _pool(pool, sentences)
    skip = set() if include_labelled else set(labelled_texts(_labels_dir(labels_dir))["text_hash"])
    classifier = cl.load_model(model) if predictions else None
    tasks_path, config_path, n = labelstudio.export_tasks(units, out_dir, classifier, skip)
    out.print(f"{n} task(s) → {_p(tasks_path)}; labelling config → {_p(config_path)}. In Label Studio: create a "
              "project, paste config.xml under Labeling Interface > Code, import tasks.json; when done, "
              "Export > JSON and run `policy-domains labels import-ls`.")


@labels_app.command("import-ls")
def labels_import_ls(export: Path = typer.Argument(..., help="Label Studio export in the 'JSON' format."),
                     out_path: Path = typer.Option(..., "--out", help="Label file (.csv), or a folder for one "
                                                                      "NAME.ls.csv per annotator."),
                     rejected: Optional[Path] = typer.Option(None, help="Where rejected annotations go (default: "
                                                                        "EXPORT.rejected.csv; keep it out of labels/)."),
                     force: bool = _force_option()) -> None:
    """Turn a Label Studio JSON export into label file(s); rejected annotations are listed, not dropped."""
    from pipeline import labelstudio
    from pipeline.labels import label_folders

    rejects = rejected or export.with_suffix(".rejected.csv")
    for folder in label_folders(_labels_dir(None)):
        if rejects.resolve().is_relative_to(folder.resolve()):
            _fail(f"{rejects}: --rejected lies in {folder}, where every CSV is read as a label file; "
                  "write it elsewhere")
    imported = labelstudio.import_export(export)
    written = labelstudio.write_import(imported, out_path, rejects, force, [export])
    errors = _print_issues(imported.issues)
    out.print(f"{len(imported.rows)} annotation(s) → {', '.join(_p(p) for p in written) or 'nothing written'}; "
              f"{imported.cancelled} cancelled skipped"
              + (f"; [red]{len(imported.rejected)} rejected[/red] (kept with the reason in the rejected file)"
                 if imported.rejected else ""))
    raise typer.Exit(1 if errors else 0)


@labels_app.command("audit")
def labels_audit(out_path: Path = typer.Option(..., "--out", help="Review queue (.csv)."),
                 sentences: Optional[Path] = typer.Option(None, help="Segmented corpus (default: paths.sentences)."),
                 oof: Optional[Path] = typer.Option(None, help="Reuse reports/eval/oof.parquet of `policy-domains train` "
                                                               "instead of refitting (only if it is up to date)."),
                 all_labels: bool = typer.Option(False, "--all", help="List every label, not only those the "
                                                                      "model disagrees with."),
                 labels_dir: Optional[Path] = typer.Option(None, help="Default: paths.labels in params.yaml."),
                 force: bool = _force_option()) -> None:
    """Rank labels the model (trained without their document) confidently disagrees with. Edits nothing."""
    from pipeline import audit
    from pipeline.io import check_output, table_format
    from pipeline.labels import label_folders

    table_format(out_path)
    check_output(out_path, force, [p for p in (sentences, oof) if p])
    for folder in label_folders(_labels_dir(labels_dir)):
        if out_path.resolve().is_relative_to(folder.resolve()):
            _fail(f"{out_path}: --out lies in {folder}, where every CSV is read as a label file; write it elsewhere")
    params = config.load_params()
    frame = audit.audit(_labels_dir(labels_dir), _units(sentences), params["train"],
                        audit.read_oof(oof) if oof else None, include_agreeing=all_labels)
    audit.write_audit(frame, out_path)
    console = _console()
    table = Table("rank", "given", "model", "quality", "sent_id", "text", title="Labels to review first")
    for r in frame.head(10).itertuples():
        table.add_row(str(r.rank), r.given, r.suggestion, f"{r.label_quality:.3f}", _p(r.sent_id), _p(r.text[:40]))
    console.print(table)
    out.print(f"{len(frame)} label(s) to review ({int(frame['cleanlab_issue'].sum())} flagged by cleanlab) → {_p(out_path)}")


@app.command("plots-template")
def plots_template(out_path: Path = typer.Option(..., "--out", help="Where to write the HTML template.")) -> None:
    """Write the offline HTML template that `dvc plots show` uses (Vega libraries inline, no CDN)."""
    from pipeline.plots_template import write_template

    out.print(f"offline plots template → {_p(write_template(out_path))}")


class _Stopped(SystemExit):
    """SIGTERM or SIGHUP, raised in the main thread so that `finally` blocks run (temporary files
    are removed, outputs stay as they were) as they do for Ctrl-C."""


def _stop(signum: int, frame: object) -> None:
    raise _Stopped(128 + signum)


def main() -> None:
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop)
    try:
        app()
    except _Stopped as exc:
        _say("[red]error:[/red]", f"stopped by {signal.Signals(int(exc.code) - 128).name}; outputs were left as "
                                  "they were")
        raise


if __name__ == "__main__":
    sys.exit(main())
