"""Hostile and careless input, as a demanding tester tries it: every case ends with exit code ≠ 0 and
ONE line naming the file (and row) and what to do, or with the right result; the rest of a batch
goes on; nothing appears outside the requested output; no label row is lost; an existing file is
replaced only with --force. Every hostile file is built here, at test time; no corpus text."""
from __future__ import annotations

import csv
import errno
import io
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner, Result

from conftest import write_labels
from pipeline import annotate, classify as cl, ingest, io as pio, labels
from pipeline.cli import app
from pipeline.errors import IngestError, LabelError, ModelError, ModelIntegrityError
from pipeline.ingest import fold
from pipeline.io import read_table
from pipeline.segment import text_hash

REPORT = "一、生态环境\n加强生态保护修复，治理大气污染。推进河湖治理与生态修复。\n二、产业\n发展先进制造业集群。\n"
SENTENCES = ["加强生态保护修复。", "治理大气污染。", "推进河湖治理与生态修复。", "发展先进制造业集群。",
             "壮大制造业产业链。", "办好人民满意的教育。", "提高教师待遇。", "推动工业转型升级。"]
runner = CliRunner()
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# ---------------------------------------------------------------- helpers

def run(*args: object) -> Result:
    return runner.invoke(app, [str(a) for a in args])


def no_traceback(result: Result) -> None:
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        raise AssertionError("".join(traceback.format_exception(result.exception))) from result.exception


def one_error(result: Result, *needles: object) -> str:
    """The command failed with exactly one `error:` line, holding every needle (file names, rows)."""
    no_traceback(result)
    assert result.exit_code not in (0, None), result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    assert all(str(n) in lines[0] for n in needles), (needles, lines[0])
    return lines[0]


def line_with(result: Result, *needles: object) -> str:
    """The one output line holding every needle (a message is never split over lines)."""
    found = [line for line in result.output.splitlines() if all(str(n) in line for n in needles)]
    assert found, (needles, result.output)
    return found[0]


def files(root: Path) -> set[str]:
    """Every file and folder under root, hidden ones included, relative to it."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def leftovers(root: Path) -> list[str]:
    """Temporary and lock files: none may survive a command, whatever happened to it."""
    return sorted(p for p in files(root) if p.endswith((".tmp", ".lock")))


def docx_bytes(paragraphs: list[str]) -> bytes:
    import docx

    document = docx.Document()
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def rewrite_docx(data: bytes, change) -> bytes:  # noqa: ANN001 - (name, bytes) -> bytes
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, change(info.filename, src.read(info.filename)))
    return out.getvalue()


def bad_xml_docx() -> bytes:
    return rewrite_docx(docx_bytes(["加强生态保护。"]),
                        lambda name, data: data[: len(data) // 2] if name == "word/document.xml" else data)


def broken_deflate_docx() -> bytes:
    raw = bytearray(docx_bytes(["加强生态保护。"] * 50))
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as package:
        info = package.getinfo("word/document.xml")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for k in range(start + 10, start + min(60, info.compress_size - 4)):
        raw[k] ^= 0x5A  # inside the compressed stream: the central directory still looks fine
    return bytes(raw)


def bomb_docx(megabytes: int) -> bytes:
    """A valid Word file whose document.xml expands from a few KB to `megabytes` MB."""
    run_xml = "<w:p><w:r><w:t>发展</w:t></w:r></w:p>".encode()
    body = run_xml * (megabytes * 2 ** 20 // len(run_xml))

    def change(name: str, data: bytes) -> bytes:
        return data.replace(b"<w:body>", b"<w:body>" + body, 1) if name == "word/document.xml" else data

    return rewrite_docx(docx_bytes(["加强生态保护。"]), change)


@pytest.fixture
def batch(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.txt").write_text(REPORT, encoding="utf-8")
    return folder


def classify(*args: object) -> Result:
    return run("classify", *args)


def units_of(path: Path) -> int:
    return len(read_table(path))


# ================================================================ classify / segment: inputs

@pytest.mark.parametrize("name, content, reason", [
    ("xml.docx", bad_xml_docx, "not a readable .docx"),
    ("deflate.docx", broken_deflate_docx, "not a readable .docx"),
    ("half.docx", lambda: docx_bytes(["加强生态保护。"])[:900], "not a readable .docx"),
    ("nul.csv", lambda: b"text,id\n\x00\x00\x00,1\n", "binary"),
])
def test_corrupt_file_is_one_failed_line_and_the_batch_goes_on(name: str, content, reason: str, batch: Path,
                                                               tmp_path: Path, tiny_model_dir: Path) -> None:
    (batch / name).write_bytes(content())
    out = tmp_path / "o.jsonl"
    result = classify(batch, "--out", out, "--model", tiny_model_dir)
    no_traceback(result)
    assert result.exit_code == 1
    assert reason in line_with(result, "failed:", batch / name)
    assert set(read_table(out)["doc"]) == {"good"}


@pytest.mark.parametrize("command", ["classify", "segment"])
def test_corrupt_docx_with_two_jobs_or_in_segment_is_a_failed_file(command: str, batch: Path, tmp_path: Path,
                                                                   tiny_model_dir: Path) -> None:
    (batch / "a_bad.docx").write_bytes(bad_xml_docx())
    (batch / "z_more.txt").write_text("提高教师待遇。\n", encoding="utf-8")
    out = tmp_path / "o.jsonl"
    extra = ["--model", tiny_model_dir, "--jobs", 2] if command == "classify" else []
    result = run(command, batch, "--out", out, *extra)
    no_traceback(result)
    assert result.exit_code == 1 and "not a readable .docx" in line_with(result, "failed:", "a_bad.docx")
    assert set(read_table(out)["doc"]) == {"good", "z_more"}


def test_zip_bomb_docx_is_refused_before_it_is_parsed(batch: Path, tmp_path: Path, tiny_model_dir: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import docx

    bomb = bomb_docx(4)
    assert len(bomb) < 100_000  # kilobytes on disk
    monkeypatch.setattr(ingest, "MAX_DOCX_XML_BYTES", 2 ** 20)
    parsed = []
    real = docx.Document
    monkeypatch.setattr(docx, "Document", lambda *a, **k: parsed.append(1) or real(*a, **k))
    (batch / "bomb.docx").write_bytes(bomb)
    out = tmp_path / "o.jsonl"
    result = classify(batch, "--out", out, "--model", tiny_model_dir)
    assert "MB of XML, over the limit of 1 MB" in line_with(result, "failed:", batch / "bomb.docx", "expands to")
    assert parsed == [] and result.exit_code == 1 and set(read_table(out)["doc"]) == {"good"}


def test_docx_with_too_many_parts_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "MAX_DOCX_ENTRIES", 5)
    path = tmp_path / "many.docx"
    path.write_bytes(docx_bytes(["加强生态保护。"]))
    with pytest.raises(IngestError, match=r"many\.docx: \d+ parts in the \.docx package, over the limit of 5"):
        ingest.read_source(path)


@pytest.mark.timeout(60)
def test_fifo_and_device_links_are_refused_without_blocking(batch: Path, tmp_path: Path,
                                                            tiny_model_dir: Path) -> None:
    fifo, zero = tmp_path / "pipe.txt", tmp_path / "zero.txt"
    os.mkfifo(fifo)
    zero.symlink_to("/dev/zero")
    out = tmp_path / "o.jsonl"
    result = classify(batch, fifo, zero, "--out", out, "--model", tiny_model_dir)
    assert "FIFO" in line_with(result, "failed:", fifo)
    assert "character device" in line_with(result, "failed:", zero)
    assert result.exit_code == 1 and set(read_table(out)["doc"]) == {"good"}
    # inside a folder they are no reports at all: skipped, not read
    os.mkfifo(batch / "pipe.txt")
    (batch / "zero.txt").symlink_to("/dev/zero")
    result = classify(batch, "--out", out, "--model", tiny_model_dir, "--force")
    assert result.exit_code == 0, result.output


def test_file_over_the_size_limit_is_refused(batch: Path, tmp_path: Path, tiny_model_dir: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pio, "MAX_FILE_BYTES", 1000)
    (batch / "big.txt").write_text("加强生态保护修复。" * 200, encoding="utf-8")
    result = classify(batch, "--out", tmp_path / "o.jsonl", "--model", tiny_model_dir)
    assert "over the" in line_with(result, "failed:", batch / "big.txt", "limit")
    assert result.exit_code == 1


@pytest.mark.parametrize("name, content, needle", [
    ("long.csv", "text,id\n" + "发" * 200_000 + ",1\n", "line 2: a field is longer than 131,072"),
    ("dup.csv", "text,id,id\n加强生态保护。,1,2\n", "line 1: column(s) id appear twice"),
    ("open.csv", 'text,id,note\n"加强生态保护。,1,x\n提高教师待遇。,2,y\n发展先进制造业。,3,z\n', "line 2:"),
    ("swallow.csv", 'text,id,note\n"加强生态保护。,1,x\n提高教师待遇。,2,y\n发展先进制造业。",3,z\n',
     "line 2: a quote opened in row 2"),
    ("extra.csv", "text,id\n加强生态保护,推进修复。,1\n", "line 2: 3 fields, the header has 2"),
    ("deep.jsonl", "[" * 100_000 + "]" * 100_000 + "\n", "line 1:"),
    ("longtext.jsonl", json.dumps({"text": "发" * 200_000}) + "\n", "line 1: 'text' is longer"),
    ("surrogate.jsonl", '{"text": "提高教师待遇。"}\n{"text": "加强生态\\ud800保护。"}\n', "line 2: holds an unpaired surrogate"),
    ("surrogate_id.jsonl", '{"text": "提高教师待遇。", "id": "\\udfff"}\n', "line 1: holds an unpaired surrogate"),
])
def test_broken_sentence_tables_name_file_and_line(name: str, content: str, needle: str, batch: Path,
                                                   tmp_path: Path, tiny_model_dir: Path) -> None:
    (batch / name).write_text(content, encoding="utf-8")
    out = tmp_path / "o.jsonl"
    result = classify(batch, "--out", out, "--model", tiny_model_dir)
    assert needle in line_with(result, "failed:", batch / name)
    assert result.exit_code == 1 and set(read_table(out)["doc"]) == {"good"}


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv"])
def test_odd_but_valid_json_values_come_through_every_output(suffix: str, tmp_path: Path,
                                                             tiny_model_dir: Path) -> None:
    """U+2028 inside a string is valid JSON (not a line break), an emoji as a surrogate pair is one
    character, an integer beyond 64 bits is a number: each row is classified, its values kept."""
    rows = ['{"text": "加强生态保护\u2028修复。", "id": 1}', '{"text": "提高教师待遇\\ud83d\\ude00。", "id": 2}',
            '{"text": "发展先进制造业。", "id": 123456789012345678901234567890}']
    table = tmp_path / "odd.jsonl"
    table.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / f"o{suffix}"
    result = classify(table, "--out", out, "--model", tiny_model_dir)
    no_traceback(result)
    assert result.exit_code == 0, result.output
    # pandas' JSON reader stops at an integer beyond 64 bits; the standard library reads it
    got = pd.DataFrame([json.loads(line) for line in out.read_text(encoding="utf-8").split("\n") if line]) \
        if suffix == ".jsonl" else read_table(out)
    assert list(got["text"]) == ["加强生态保护\u2028修复。", "提高教师待遇😀。", "发展先进制造业。"]
    assert [str(v) for v in got["id"]] == ["1", "2", "123456789012345678901234567890"]


def test_unpaired_surrogate_in_a_document_table_fails_that_document_only(tmp_path: Path,
                                                                         tiny_model_dir: Path) -> None:
    table = tmp_path / "docs.jsonl"
    table.write_text('{"doc": "a", "text": "加强生态\\udc00保护。"}\n{"doc": "b", "text": "发展先进制造业。"}\n',
                     encoding="utf-8")
    out = tmp_path / "o.parquet"
    result = classify(table, "--documents", "--out", out, "--model", tiny_model_dir)
    assert "line 1: holds an unpaired surrogate" in line_with(result, "failed:", table)
    assert result.exit_code == 1 and set(read_table(out)["doc"]) == {"b"}


def test_a_previous_result_as_input_keeps_its_predictions_as_input_columns(batch: Path, tmp_path: Path,
                                                                           tiny_model_dir: Path) -> None:
    first = tmp_path / "first.csv"
    assert classify(batch, "--out", first, "--model", tiny_model_dir).exit_code == 0
    out = tmp_path / "again.jsonl"
    result = classify(first, "--out", out, "--model", tiny_model_dir)
    assert result.exit_code == 0, result.output
    assert "input_domain" in line_with(result, "warning:", first)
    again = read_table(out)
    previous = read_table(first)
    assert list(again["input_domain"]) == list(previous["domain"]) and "input_scores" in again
    assert again["domain"].notna().all() and isinstance(again["scores"].iloc[0], dict)
    third = tmp_path / "third.csv"  # a result of a result: nothing clashes, nothing is lost
    assert classify(out, "--out", third, "--model", tiny_model_dir).exit_code == 0
    assert {"input_domain", "input_input_domain"} <= set(read_table(third).columns)


def test_classify_into_its_own_input_folder_twice(batch: Path, tiny_model_dir: Path) -> None:
    out = batch / "result.csv"
    summary = batch / "summary.csv"
    assert classify(batch, "--out", out, "--summary", summary, "--model", tiny_model_dir).exit_code == 0
    before = out.read_bytes()
    one_error(classify(batch, "--out", out, "--summary", summary, "--model", tiny_model_dir), out, "--force")
    assert out.read_bytes() == before
    result = classify(batch, "--out", out, "--summary", summary, "--model", tiny_model_dir, "--force")
    assert result.exit_code == 0, result.output  # its own result and summary were no inputs
    assert set(read_table(out)["doc"]) == {"good"} and out.read_bytes() == before


@pytest.mark.parametrize("case", ["out is summary", "out is an input", "summary is an input", "out is a folder",
                                  "out exists", "bad chunk size", "zero jobs", "bad format"])
def test_careless_output_paths_are_refused_and_nothing_is_written(case: str, batch: Path, tmp_path: Path,
                                                                  tiny_model_dir: Path) -> None:
    table, existing, folder = tmp_path / "t.csv", tmp_path / "old.jsonl", tmp_path / "x.csv"
    table.write_text("text\n加强生态保护。\n", encoding="utf-8")
    existing.write_text("{}\n", encoding="utf-8")
    folder.mkdir()
    o = tmp_path / "o.csv"
    args, needle = {
        "out is summary": ([batch, "--out", o, "--summary", o], "same file"),
        "out is an input": ([table, "--out", table, "--force"], "input"),
        "summary is an input": ([batch, table, "--out", o, "--summary", table, "--force"], "input"),
        "out is a folder": ([batch, "--out", folder], "folder"),
        "out exists": ([batch, "--out", existing], "--force"),
        "bad chunk size": ([batch, "--out", o, "--chunk-size", "-5"], "--chunk-size"),
        "zero jobs": ([batch, "--out", o, "--jobs", "0"], "--jobs"),
        "bad format": ([batch, "--out", tmp_path / "o.xlsx"], ".jsonl, .csv, .parquet"),
    }[case]
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    result = classify(*args, "--model", tiny_model_dir)
    one_error(result, needle)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_existing_output_is_replaced_with_force(batch: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    out = tmp_path / "o.csv"
    out.write_text("old\n", encoding="utf-8")
    result = classify(batch, "--out", out, "--model", tiny_model_dir, "--force")
    assert result.exit_code == 0 and set(read_table(out)["doc"]) == {"good"}


def test_a_summary_that_fails_leaves_the_old_output(batch: Path, tmp_path: Path, tiny_model_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    out, summary = tmp_path / "o.jsonl", tmp_path / "s.csv"
    out.write_text("previous\n", encoding="utf-8")
    real = pio.TableWriter._write

    def full_for_the_summary(self: pio.TableWriter, frame: pd.DataFrame) -> None:
        if self.target == summary:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, frame)

    monkeypatch.setattr(pio.TableWriter, "_write", full_for_the_summary)
    result = classify(batch, "--out", out, "--summary", summary, "--model", tiny_model_dir, "--force")
    one_error(result, summary, "No space left on device")
    assert out.read_text(encoding="utf-8") == "previous\n" and not summary.exists()
    assert leftovers(tmp_path) == []


def test_read_only_output_folder_is_one_line(batch: Path, tmp_path: Path, tiny_model_dir: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(*args: object, **kwargs: object):  # noqa: ANN202
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(pio.tempfile, "mkstemp", denied)
    out = tmp_path / "new" / "deeper" / "o.jsonl"
    one_error(classify(batch, "--out", out, "--model", tiny_model_dir), out, "cannot write (Permission denied)")
    assert not (tmp_path / "new").exists()  # the folders made for it are gone again


@pytest.mark.skipif(IS_ROOT, reason="root writes into read-only folders; the monkeypatched case above covers it")
def test_really_read_only_output_folder(batch: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        one_error(classify(batch, "--out", folder / "o.jsonl", "--model", tiny_model_dir), folder / "o.jsonl")
    finally:
        folder.chmod(0o755)


def test_full_disk_while_writing_is_one_line_and_leaves_nothing(batch: Path, tmp_path: Path, tiny_model_dir: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def full(self: pio.TableWriter, frame: pd.DataFrame) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pio.TableWriter, "_write", full)
    out = tmp_path / "o.parquet"
    before = files(tmp_path)
    one_error(classify(batch, "--out", out, "--model", tiny_model_dir), out, "No space left on device")
    assert files(tmp_path) == before


def test_segment_refuses_to_replace_without_force_and_writes_nothing_when_all_fail(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "empty.txt").write_bytes(b"")
    out = tmp_path / "units.parquet"
    result = run("segment", corpus, "--out", out)
    assert result.exit_code == 1 and not out.exists()  # an empty table would look like a result
    out.write_bytes(b"previous")
    (corpus / "good.txt").write_text(REPORT, encoding="utf-8")
    one_error(run("segment", corpus, "--out", out), out, "--force")
    assert out.read_bytes() == b"previous"
    assert run("segment", corpus, "--out", out, "--force").exit_code == 1  # empty.txt still fails
    assert len(read_table(out)) == 5


def test_file_names_with_newlines_and_bad_bytes_stay_one_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "line\nbreak.txt").write_bytes(b"")
    (folder / "[red]x[").mkdir()  # rich markup in a path ([red]x[/]weird.txt) is printed, not interpreted
    (folder / "[red]x[" / "]weird.txt").write_bytes(b"")
    os.close(os.open(os.fsencode(folder) + b"/bad\xff.txt", os.O_CREAT | os.O_WRONLY))
    with open(os.fsencode(folder) + b"/good\xfe.txt", "w", encoding="utf-8") as fh:
        fh.write(REPORT)
    out = tmp_path / "o.jsonl"
    result = classify(folder, "--out", out, "--model", tiny_model_dir)
    no_traceback(result)
    assert "empty file" in line_with(result, "failed:", "line\\nbreak.txt")
    assert "empty file" in line_with(result, "failed:", "bad\\udcff.txt")
    assert "empty file" in line_with(result, "failed:", "[red]x[/]weird.txt")
    assert result.exit_code == 1 and len(set(read_table(out)["doc"])) == 1  # the good one, named readably


# ================================================================ --jobs 2

@pytest.mark.timeout(120)
def test_a_worker_that_dies_stops_the_run_naming_its_file(batch: Path, tmp_path: Path, tiny_model_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import _dying_worker

    monkeypatch.setattr(cl, "_worker", _dying_worker.worker)
    (batch / "dies.txt").write_text(REPORT, encoding="utf-8")
    out = tmp_path / "o.jsonl"
    start = time.monotonic()
    result = classify(batch, "--out", out, "--model", tiny_model_dir, "--jobs", 2)
    one_error(result, batch / "dies.txt", "worker process", "--jobs 1")
    assert time.monotonic() - start < 90 and not out.exists() and leftovers(tmp_path) == []


# ================================================================ signals (a real process)

def _cli() -> str:
    return str(Path(sys.executable).parent / "policy-domains")


def _default_signals() -> None:
    """The child starts as from a terminal: a background job of a non-interactive shell (as CI may
    run the suite) inherits SIGINT ignored, and then a Ctrl-C could never reach the command."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("signum, jobs, group", [
    (signal.SIGTERM, 1, False), (signal.SIGHUP, 1, False),
    pytest.param(signal.SIGINT, 2, True, marks=pytest.mark.slow),  # ~12 s each: workers finish their file
    pytest.param(signal.SIGTERM, 2, False, marks=pytest.mark.slow)])
def test_signals_leave_no_temporary_files_and_no_traceback(signum: int, jobs: int, group: bool, tmp_path: Path,
                                                           tiny_model_dir: Path) -> None:
    """kill, a closed terminal, Ctrl-C (which reaches every process of the group) and --jobs 2,
    where the signal lands while the workers are still starting."""
    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(40):
        (folder / f"r{k:02}.txt").write_text("".join(SENTENCES) * 400, encoding="utf-8")
    out = tmp_path / "out" / "o.jsonl"
    out.parent.mkdir()
    proc = subprocess.Popen([_cli(), "classify", str(folder), "--out", str(out), "--summary",
                             str(out.with_name("s.csv")), "--model", str(tiny_model_dir), "--chunk-size", "20",
                             "--jobs", str(jobs)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_default_signals)
    deadline = time.monotonic() + 120
    while not leftovers(out.parent) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be stopped: give it more input"
    time.sleep(0.3)
    if group:
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    _, err = proc.communicate(timeout=150)
    assert proc.returncode == 128 + signum, err
    assert files(out.parent) == set(), files(out.parent)
    assert f"stopped by {signal.Signals(signum).name}" in err and "Traceback" not in err, err


# ================================================================ models

def _model_copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    return copy


def _resave(model: object, folder: Path) -> None:
    """Save any object as a model the way `save_model` does (a matching checksum beside it)."""
    import skops.io as sio

    from pipeline.model import CHECKSUM_FILE, MODEL_FILE, _sha256

    folder.mkdir(exist_ok=True)
    (folder / MODEL_FILE).write_bytes(sio.dumps(model))
    (folder / CHECKSUM_FILE).write_text(f"{_sha256(folder / MODEL_FILE)}  {MODEL_FILE}\n", encoding="utf-8")


@pytest.mark.parametrize("case, error, needle", [
    ("empty checksum", ModelIntegrityError, "model.sha256: empty or not a SHA-256"),
    ("garbled checksum", ModelIntegrityError, "model.sha256: empty or not a SHA-256"),
    ("not a zip", ModelIntegrityError, "not a readable skops model"),
    ("another estimator", ModelError, "holds a LogisticRegression, not a policy-domains model"),
    ("other domains", ModelError, "trained for 3 domain id(s)"),
    ("model is a folder", ModelError, "cannot read the model"),
])
def test_broken_or_foreign_models_are_one_line(case: str, error: type, needle: str, batch: Path, tmp_path: Path,
                                               tiny_model_dir: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    from pipeline.model import DomainClassifier, load_model

    model = _model_copy(tiny_model_dir, tmp_path)
    if case == "empty checksum":
        (model / "model.sha256").write_text("", encoding="utf-8")
    elif case == "garbled checksum":
        (model / "model.sha256").write_bytes(b"\xff\xfe not a sum")
    elif case == "not a zip":
        (model / "model.skops").write_bytes(b"garbage")
        _resave_checksum(model)
    elif case == "another estimator":
        _resave(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), model)
    elif case == "other domains":
        frame = pd.DataFrame({"text": ["加强生态保护。", "发展制造业。", "谢谢大家。"] * 2, "heading": ""})
        small = DomainClassifier(domains=("ecology", "industry", "other"), calibration="none", char_features=2 ** 10)
        _resave(small.fit(frame, ["ecology", "industry", "other"] * 2), model)
    else:
        (model / "model.skops").unlink()
        (model / "model.skops").mkdir()
    with pytest.raises(error, match=needle.replace("(", r"\(").replace(")", r"\)")):
        load_model(model)
    one_error(classify(batch, "--out", tmp_path / "o.jsonl", "--model", model), needle)
    assert not (tmp_path / "o.jsonl").exists()


def _resave_checksum(folder: Path) -> None:
    from pipeline.model import _sha256

    (folder / "model.sha256").write_text(f"{_sha256(folder / 'model.skops')}  model.skops\n", encoding="utf-8")


# ================================================================ label files

def _label(text: str, domains: str = "ecology", sent_id: str = "", annotator: str = "wang") -> dict:
    return {"sent_id": sent_id, "doc": "d", "text": text, "domains": domains, "annotator": annotator,
            "updated_at": "2026-11-23"}


def errors_of(labels_dir: Path) -> list[str]:
    issues, _ = labels.check(labels_dir)
    return [str(i) for i in issues if i.level == "error"]


def test_upper_case_csv_is_read_and_office_owner_files_are_not(tmp_path: Path) -> None:
    write_labels(tmp_path / "annotations" / "wang.CSV", [_label("加强生态保护。")])
    (tmp_path / "annotations" / "~$wang.csv").write_bytes(b"\x0cowner lock of Excel")
    (tmp_path / "annotations" / "li.xlsx").write_bytes(b"PK")
    issues, merged = labels.check(tmp_path)
    assert len(merged) == 1 and not [i for i in issues if i.level == "error"]
    assert any("li.xlsx" in str(i) and "ignored" in str(i) for i in issues)


def test_duplicated_header_column_is_an_error_not_a_silent_winner(tmp_path: Path) -> None:
    path = tmp_path / "annotations" / "wang.csv"
    path.parent.mkdir(parents=True)
    path.write_text("\ufeffsent_id,text_hash,doc,text,domains,annotator,note,updated_at,domains\n"
                    ",,d,加强生态保护。,ecology,wang,,,industry\n", encoding="utf-8")
    assert [e for e in errors_of(tmp_path) if f"{path}:1:" in e and "domains appear twice" in e]


def test_over_long_field_is_an_error_in_check_and_one_line_in_train(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    write_labels(tmp_path / "annotations" / "wang.csv", [_label("加强生态保护。"), _label("长" * 200_000)])
    path = tmp_path / "annotations" / "wang.csv"
    assert [e for e in errors_of(tmp_path) if f"{path}:3:" in e and "longer than 131,072" in e]
    with pytest.raises(LabelError) as caught:
        labels.load_labels(tmp_path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)
    result = run("labels", "check", "--labels-dir", tmp_path)
    assert result.exit_code == 1 and line_with(result, f"{path}:3:", "longer than")


def test_label_file_that_is_a_fifo_or_nul_bytes(tmp_path: Path) -> None:
    folder = tmp_path / "annotations"
    folder.mkdir()
    os.mkfifo(folder / "pipe.csv")
    (folder / "nul.csv").write_bytes(b"\xef\xbb\xbfsent_id,text\n\x00\x00\n")
    found = errors_of(tmp_path)
    assert any("pipe.csv" in e and "FIFO" in e for e in found)
    assert any("nul.csv:2:" in e and "NUL" in e for e in found)


def test_identifiers_a_spreadsheet_converted_are_errors(tmp_path: Path) -> None:
    text = "加强生态保护。"
    write_labels(tmp_path / "annotations" / "wang.csv", [
        {**_label(text, sent_id="1978:40:00"), "text_hash": "1.79769313486232E+308"}])
    found = " | ".join(errors_of(tmp_path))
    assert "text_hash '1.79769313486232E+308' is not a text hash" in found
    assert "sent_id '1978:40:00' looks converted by a spreadsheet" in found


def test_formula_cells_are_written_safe_and_read_back_exact(tmp_path: Path) -> None:
    values = ["=1+1", "+CMD|' /C calc'!A0", "-2+3", "@SUM(A1)", "'=x", "''", "-5", "'plain", "普通句子。"]
    for value in values:
        assert pio.sheet_value(pio.sheet_safe(value)) == value
    assert pio.sheet_safe("-5") == "-5" and pio.sheet_safe("=1+1") == "'=1+1"
    path = labels.write_label_rows(tmp_path / "x.csv", [_label("=HYPERLINK(\"http://x\",\"点我\")"), _label("-减少排放。")])
    raw = path.read_text(encoding="utf-8-sig")
    assert "'=HYPERLINK" in raw and "'-减少排放" in raw
    frame, issues = labels.read_label_file(path)
    assert not [i for i in issues if i.level == "error"]
    assert list(frame["text"]) == ["=HYPERLINK(\"http://x\",\"点我\")", "-减少排放。"]


# ================================================================ labels accept

def queue_rows(texts: list[str], domains: str = "ecology", doc: str = "1978") -> list[dict]:
    return [{"sent_id": f"{doc}:{k}", "text_hash": text_hash(fold([t])[0]), "doc": doc, "text": t,
             "domains": domains, "suggested": "ecology", "confidence": "0.41", "heading": ""}
            for k, t in enumerate(texts)]


def make_queue(path: Path, rows: list[dict]) -> Path:
    """A queue as `suggest` writes it (protected cells), filled in as an annotator would."""
    annotate.write_queue(pd.DataFrame([{c: r.get(c, "") for c in annotate.QUEUE_COLUMNS} for r in rows]), path)
    return path


def label_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "labels"
    folder.mkdir(exist_ok=True)
    return folder


def accept(queue: Path, labels_dir: Path, annotator: str = "wang") -> Result:
    return run("labels", "accept", queue, "--annotator", annotator, "--labels-dir", labels_dir)


def target_rows(labels_dir: Path, annotator: str = "wang") -> list[dict]:
    """The annotator's rows as `labels check` reads them (every one must be valid)."""
    path = labels_dir / "annotations" / f"{annotator}.csv"
    if not path.exists():
        return []
    frame, issues = labels.read_label_file(path)
    assert not [i for i in issues if i.level == "error"], issues
    return frame.assign(domains=frame["domains"].map("|".join)).to_dict(orient="records")


def texts(n: int, tag: str) -> list[str]:
    return [f"第{tag}{k}项：推进生态保护修复工作。" for k in range(n)]


def _accept_in_child(queue: str, labels_dir: str, barrier) -> None:  # noqa: ANN001
    barrier.wait()
    annotate.accept(queue, "wang", labels_dir)


def _slow_atomic_path(real):  # noqa: ANN001, ANN202
    """atomic_path that waits before writing: wide open to a lost update without the lock."""
    import contextlib

    @contextlib.contextmanager
    def slow(target):  # noqa: ANN001, ANN202
        time.sleep(0.3)
        with real(target) as tmp:
            yield tmp

    return slow


@pytest.mark.timeout(120)
@pytest.mark.parametrize("same_queue", [False, True])
def test_two_concurrent_accepts_lose_no_row(same_queue: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    labels_dir = label_folder(tmp_path)
    queues = [make_queue(tmp_path / "q1.csv", queue_rows(texts(40, "甲"), doc="d1")),
              make_queue(tmp_path / "q2.csv", queue_rows(texts(40, "乙"), doc="d2"))]
    if same_queue:
        queues = [queues[0], queues[0]]
    monkeypatch.setattr(labels, "atomic_path", _slow_atomic_path(labels.atomic_path))
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_accept_in_child, args=(str(q), str(labels_dir), barrier)) for q in queues]
    for p in procs:
        p.start()
    for p in procs:
        p.join(90)
        assert p.exitcode == 0
    rows = target_rows(labels_dir)
    assert len(rows) == (40 if same_queue else 80) and len({r["text"] for r in rows}) == len(rows)
    assert all(annotate.read_queue(q) == [] for q in queues)
    assert leftovers(tmp_path) == []


def test_accept_into_a_file_whose_header_lacks_domains_moves_nothing(tmp_path: Path) -> None:
    labels_dir = label_folder(tmp_path)
    target = labels_dir / "annotations" / "wang.csv"
    write_labels(target, [{**_label("提高教师待遇。"), "domain": "education"}],
                 columns=[c if c != "domains" else "domain" for c in labels.COLUMNS])
    before = target.read_bytes()
    queue = make_queue(tmp_path / "q.csv", queue_rows(texts(3, "丙")))
    queued = queue.read_bytes()
    result = accept(queue, labels_dir)
    assert result.exit_code == 1 and "the header lacks domains" in line_with(result, f"{target}:1:")
    assert target.read_bytes() == before and queue.read_bytes() == queued


def test_accept_refuses_converted_identifiers_and_keeps_those_rows(tmp_path: Path) -> None:
    labels_dir = label_folder(tmp_path)
    rows = queue_rows(texts(3, "丁"))
    rows[0]["text_hash"] = "1.79769313486232E+308"
    rows[1]["sent_id"] = "1978:40:00"
    queue = tmp_path / "q.csv"
    write_labels(queue, rows, columns=annotate.QUEUE_COLUMNS)  # as a spreadsheet saved it: no apostrophes left
    result = accept(queue, labels_dir)
    assert result.exit_code == 1
    assert "not a text hash" in line_with(result, f"{queue}:2:")
    assert "converted by a spreadsheet" in line_with(result, f"{queue}:3:")
    assert [r["text"] for r in target_rows(labels_dir)] == [rows[2]["text"]]
    assert [r["text"] for r in annotate.read_queue(queue)] == [rows[0]["text"], rows[1]["text"]]


def test_queue_identifiers_survive_a_spreadsheet_and_come_back_exact(tmp_path: Path, tiny_model_dir: Path) -> None:
    labels_dir = label_folder(tmp_path)
    rows = queue_rows(["=HYPERLINK(\"http://x\")推进生态保护。", "-12%的排放要减少。", "治理大气污染。"],
                      domains="", doc="1978")
    queue = make_queue(tmp_path / "q.csv", rows)
    raw = list(csv.DictReader(queue.open(encoding="utf-8-sig")))
    assert raw[0]["sent_id"] == "'1978:0" and raw[0]["text_hash"].startswith("'") and raw[0]["doc"] == "'1978"
    assert raw[0]["text"].startswith("'=") and raw[1]["text"].startswith("'-")
    for row in raw:  # the annotator fills in domains; the spreadsheet saves the cells as shown
        row["domains"] = "ecology"
    write_labels(queue, raw, columns=annotate.QUEUE_COLUMNS)
    result = accept(queue, labels_dir)
    assert result.exit_code == 0, result.output
    moved = target_rows(labels_dir)
    assert [r["sent_id"] for r in moved] == ["1978:0", "1978:1", "1978:2"]
    assert [r["text"] for r in moved] == [r["text"] for r in rows]
    assert [r["text_hash"] for r in moved] == [r["text_hash"] for r in rows]
    assert errors_of(labels_dir) == []


@pytest.mark.parametrize("encoding, delimiter", [("gbk", ","), ("gb18030", ","), ("utf-16", "\t"),
                                                 ("utf-8", ","), ("utf-8-sig", ";")])
def test_queue_saved_in_another_encoding_is_accepted(encoding: str, delimiter: str, tmp_path: Path) -> None:
    labels_dir = label_folder(tmp_path)
    rows = queue_rows(texts(2, "戊"))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=annotate.QUEUE_COLUMNS, delimiter=delimiter, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    queue = tmp_path / "q.csv"
    queue.write_bytes(buffer.getvalue().encode(encoding))
    result = accept(queue, labels_dir)
    assert result.exit_code == 0, result.output
    assert [r["text"] for r in target_rows(labels_dir)] == [r["text"] for r in rows]


@pytest.mark.parametrize("case, needle", [
    ("undecodable", "not valid UTF-8, GB18030/GBK or UTF-16"),
    ("unclosed quote", "line 3:"),
    ("quote closed rows later", "line 3: a quote opened in row 3 (line 3) is not closed where the cell ends"),
    ("mistyped labels folder", "no such label folder"),
    ("duplicated column", "line 1: column(s) domains appear twice"),
    ("long field", "line 2: a field is longer than 131,072"),
    ("nul bytes", "binary"),
    ("empty file", "empty file"),
    ("a folder", "is a folder"),
    ("a fifo", "FIFO"),
])
def test_unreadable_queue_is_one_line_and_changes_nothing(case: str, needle: str, tmp_path: Path) -> None:
    labels_dir = label_folder(tmp_path)
    queue = tmp_path / "q.csv"
    header = ",".join(annotate.QUEUE_COLUMNS)
    body = {
        "undecodable": None,
        "unclosed quote": f"{header}\n,,d,推进生态保护。,ecology,,,,,,\n,,d,\"治理大气污染。,ecology,,,,,,\n"
                          ",,d,提高教师待遇。,education,,,,,,\n,,d,发展制造业。,industry,,,,,,\n",
        "quote closed rows later": f"{header}\n,,d,推进生态保护。,ecology,,,,,,\n,,d,\"治理大气污染。,ecology,,,,,,\n"
                                   ",,d,提高教师待遇。,education,,,,,,\n,,d,发展制造业。\",industry,,,,,,\n",
        "mistyped labels folder": f"{header}\n,,d,推进生态保护。,ecology,,,,,,\n",
        "duplicated column": f"{header},domains\n,,d,推进生态保护。,ecology,,,,,,,x\n",
        "long field": f"{header}\n,,d,{'长' * 200_000},ecology,,,,,,\n",
        "nul bytes": f"{header}\n\x00\x00\x00\n",
        "empty file": "",
    }.get(case)
    if case == "undecodable":
        queue.write_bytes(header.encode() + b"\n,,d,\xff\xfe\xfa\xfb\x81\x30,ecology,,,,,,\n")
    elif case == "a folder":
        queue.mkdir()
    elif case == "a fifo":
        os.mkfifo(queue)
    else:
        queue.write_text(body, encoding="utf-8")
    before = files(tmp_path)
    if case == "mistyped labels folder":
        one_error(accept(queue, tmp_path / "lables"), "lables", needle)
    else:
        one_error(accept(queue, labels_dir), queue, needle)
    assert files(tmp_path) == before and target_rows(labels_dir) == []


def test_accept_refuses_the_annotators_own_file_and_unsafe_names(tmp_path: Path) -> None:
    labels_dir = label_folder(tmp_path)
    target = write_labels(labels_dir / "annotations" / "wang.csv", [_label("提高教师待遇。")])
    one_error(accept(target, labels_dir), "annotation file itself")
    queue = make_queue(tmp_path / "q.csv", queue_rows(texts(1, "己")))
    for name in ("../evil", "a/b", "", ".hidden"):
        one_error(accept(queue, labels_dir, name), "names a file")
    assert files(tmp_path) == {"labels", "labels/annotations", "labels/annotations/wang.csv", "q.csv"}


def test_accept_into_a_read_only_folder_keeps_the_queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    labels_dir = label_folder(tmp_path)
    (labels_dir / "annotations").mkdir(parents=True)
    queue = make_queue(tmp_path / "q.csv", queue_rows(texts(2, "庚")))
    queued = queue.read_bytes()
    real = pio.tempfile.mkstemp

    def denied(*args: object, dir: str = "", **kwargs: object):  # noqa: A002, ANN202
        if Path(dir) == labels_dir / "annotations":
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(pio.tempfile, "mkstemp", denied)
    one_error(accept(queue, labels_dir), "wang.csv", "Permission denied")
    assert queue.read_bytes() == queued and leftovers(tmp_path) == []


def test_accept_appends_to_a_gbk_annotator_file_without_losing_rows(tmp_path: Path) -> None:
    labels_dir = label_folder(tmp_path)
    target = labels_dir / "annotations" / "wang.csv"
    target.parent.mkdir(parents=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=labels.COLUMNS)
    writer.writeheader()
    writer.writerow(_label("提高教师待遇。", "education"))
    target.write_bytes(buffer.getvalue().encode("gbk"))
    assert accept(make_queue(tmp_path / "q.csv", queue_rows(texts(2, "辛"))), labels_dir).exit_code == 0
    assert [r["domains"] for r in target_rows(labels_dir)] == ["education", "ecology", "ecology"]
    assert target.read_bytes().startswith(b"\xef\xbb\xbf")  # now UTF-8 with BOM, like every label file


# ================================================================ suggest / export-ls

def test_suggest_pool_with_broken_files_goes_on_and_writes_a_safe_queue(tmp_path: Path, tiny_model_dir: Path) -> None:
    pool = tmp_path / "pool"
    pool.mkdir()
    (pool / "r.txt").write_text("=1+1推进河湖治理。\n1978年以来加强生态保护。发展先进制造业。\n", encoding="utf-8")
    (pool / "bad.docx").write_bytes(broken_deflate_docx())
    os.mkfifo(tmp_path / "pipe.txt")
    labels_dir = label_folder(tmp_path)
    (labels_dir / "annotations").mkdir(parents=True)
    queue = tmp_path / "q.csv"
    args = ["suggest", "--pool", pool, "--pool", tmp_path / "pipe.txt", "--n", 5, "--out", queue,
            "--model", tiny_model_dir, "--labels-dir", labels_dir]
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert line_with(result, "failed:", "bad.docx") and line_with(result, "failed:", "pipe.txt", "FIFO")
    raw = queue.read_text(encoding="utf-8-sig")
    assert ",'=1+1推进河湖治理。," in raw and "'r:0," in raw
    one_error(run(*args), queue, "--force")  # an existing queue is not silently replaced
    assert run(*args, "--force").exit_code == 0
    table = tmp_path / "t.csv"
    table.write_text("text\n提高教师待遇。\n", encoding="utf-8")
    one_error(run("suggest", "--pool", table, "--out", table, "--force", "--model", tiny_model_dir), "input")
    assert table.read_text(encoding="utf-8") == "text\n提高教师待遇。\n"


def test_export_ls_refuses_to_replace_without_force(tmp_path: Path) -> None:
    pool = tmp_path / "r.txt"
    pool.write_text(REPORT, encoding="utf-8")
    out = tmp_path / "ls"
    assert run("labels", "export-ls", "--pool", pool, "--out", out).exit_code == 0
    before = (out / "tasks.json").read_bytes()
    one_error(run("labels", "export-ls", "--pool", pool, "--out", out), out / "tasks.json", "--force")
    assert (out / "tasks.json").read_bytes() == before
    assert run("labels", "export-ls", "--pool", pool, "--out", out, "--force").exit_code == 0


# ================================================================ Label Studio import

def ls_export(path: Path, people: list[object], domains: str = "ecology") -> Path:
    tasks = [{"id": k + 1, "data": {"text": t, "sent_id": f"d:{k}", "doc": "d"},
              "annotations": [{"id": 100 + k, "completed_by": who, "was_cancelled": False,
                               "result": [{"from_name": "domains", "to_name": "text", "type": "choices",
                                           "value": {"choices": domains.split("|")}}]}]}
             for k, (t, who) in enumerate(zip(texts(len(people), "壬"), people))]
    path.write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.mark.parametrize("who", ["../../evil", {"id": "../../evil"}, "a/b", {"id": "a/../../b", "email": ""},
                                 {"email": "../../x@example.org"}, "x" * 400, ["list"], None, "..", "\n"])
def test_label_studio_user_names_never_leave_the_out_folder(who: object, tmp_path: Path) -> None:
    export = ls_export(tmp_path / "export.json", [who])
    out = tmp_path / "work" / "out"
    result = run("labels", "import-ls", export, "--out", out)
    assert result.exit_code == 0, result.output
    written = [p for p in files(tmp_path) if p not in ("export.json", "work", "work/out")]
    assert len(written) == 1 and written[0].startswith("work/out/") and written[0].count("/") == 2, written
    name = Path(written[0]).name
    assert name.endswith(".ls.csv") and len(name) < 80 and not name.startswith(".")
    assert labels.check_annotator(name[: -len(".ls.csv")])


def test_import_ls_replaces_and_deletes_nothing_without_force(tmp_path: Path) -> None:
    export = ls_export(tmp_path / "export.json", [7, 7])
    out = tmp_path / "mine.csv"
    write_labels(out, [_label(t) for t in texts(250, "癸")])
    before = out.read_bytes()
    one_error(run("labels", "import-ls", export, "--out", out), out, "--force")
    assert out.read_bytes() == before
    rejected = tmp_path / "old.rejected.csv"
    rejected.write_text("keep me\n", encoding="utf-8")
    result = run("labels", "import-ls", export, "--out", tmp_path / "new.csv", "--rejected", rejected)
    assert result.exit_code == 0 and rejected.read_text(encoding="utf-8") == "keep me\n"  # nothing rejected
    bad = ls_export(tmp_path / "bad.json", [7], domains="ecolgy")
    one_error(run("labels", "import-ls", bad, "--out", tmp_path / "new2.csv", "--rejected", rejected), rejected, "--force")
    assert rejected.read_text(encoding="utf-8") == "keep me\n" and not (tmp_path / "new2.csv").exists()
    result = run("labels", "import-ls", export, "--out", out, "--force")
    assert result.exit_code == 0 and len(list(csv.DictReader(out.open(encoding="utf-8-sig")))) == 2
    folder = tmp_path / "annotations"
    assert run("labels", "import-ls", export, "--out", folder).exit_code == 0
    one_error(run("labels", "import-ls", export, "--out", folder), folder / "ls_user_7.ls.csv", "--force")
    one_error(run("labels", "import-ls", bad, "--out", tmp_path / "n.csv", "--rejected", bad, "--force"), "input")
    assert json.loads(bad.read_text(encoding="utf-8"))[0]["id"] == 1


@pytest.mark.parametrize("case, needle", [
    ("gbk", None), ("utf-16", None), ("deep", "nested too deeply"), ("folder", "is a folder"),
    ("fifo", "FIFO"), ("annotations a string", "'annotations' is not a list"), ("not json", "not valid JSON"),
])
def test_hostile_label_studio_exports(case: str, needle: str | None, tmp_path: Path) -> None:
    export = tmp_path / "export.json"
    if case in ("gbk", "utf-16"):
        text = ls_export(tmp_path / "plain.json", [3]).read_text(encoding="utf-8")
        export.write_bytes(text.encode(case))
    elif case == "deep":
        export.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    elif case == "folder":
        export.mkdir()
    elif case == "fifo":
        os.mkfifo(export)
    elif case == "annotations a string":
        export.write_text(json.dumps([{"id": 1, "data": {"text": "x"}, "annotations": "oops"}]), encoding="utf-8")
    else:
        export.write_text("{not json", encoding="utf-8")
    result = run("labels", "import-ls", export, "--out", tmp_path / "out")
    if needle is None:
        assert result.exit_code == 0, result.output
    else:
        one_error(result, export, needle)
        assert not (tmp_path / "out").exists()


def test_rejected_file_inside_the_label_folders_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline import config

    export = ls_export(tmp_path / "export.json", [3])
    labels_dir = config.project_path(config.section("paths")["labels"])
    one_error(run("labels", "import-ls", export, "--out", tmp_path / "out", "--rejected",
                  labels_dir / "annotations" / "x.rejected.csv"), "where every CSV is read as a label file")


def test_malformed_annotation_results_are_rejected_not_crashes(tmp_path: Path) -> None:
    export = tmp_path / "export.json"
    export.write_text(json.dumps([
        {"id": 1, "data": {"text": "推进生态保护。"}, "annotations": [{"id": 1, "completed_by": 1, "result": "x"}]},
        {"id": 2, "data": {"text": "治理大气污染。"}, "annotations": [{"id": 2, "completed_by": 1,
                                                                     "result": [{"type": "choices", "value": [1]}]}]},
        {"id": 3, "data": {"text": "发展制造业。"}, "annotations": [{"id": 3, "completed_by": 1, "result": [
            {"from_name": "domains", "type": "choices", "value": {"choices": "industry"}}]}]},
    ]), encoding="utf-8")
    result = run("labels", "import-ls", export, "--out", tmp_path / "out")
    no_traceback(result)
    assert result.exit_code == 1 and len(list(csv.DictReader(
        export.with_suffix(".rejected.csv").open(encoding="utf-8-sig")))) == 3


# ================================================================ report

@pytest.fixture(scope="module")
def result_file(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    folder = tmp_path_factory.mktemp("result")
    (folder / "r.txt").write_text(REPORT + "=1+1<script>alert(1)</script>\n", encoding="utf-8")
    out = folder / "result.csv"
    cl.run_batch([folder / "r.txt"], out, model_dir=tiny_model_dir)
    return out


@pytest.mark.parametrize("case, needle", [
    ("not json", "not a readable .jsonl table"), ("empty", "no rows"), ("bad scores", "row 2: 'scores'"),
    ("fifo", "FIFO"), ("missing", "no such file"), ("no columns", "missing columns"),
    ("edited domain", "row 3: domain 'ecologyX' is not one of"),
])
def test_hostile_result_files_for_the_report(case: str, needle: str, tmp_path: Path) -> None:
    path = tmp_path / ("r.parquet" if case == "empty" else "r.jsonl")
    content = {"not json": "{oops\n",
               "bad scores": json.dumps({"doc": "d", "text": "x", "domain": "ecology", "scores": "{bad"}) + "\n",
               "no columns": json.dumps({"a": 1}) + "\n",
               "edited domain": "".join(json.dumps({"doc": "d", "text": "x", "domain": d}) + "\n"
                                        for d in ("ecology", "ecologyX"))}.get(case)
    if case == "fifo":
        os.mkfifo(path)
    elif case == "empty":
        pd.DataFrame({"doc": [], "text": [], "domain": []}).to_parquet(path)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    one_error(run("report", path, "--out", tmp_path / "rep"), path, needle)
    assert not (tmp_path / "rep").exists()


def test_report_output_paths(result_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    assert run("report", result_file, "--out", out).exit_code == 0
    pages = [out / "report.html", *sorted((out / "docs").glob("*.html"))]  # sentences are on the document pages
    page = "".join(p.read_text(encoding="utf-8") for p in pages)
    assert "<script>alert" not in page and ">=1+1&lt;script&gt;" in page  # escaped; the CSV cell read back exact
    before = (out / "report.html").read_bytes()
    one_error(run("report", result_file, "--out", out), out / "report.html", "--force")
    assert (out / "report.html").read_bytes() == before
    assert run("report", result_file, "--out", out, "--force").exit_code == 0
    one_error(run("report", result_file, "--out", result_file), "is a file")


def test_csv_outputs_are_formula_safe(result_file: Path) -> None:
    assert ",'=1+1<script>alert(1)</script>," in result_file.read_text(encoding="utf-8-sig")
    assert "=1+1<script>alert(1)</script>" in list(read_table(result_file)["text"])


# ================================================================ audit, params, messages

def test_audit_refuses_to_replace_and_to_write_into_label_folders(tmp_path: Path) -> None:
    out = tmp_path / "review.csv"
    out.write_text("mine\n", encoding="utf-8")
    one_error(run("labels", "audit", "--out", out), out, "--force")
    labels_dir = label_folder(tmp_path)
    (labels_dir / "annotations").mkdir(parents=True)
    one_error(run("labels", "audit", "--out", labels_dir / "annotations" / "review.csv", "--labels-dir", labels_dir),
              "label file")
    assert out.read_text(encoding="utf-8") == "mine\n"


def test_broken_params_yaml_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "params.yaml").write_text("segment:\n  max_chars: [1,\n", encoding="utf-8")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n", encoding="utf-8")
    (tmp_path / "r.txt").write_text(REPORT, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    one_error(run("segment", tmp_path / "r.txt", "--out", tmp_path / "o.jsonl"), "params.yaml", "not valid YAML")


@pytest.mark.parametrize("depth", [20, 47, 90, 150])
def test_every_message_is_one_line_whatever_the_path_length(depth: int, tmp_path: Path,
                                                            tiny_model_dir: Path) -> None:
    """Outside a terminal rich would wrap at 80 columns; the wrap moved with the temporary path."""
    folder = tmp_path / ("d" * depth) / "in"
    folder.mkdir(parents=True)
    (folder / "blob.txt").write_bytes(bytes(range(256)) * 8)
    (folder / "empty.txt").write_bytes(b"")
    (folder / "good.txt").write_text(REPORT, encoding="utf-8")
    result = classify(folder, "--out", folder / "o.jsonl", "--model", tiny_model_dir)
    assert line_with(result, "failed:", folder / "blob.txt", "binary file")
    assert line_with(result, "failed:", folder / "empty.txt", "empty file")
    assert line_with(result, "sentences from 1 file(s)", folder / "o.jsonl", "2 file(s) failed")
    write_labels(tmp_path / "labels" / "annotations" / ("a" * depth + ".csv"), [_label("某句。", "ecolgy"),
                                                                               _label("[/]某句[red]。", annotator="[/]")])
    checked = run("labels", "check", "--labels-dir", tmp_path / "labels")
    assert line_with(checked, "a" * depth + ".csv:2: error: unknown domain id 'ecolgy' (did you mean 'ecology'?)")
    stats = run("labels", "stats", "--labels-dir", tmp_path / "labels")
    assert stats.exit_code == 0 and all(len(line) < 400 for line in stats.output.splitlines())


def test_usage_errors_are_one_line_too() -> None:
    for args in (["classify"], ["classify", "x.txt"], ["classify", "x", "--out", "o.csv", "--chunk-size", "-5"],
                 ["labels", "accept"], ["no-such-command"]):
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        one_error(result, "--help")
